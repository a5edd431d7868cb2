"""The stack end to end on moto: the real template, state machine, handler and worker.

Each test deploys infra/template.yaml with infra/deploy.py to a moto server, starts an
execution with one of the documented inputs, and checks what a user would: COGs in S3,
task-log records, the messages on the topic, the execution's output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

BANDS_BUCKET = "rsbatch-test-bands"
#: three tile-dates, each a small generated scene on the tile's real grid
CELLS = [("32TMT", "2024-06-01", 11), ("32TNT", "2024-06-01", 12), ("39QTA", "2024-06-04", 13)]
SIZE = 300


def _upload_scene(s3: Any, bucket: str, prefix: str, paths: dict[str, str]) -> dict[str, str]:
    hrefs = {}
    for key, path in paths.items():
        name = f"{prefix}/{Path(path).name}"
        s3.upload_file(path, bucket, name)
        hrefs[key] = f"s3://{bucket}/{name}"
    return hrefs


@pytest.fixture
def bands(deploy_stack: Any, scene_factory: Any) -> Any:
    """make(tile, date, seed) → band hrefs of a generated scene uploaded to moto S3."""
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BANDS_BUCKET)

    def make(tile: str, date: str, seed: int) -> dict[str, str]:
        paths = scene_factory(tile=tile, date=date, size=SIZE, seed=seed, cloud=0.1)
        return _upload_scene(s3, BANDS_BUCKET, f"{tile}/{date}", paths)

    return make


def _job(job_id: str, output: str, bands: Any, cells=CELLS) -> dict[str, Any]:
    return {"job_id": job_id, "params": {"test": True}, "cells": [
        {"tile": tile, "date": date, "bands": bands(tile, date, seed),
         "products": ["rgb", "ndvi"], "output": output, "scale": 0.0001, "offset": -0.1,
         "cloud_mask": True}
        for tile, date, seed in cells]}


def _cogs(stack: Any, prefix: str) -> dict[str, int]:
    s3 = stack.client("s3")
    bucket = stack.outputs["ResultsBucket"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {item["Key"][len(prefix):]: item["Size"] for item in listed}


def _check_cog(stack: Any, key: str, tmp_path: Path) -> None:
    from worker.cog import validate_cog

    local = tmp_path / Path(key).name
    stack.client("s3").download_file(stack.outputs["ResultsBucket"], key, str(local))
    report = validate_cog(str(local))
    assert report.valid, report.errors


def test_three_cells_run_on_batch_and_land_as_cogs(deploy_stack, bands, tmp_path):
    stack = deploy_stack()
    results = f"s3://{stack.outputs['ResultsBucket']}/e2e"
    job = _job("job-three", results, bands)
    # the first attempt of one cell loses its Spot instance: Batch retries it
    stack.hooks.interrupt_first.add("job-three-32TNT_2024-06-01")

    execution = stack.run({"job": job})

    assert execution["status"] == "SUCCEEDED", execution
    summary = json.loads(execution["output"])
    assert (summary["succeeded"], summary["failed"], summary["total"]) == (3, 0, 3)
    assert summary["outputs"] == [f"{results}/job-three/"]
    keys = _cogs(stack, "e2e/job-three/")
    for tile, date, _ in CELLS:
        for product in ("rgb", "ndvi"):
            assert keys.get(f"{tile}_{date}_{product}.tif", 0) > 0
        assert f"{tile}_{date}.json" in keys  # the STAC item, written last
    _check_cog(stack, "e2e/job-three/39QTA_2024-06-04_ndvi.tif", tmp_path)
    records = stack.records("job-three")
    assert {cell: record.status.value for cell, record in records.items()} == {
        "32TMT_2024-06-01": "SUCCEEDED", "32TNT_2024-06-01": "SUCCEEDED",
        "39QTA_2024-06-04": "SUCCEEDED"}
    assert records["32TMT_2024-06-01"].outputs["ndvi"] == \
        f"{results}/job-three/32TMT_2024-06-01_ndvi.tif"
    # the interrupted cell ran twice: the Spot loss, then the worker
    interrupted = stack.hooks.runs_of("32TNT")
    assert [run.exit_code for run in interrupted] == [None, 0]
    assert [run.exit_code for run in stack.hooks.runs_of("32TMT")] == [0]
    # the worker got the cell inline and the stack's task log
    command = stack.hooks.runs_of("32TMT")[0].command
    assert command[:3] == ["--task-log", stack.outputs["TaskLogUri"], "run"]
    assert json.loads(command[3])["cell_id"] == "32TMT_2024-06-01"
    messages = stack.messages()
    assert [m["event"] for m in messages] == ["job.completed"]
    assert messages[0]["body"]["succeeded"] == 3
    assert messages[0]["subject"] == "rsbatch job-three: 3/3 succeeded, 0 failed"
