"""The reduce stage on the stack (moto): per-date mosaics and median composites run as Batch
jobs of the worker (`rsbatch-worker reduce UNIT`) after the cells, one level at a time, with
the same task-log records, cancel and resume as the local backend, and the same pixels.

The job is the demo's sample (two overlapping tiles of zone 32, two dates), planned once;
its bands are uploaded to moto's S3 and the worker reads them from there.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from qgis_rsbatch.core.contract import Job, Status
from tests.polling import wait_until

from .conftest import BANDS_BUCKET

pytestmark = pytest.mark.slow


@pytest.fixture
def reduce_job(sample_catalog, tmp_path) -> Job:
    from qgis_rsbatch.core.planning import JobRequest, plan

    request = JobRequest(aoi=sample_catalog["aoi"], start=sample_catalog["start"],
                         end=sample_catalog["end"], output=str(tmp_path / "local"),
                         catalog=sample_catalog["catalog"], composite="median")
    return plan(request).job


def on_aws(job: Job, output: str) -> Job:
    """The same job writing to `output` and reading its bands from moto's S3."""
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BANDS_BUCKET)
    data = job.to_dict()
    for cell in data["cells"]:
        cell["output"] = output
        for key, href in cell["bands"].items():
            if href:
                path = Path(href.removeprefix("file://"))
                name = f"{path.parent.name}/{path.name}"
                s3.upload_file(str(path), BANDS_BUCKET, name)
                cell["bands"][key] = f"s3://{BANDS_BUCKET}/{name}"
    for unit in data["units"]:
        unit["output"] = output
    return Job.from_dict(data)


def entered(stack: Any, execution_arn: str) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in stack.history(execution_arn)
            if "stateEnteredEventDetails" in e]


def _download(stack: Any, uri: str, folder: Path) -> str:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    path = folder / key.replace("/", "_")
    stack.client("s3").download_file(bucket, key, str(path))
    return str(path)


def test_units_run_after_the_cells_one_level_at_a_time_through_both_maps(
        deploy_stack, reduce_job, tmp_path):
    """4 cells and 4 mosaics above the threshold (Distributed Map from S3), 2 composites
    below it (inline Map): every unit's Batch job runs `reduce`, mosaics before composites."""
    stack = deploy_stack(DistributedMapThreshold="3")
    job = on_aws(reduce_job, f"s3://{stack.outputs['ResultsBucket']}/e2e")

    execution = stack.run({"job": job.to_dict()}, timeout=600)

    assert execution["status"] == "SUCCEEDED", execution
    summary = json.loads(execution["output"])
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (10, 10, 0)
    states = entered(stack, execution["executionArn"])
    # cells, mosaics (both distributed), composites (inline), then no level left
    assert states.count("Run cells (distributed)") == 2 and states.count("Run cells") == 1
    assert states.count("Next stage") == 3
    assert states.index("Run cells") > max(i for i, s in enumerate(states)
                                           if s == "Run cells (distributed)")
    work = f"_rsbatch/jobs/{job.job_id}/"
    listed = stack.client("s3").list_objects_v2(Bucket=stack.outputs["ResultsBucket"],
                                                Prefix=work)["Contents"]
    assert {"items.json", "items-1.json", "units.json"} <= {
        item["Key"][len(work):] for item in listed}
    units = {u.unit_id: u for u in job.units}
    runs = {r.job_name.removeprefix(f"{job.job_id}-"): r for r in stack.hooks.runs}
    assert set(runs) == {c.cell_id for c in job.cells} | set(units)
    order = [r.job_name.removeprefix(f"{job.job_id}-") for r in stack.hooks.runs]
    last_cell = max(order.index(c.cell_id) for c in job.cells)
    for unit_id, unit in units.items():
        run = runs[unit_id]
        assert run.command[:3] == ["--task-log", stack.outputs["TaskLogUri"], "reduce"]
        assert json.loads(run.command[3]) == unit.to_dict()
        assert run.exit_code == 0
        assert order.index(unit_id) > last_cell
        for read in unit.inputs:  # a composite starts after the mosaics it reads
            assert order.index(unit_id) > order.index(read)
    records = stack.records(job.job_id)
    for unit_id, unit in units.items():
        record = records[unit_id]
        assert record.status is Status.SUCCEEDED and record.attempts == 1
        assert record.extra["Kind"] == unit.kind and record.extra["LackingInputs"] == []
        assert record.outputs == {unit.product: unit.output_uri()}
        assert record.extra.get("BatchJobId")  # where its CloudWatch log is
    path = _download(stack, units["composite_2024-06-01_2024-06-11_ndvi_median"].output_uri(),
                     tmp_path)
    from tests.cog_reference import assert_valid_cog

    assert_valid_cog(path)
    assert [m["event"] for m in stack.messages()] == ["job.completed"]


