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

from tests.polling import wait_until

from .conftest import BANDS_BUCKET, SIZE

pytestmark = pytest.mark.slow

#: three tile-dates, each a small generated scene on the tile's real grid
CELLS = [("32TMT", "2024-06-01", 11), ("32TNT", "2024-06-01", 12), ("39QTA", "2024-06-04", 13)]


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
    from tests.cog_reference import assert_valid_cog

    local = tmp_path / Path(key).name
    stack.client("s3").download_file(stack.outputs["ResultsBucket"], key, str(local))
    assert_valid_cog(str(local))


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


def test_a_cell_with_a_missing_band_fails_alone_and_the_job_completes(deploy_stack, bands):
    stack = deploy_stack()
    results = f"s3://{stack.outputs['ResultsBucket']}/e2e"
    job = _job("job-gap", results, bands)
    missing = f"s3://{BANDS_BUCKET}/32TNT/2024-06-01/not-there/B08.tif"
    job["cells"][1]["bands"]["nir"] = missing

    execution = stack.run({"job": job})

    assert execution["status"] == "SUCCEEDED", execution
    summary = json.loads(execution["output"])
    assert (summary["succeeded"], summary["failed"]) == (2, 1)
    records = stack.records("job-gap")
    failed = records["32TNT_2024-06-01"]
    assert failed.status.value == "FAILED"
    assert "band nir" in failed.error and "does not exist" in failed.error
    assert records["32TMT_2024-06-01"].status.value == "SUCCEEDED"
    assert records["39QTA_2024-06-04"].status.value == "SUCCEEDED"
    assert summary["failed_cells"] == [{"cell_id": "32TNT_2024-06-01", "error": failed.error}]
    # bad input (exit 2) is not retried: the job definition's RetryStrategy says EXIT
    assert [run.exit_code for run in stack.hooks.runs_of("32TNT")] == [2]
    assert not _cogs(stack, "e2e/job-gap/32TNT")
    messages = stack.messages()
    assert sorted(m["event"] for m in messages) == ["cell.failed", "job.completed"]
    failure = next(m["body"] for m in messages if m["event"] == "cell.failed")
    assert failure["cell_id"] == "32TNT_2024-06-01"
    assert failure["task_log"]["status"] == "FAILED"
    assert failure["task_log"]["recorded_by"] == "worker"  # its reason is kept
    assert failure["task_log"]["error"] == failed.error


def test_the_seeds_execution_input_runs_unchanged(deploy_stack, scene_factory):
    """The blog's input: JP2 bands of the requester-pays layout, worker in env-var mode."""
    stack = deploy_stack()
    s3 = stack.client("s3")
    s3.create_bucket(Bucket="sentinel-s2-l2a")
    root = "tiles/32/T/MT/2024/6/1/0"
    paths = scene_factory(tile="32TMT", date="2024-06-01", size=SIZE, seed=21, fmt="JP2",
                          boa_offset=1000)
    for key, path in paths.items():
        folder = "R20m" if key == "scl" else "R10m"
        s3.upload_file(path, "sentinel-s2-l2a", f"{root}/{folder}/{Path(path).name}")
    s3.put_object(Bucket="sentinel-s2-l2a", Key=f"{root}/tileInfo.json", Body=json.dumps(
        {"productName": "S2B_MSIL2A_20240601T101559_N0510_R065_T32TMT_20240601T130006"}))
    bucket = stack.outputs["ResultsBucket"]
    seed_input = {"detail": {"cells": [
        {"files": f"s3://sentinel-s2-l2a/{root}/R10m/", "date": "20240601",
         "output_bucket": bucket, "region_name": "us-east-1"}]}}

    execution = stack.run(seed_input, name="seed-run")

    assert execution["status"] == "SUCCEEDED", execution
    summary = json.loads(execution["output"])
    assert (summary["job_id"], summary["succeeded"], summary["failed"]) == ("seed-run", 1, 0)
    run = stack.hooks.runs_of("32TMT")[0]
    assert run.command == ["--task-log", stack.outputs["TaskLogUri"]]  # no `run`: env mode
    assert run.environment["files"] == f"s3://sentinel-s2-l2a/{root}/R10m/"
    assert run.environment["job_id"] == "seed-run"
    # the planner's PENDING record and the worker's are the same record
    record = stack.records("seed-run")["32TMT_2024-06-01"]
    assert record.status.value == "SUCCEEDED"
    assert record.extra["result"] == "success" and record.extra["date"] == "20240601"
    keys = _cogs(stack, "seed-run/")
    assert {"32TMT_2024-06-01_rgb.tif", "32TMT_2024-06-01_ndvi.tif"} <= set(keys)