def _comparable(record: Any, output: str) -> dict[str, Any]:
    """What both backends must agree on: everything but where and by which process."""
    extra = {k: v for k, v in record.extra.items()
             if k not in ("WorkerPid", "WorkerStart", "BatchJobId", "StartedAt", "EndedAt",
                          "Seconds")}
    return {"status": record.status, "attempts": record.attempts, "error": record.error,
            "warnings": list(record.warnings), "tile": record.tile, "date": record.date,
            "outputs": {p: u.removeprefix(output) for p, u in record.outputs.items()},
            "extra": json.loads(json.dumps(extra, default=str, sort_keys=True))}


def test_local_and_aws_give_the_same_records_and_pixels(deploy_stack, reduce_job, tmp_path):
    from qgis_rsbatch.core.backends.aws import AwsBackend
    from qgis_rsbatch.core.backends.local import LocalBackend
    from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog

    from .conftest import STACK

    local = LocalBackend(task_log_path=str(tmp_path / "local.sqlite"), workers=2)
    here = local.submit(reduce_job, wait=True)
    assert here.succeeded, [(r.cell_id, r.status, r.error) for r in here.records]

    stack = deploy_stack()
    aws = AwsBackend(stack=STACK, registry=SqliteTaskLog(str(tmp_path / "registry.sqlite")))
    output = aws.default_output()
    job = on_aws(reduce_job, output)
    aws.submit(job)
    there = aws.wait(job.job_id, interval=0.5, timeout=600)
    assert there.succeeded, [(r.cell_id, r.status, r.error) for r in there.records]

    local_root = reduce_job.cells[0].output
    assert [r.cell_id for r in there.records] == [r.cell_id for r in here.records]
    mine = {r.cell_id: _comparable(r, local_root) for r in here.records}
    theirs = {r.cell_id: _comparable(r, output) for r in there.records}
    assert theirs == mine
    for unit in reduce_job.units:  # the outputs themselves, pixel for pixel
        aws_unit = next(u for u in job.units if u.unit_id == unit.unit_id)
        with rasterio.open(unit.output_uri().removeprefix("file://")) as a, \
                rasterio.open(_download(stack, aws_unit.output_uri(), tmp_path)) as b:
            assert a.crs == b.crs and a.crs.to_epsg() == unit.grid.epsg
            assert a.transform == b.transform and tuple(a.transform)[:6] == unit.grid.transform
            assert (a.count, a.dtypes, str(a.nodata)) == (b.count, b.dtypes, str(b.nodata))
            pixels = a.read()
            np.testing.assert_array_equal(b.read(), pixels)
            assert np.count_nonzero(~np.isnan(pixels) if pixels.dtype.kind == "f"
                                    else pixels) > 10_000  # not two empty rasters


def test_cancel_while_a_mosaic_waits_and_resume_runs_only_the_units(deploy_stack, reduce_job,
                                                                   tmp_path):
    """A mosaic's Batch job waits for capacity: the cells are done, the units are not.
    Cancel stops the execution and that Batch job and records every unit CANCELLED; resume
    submits no cell again and makes every unit."""
    from qgis_rsbatch.core.backends.aws import AwsBackend
    from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog

    from .conftest import STACK

    stack = deploy_stack()
    aws = AwsBackend(stack=STACK, registry=SqliteTaskLog(str(tmp_path / "registry.sqlite")))
    job = on_aws(reduce_job, aws.default_output())
    held = f"{job.job_id}-mosaic_2024-06-01_ndvi"
    stack.hooks.hold_runnable[held] = 0
    aws.submit(job)
    others = {f"{job.job_id}-{u.unit_id}" for u in job.units if u.kind == "mosaic"} - {held}
    deadline = time.monotonic() + 300
    while not others <= {r.job_name for r in stack.hooks.runs}:
        assert time.monotonic() < deadline, "the other mosaics never ran"
        time.sleep(0.25)
    waiting = {r.cell_id: r for r in aws.status(job.job_id).records}
    assert all(waiting[c.cell_id].status is Status.SUCCEEDED for c in job.cells)
    assert waiting[held.removeprefix(f"{job.job_id}-")].status is Status.PENDING

    cancelled = aws.cancel(job.job_id)

    by_id = {r.cell_id: r for r in cancelled.records}
    assert by_id["mosaic_2024-06-01_ndvi"].status is Status.CANCELLED
    assert by_id["mosaic_2024-06-01_ndvi"].error == "cancelled by the user"
    for product in ("rgb", "ndvi"):
        composite = by_id[f"composite_2024-06-01_2024-06-11_{product}_median"]
        assert composite.status is Status.CANCELLED
    assert cancelled.finished and not cancelled.succeeded
    # stopped (AWS says ABORTED; moto 5.2.5 reports the aborted Map iteration as FAILED,
    # once its interpreter's thread has seen the stop)
    def stopped() -> str | None:
        status = aws.execution(job.job_id)["status"]
        return status if status != "RUNNING" else None

    assert wait_until(stopped, 60, "the execution to stop") in ("ABORTED", "FAILED")
    batch = stack.client("batch")
    [summary] = [j for j in batch.list_jobs(jobQueue=stack.outputs["JobQueueArn"],
                                            jobStatus="FAILED")["jobSummaryList"]
                 if j["jobName"] == held]
    assert summary["statusReason"] == "cancelled by the user"
    cells_run = len([r for r in stack.hooks.runs if "mosaic" not in r.job_name
                     and "composite" not in r.job_name])
    assert cells_run == len(job.cells)

    del stack.hooks.hold_runnable[held]
    done = aws.resume(job.job_id, wait=True)

    assert done.succeeded, [(r.cell_id, r.status, r.error) for r in done.records]
    again = [r for r in stack.hooks.runs[cells_run:] if "mosaic" not in r.job_name
             and "composite" not in r.job_name]
    assert again == []  # no cell was submitted again
    second = json.loads(aws.execution(job.job_id)["input"])
    assert second["resume"] is True
    by_id = {r.cell_id: r for r in done.records}
    assert by_id["mosaic_2024-06-01_ndvi"].attempts == 1  # it never started before
    assert all(by_id[c.cell_id].attempts == 1 for c in job.cells)
    for unit in job.units:
        assert by_id[unit.unit_id].outputs == {unit.product: unit.output_uri()}