def test_a_job_above_the_threshold_runs_as_a_distributed_map(deploy_stack, bands):
    stack = deploy_stack(DistributedMapThreshold="2")
    results = f"s3://{stack.outputs['ResultsBucket']}/big"
    job = _job("job-big", results, bands)

    execution = stack.run({"job": job})

    assert execution["status"] == "SUCCEEDED", execution
    summary = json.loads(execution["output"])
    assert (summary["succeeded"], summary["failed"], summary["total"]) == (3, 0, 3)
    entered = [e["stateEnteredEventDetails"]["name"]
               for e in stack.history(execution["executionArn"])
               if "stateEnteredEventDetails" in e]
    assert "Run cells (distributed)" in entered and "Run cells" not in entered
    assert "items.json" in _cogs(stack, "_rsbatch/jobs/job-big/")  # the ItemReader's array
    assert any(k.endswith("manifest.json") for k in _cogs(stack, "_rsbatch/map-runs/"))
    # 3 × (rgb, its cloud mask, ndvi, STAC item)
    assert len(_cogs(stack, "big/job-big/")) == 12
    assert all(r.status.value == "SUCCEEDED" for r in stack.records("job-big").values())


def test_an_invalid_job_is_rejected_with_the_reason(deploy_stack):
    stack = deploy_stack()
    bucket = stack.outputs["ResultsBucket"]
    job = {"job_id": "job-bad", "cells": [
        {"tile": "99ZZZ", "date": "2024-06-01", "bands": {}, "output": f"s3://{bucket}/x"}]}

    execution = stack.run({"job": job})

    assert execution["status"] == "FAILED"
    assert execution["error"] == "InvalidInput"
    assert "99ZZZ" in json.loads(execution["cause"])["errorMessage"]
    messages = stack.messages()
    assert [m["event"] for m in messages] == ["job.rejected"]
    assert messages[0]["body"]["error"] == "InvalidInput"
    assert not stack.hooks.runs


def test_a_cell_cancelled_before_it_runs_stays_cancelled_and_is_not_a_failure(deploy_stack,
                                                                              bands):
    from qgis_rsbatch.core.contract import Job, Status
    from qgis_rsbatch.core.tasklog.dynamodb import DynamoTaskLog

    stack = deploy_stack()
    job = _job("job-stop", f"s3://{stack.outputs['ResultsBucket']}/e2e", bands, CELLS[:2])
    # the client cancels a cell (its record) before its Batch job starts
    store = DynamoTaskLog(stack.outputs["TaskLogTable"], endpoint_url=stack.url)
    cancelled = Job.from_dict(job).cells[1]
    store.register([cancelled])
    store.transition(cancelled.task_id, Status.CANCELLED, error="cancelled by the user")

    execution = stack.run({"job": job})

    assert execution["status"] == "SUCCEEDED", execution
    summary = json.loads(execution["output"])
    assert (summary["succeeded"], summary["failed"], summary["cancelled"]) == (1, 0, 1)
    assert [run.exit_code for run in stack.hooks.runs_of(cancelled.cell_id)] == [3]  # no retry
    assert stack.records("job-stop")[cancelled.cell_id].status is Status.CANCELLED
    assert [m["event"] for m in stack.messages()] == ["job.completed"]


def test_the_aws_backend_runs_a_job_on_the_deployed_stack(deploy_stack, bands):
    """The client side as the plugin uses it: outputs file → job_uri → status from the log."""
    from qgis_rsbatch.core.backends.aws import AwsBackend
    from qgis_rsbatch.core.contract import Job

    from .conftest import STACK

    stack = deploy_stack()
    backend = AwsBackend(stack=STACK)  # reads <user data dir>/stacks/<stack>.json
    assert backend.outputs["StateMachineArn"] == stack.state_machine_arn
    job = Job.from_dict(_job("job-client", backend.default_output(), bands, CELLS[:2]))

    backend.submit(job)
    status = backend.wait(job.job_id, interval=0.5, timeout=180)

    assert status.finished and status.succeeded, status.to_dict()
    assert set(status.outputs()) == {"32TMT_2024-06-01", "32TNT_2024-06-01"}
    # the cells are final before the execution has sent its summary: give it the moment
    def ended() -> dict | None:
        execution = backend.execution(job.job_id)
        return execution if execution["status"] != "RUNNING" else None

    execution = wait_until(ended, 60, "the execution to end", interval=0.25)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["input"])["job_uri"].startswith(stack.outputs["JobsPrefix"])


def test_a_cell_whose_worker_never_ran_is_failed_by_the_state_machine(deploy_stack, bands):
    """Spot took the instance on every attempt: the worker wrote nothing, the Catch does."""
    stack = deploy_stack()
    job = _job("job-spot", f"s3://{stack.outputs['ResultsBucket']}/e2e", bands, CELLS[:1])
    stack.hooks.interrupt_always.add("job-spot-32TMT_2024-06-01")

    execution = stack.run({"job": job})

    assert execution["status"] == "SUCCEEDED", execution
    assert len(stack.hooks.runs_of("32TMT")) == 3  # JobAttempts, all retried (Host EC2*)
    record = stack.records("job-spot")["32TMT_2024-06-01"]
    assert record.status.value == "FAILED"
    assert "Host EC2 (instance" in record.error and "3 attempt(s)" in record.error
    [message] = [m for m in stack.messages() if m["event"] == "cell.failed"]
    assert message["body"]["task_log"]["recorded_by"] == "state machine"
    assert message["body"]["error"] == "States.TaskFailed"