def test_resume_remakes_a_mosaic_made_without_a_cell_that_later_succeeds(deploy_stack,
                                                                         sample_catalog,
                                                                         tmp_path):
    """32TMT's cell of 2024-06-01 loses its Spot instance on every attempt: that date's
    mosaic is made from 32TNT alone and says it lacked 32TMT. Once capacity is back, resume
    runs the cell, sends the mosaic and the composite reading it back to PENDING, and the
    stack makes them again with every input (as the local backend does): the mosaic's pixels
    become the two-tile reference; nothing else runs again."""
    from qgis_rsbatch.core.backends.aws import AwsBackend
    from qgis_rsbatch.core.planning import JobRequest, plan
    from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog
    from tests.backends.test_local_reduce import assert_remade, reference_mosaic

    from .conftest import STACK

    request = JobRequest(aoi=sample_catalog["aoi"], start=sample_catalog["start"],
                         end=sample_catalog["end"], output=str(tmp_path / "local"),
                         catalog=sample_catalog["catalog"], products=("ndvi",),
                         composite="median")
    stack = deploy_stack()
    aws = AwsBackend(stack=STACK, registry=SqliteTaskLog(str(tmp_path / "registry.sqlite")))
    job = on_aws(plan(request).job, aws.default_output())
    failing, mosaic_id = "32TMT_2024-06-01", "mosaic_2024-06-01_ndvi"
    composite_id = "composite_2024-06-01_2024-06-11_ndvi_median"
    stack.hooks.interrupt_always.add(f"{job.job_id}-{failing}")
    aws.submit(job)
    first = {r.cell_id: r for r in aws.wait(job.job_id, interval=0.5, timeout=600).records}
    assert first[failing].status is Status.FAILED
    assert "Host EC2" in first[failing].error
    assert first[mosaic_id].status is Status.SUCCEEDED
    assert first[mosaic_id].extra["LackingInputs"] == [failing]
    assert first[composite_id].status is Status.SUCCEEDED
    unit = next(u for u in job.units if u.unit_id == mosaic_id)
    with rasterio.open(_download(stack, unit.output_uri(), tmp_path)) as ds:
        before = ds.read(1)
    partial = first[mosaic_id].stats["ndvi"]["valid_pixels"]
    # the records are final a moment before the last Batch job ends, and the execution after
    def ended() -> bool:
        return aws.execution(job.job_id)["status"] != "RUNNING"

    wait_until(ended, 60, "the execution to end")
    ran = len(stack.hooks.runs)

    stack.hooks.interrupt_always.clear()
    done = aws.resume(job.job_id, wait=True)

    assert done.succeeded, [(r.cell_id, r.status, r.error) for r in done.records]
    wait_until(ended, 60, "the resumed execution to end")
    runs = stack.hooks.runs[ran:]
    assert sorted(r.job_name.removeprefix(f"{job.job_id}-") for r in runs) == sorted(
        [failing, mosaic_id, composite_id]), [(r.job_name, r.exit_code) for r in runs]
    # the cell's attempts never reached the worker: the one that did is its first
    again = assert_remade(done.records, failing, (mosaic_id, composite_id))
    path = _download(stack, unit.output_uri(), tmp_path)
    from tests.cog_reference import assert_valid_cog

    assert_valid_cog(path)
    with rasterio.open(path) as ds:
        after = ds.read()
    outputs = {i: _download(stack, again[i].outputs["ndvi"], tmp_path) for i in unit.inputs}
    np.testing.assert_array_equal(after, reference_mosaic(unit, outputs))
    gained = np.isnan(before) & ~np.isnan(after[0])
    assert gained.sum() > 10_000  # 32TMT's part of the AOI arrived
    assert again[mosaic_id].stats["ndvi"]["valid_pixels"] == partial + int(gained.sum())
    item = json.loads(Path(_download(stack, unit.item_uri, tmp_path)).read_text())
    assert item["properties"]["rsbatch:lacking_inputs"] == []
    composite = next(u for u in job.units if u.unit_id == composite_id)
    mosaics = []
    for mosaic in composite.inputs:
        with rasterio.open(_download(stack, again[mosaic].outputs["ndvi"], tmp_path)) as ds:
            mosaics.append(ds.read(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(np.stack(mosaics), axis=0)
    with rasterio.open(_download(stack, composite.output_uri(), tmp_path)) as ds:
        np.testing.assert_allclose(ds.read(1), median, rtol=0, atol=1e-7)


def test_a_failed_unit_is_announced_as_a_unit_a_failed_cell_as_a_cell(deploy_stack,
                                                                      reduce_job):
    """Spot takes every attempt of a cell, of a mosaic (Distributed Map) and of a composite
    (inline Map): the cell's message stays `cell.failed`; each unit's is `unit.failed`,
    naming the unit and its kind, under a subject that says what failed."""
    stack = deploy_stack(DistributedMapThreshold="3")
    job = on_aws(reduce_job, f"s3://{stack.outputs['ResultsBucket']}/e2e")
    cell, mosaic = "32TNT_2024-06-11", "mosaic_2024-06-01_ndvi"
    composite = "composite_2024-06-01_2024-06-11_rgb_median"
    stack.hooks.interrupt_always.update(f"{job.job_id}-{i}" for i in (cell, mosaic, composite))

    execution = stack.run({"job": job.to_dict()}, timeout=600)

    assert execution["status"] == "SUCCEEDED", execution
    records = stack.records(job.job_id)
    assert [i for i, r in sorted(records.items()) if r.status is Status.FAILED] == [
        cell, composite, mosaic]
    messages = stack.messages()
    assert sorted(m["event"] for m in messages) == [
        "cell.failed", "job.completed", "unit.failed", "unit.failed"]
    [cell_failed] = [m for m in messages if m["event"] == "cell.failed"]
    assert cell_failed["subject"] == "rsbatch: a cell failed"
    assert cell_failed["body"]["cell_id"] == cell and "unit_id" not in cell_failed["body"]
    units = {m["body"]["unit_id"]: m for m in messages if m["event"] == "unit.failed"}
    assert set(units) == {mosaic, composite}
    for unit_id, kind in ((mosaic, "mosaic"), (composite, "composite")):
        message = units[unit_id]
        assert message["subject"] == f"rsbatch: a {kind} failed"
        body = message["body"]
        assert (body["kind"], body["job_id"]) == (kind, job.job_id)
        assert body["task_id"] == f"{job.job_id}#{unit_id}" and "cell_id" not in body
        assert body["task_log"]["status"] == "FAILED"
        assert body["task_log"]["recorded_by"] == "state machine"
        assert "Host EC2 (instance" in records[unit_id].error
