"""Both task-log stores through one interface: conditional transitions, concurrency, TTL."""

from __future__ import annotations

import multiprocessing
import time

import pytest
from moto import mock_aws

from qgis_rsbatch.core.contract import Cell, Status
from qgis_rsbatch.core.errors import InvalidInput, TransitionRejected
from qgis_rsbatch.core.tasklog import open_task_log
from qgis_rsbatch.core.tasklog.dynamodb import DynamoTaskLog
from qgis_rsbatch.core.tasklog.schema import TTL_ATTRIBUTE, Record
from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog


def cell(cell_date="2024-06-01", job="job1") -> Cell:
    return Cell.from_dict({"job_id": job, "tile": "32TMT", "date": cell_date,
                           "bands": {k: f"/x/{k}.tif" for k in ("blue", "green", "red", "nir",
                                                                 "scl")},
                           "output": "/tmp/out"})


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield SqliteTaskLog(str(tmp_path / "log.sqlite"))
        return
    with mock_aws():
        from tests.worker.test_remote import create_task_table

        create_task_table()
        yield DynamoTaskLog(region="us-east-1")


def test_register_is_create_once(store):
    first = cell()
    assert store.register([first, cell("2024-06-02")]) == 2
    assert store.register([first]) == 0
    record = store.get(first.task_id)
    assert (record.status, record.attempts, record.job_id, record.tile, record.date) == (
        Status.PENDING, 0, "job1", "32TMT", "2024-06-01")
    assert [r.cell_id for r in store.job_records("job1")] == ["32TMT_2024-06-01",
                                                              "32TMT_2024-06-02"]
    assert store.job_records("other") == []


def test_lifecycle_and_attempts(store):
    c = cell()
    store.register([c])
    store.transition(c.task_id, Status.RUNNING)
    store.transition(c.task_id, Status.RUNNING)          # a retry after a lost instance
    store.transition(c.task_id, Status.FAILED, error="band nir does not exist")
    failed = store.get(c.task_id)
    assert failed.attempts == 2 and failed.error == "band nir does not exist"
    store.transition(c.task_id, Status.PENDING)          # resume
    store.transition(c.task_id, Status.RUNNING)
    done = store.transition(c.task_id, Status.SUCCEEDED, outputs={"ndvi": "s3://b/n.tif"},
                            warnings=["offset corrected"])
    assert done.attempts == 3 and done.error is None
    record = store.get(c.task_id)
    assert record == done
    assert record.outputs == {"ndvi": "s3://b/n.tif"} and record.warnings == ("offset corrected",)


@pytest.mark.parametrize("target", [Status.RUNNING, Status.FAILED, Status.PENDING,
                                    Status.CANCELLED])
def test_a_succeeded_record_never_moves_backwards(store, target):
    c = cell()
    store.register([c])
    store.transition(c.task_id, Status.RUNNING)
    store.transition(c.task_id, Status.SUCCEEDED, outputs={"rgb": "x"})
    with pytest.raises(TransitionRejected, match="SUCCEEDED; it cannot become"):
        store.transition(c.task_id, target)
    assert store.get(c.task_id).status is Status.SUCCEEDED


def test_unknown_records_and_bad_moves(store):
    with pytest.raises(TransitionRejected, match="is not in the task log"):
        store.transition("job1#nope", Status.RUNNING)
    c = cell()
    store.register([c])
    with pytest.raises(TransitionRejected, match="PENDING; it cannot become SUCCEEDED"):
        store.transition(c.task_id, Status.SUCCEEDED)


def test_a_stale_write_loses_and_is_retried(store, monkeypatch):
    """Compare-and-set: a write based on an old read is refused; the loop re-reads."""
    c = cell()
    store.register([c])
    stale = store.get(c.task_id)
    store.transition(c.task_id, Status.RUNNING)        # someone else moved it meanwhile
    assert store._replace(stale, stale.moved(Status.CANCELLED)) is False
    if isinstance(store, SqliteTaskLog):
        return  # SQLite's transition reads and writes in one transaction: nothing to retry
    calls = []
    real_get = store.get

    def get_stale_once(task_id):
        calls.append(task_id)
        return stale if len(calls) == 1 else real_get(task_id)

    monkeypatch.setattr(store, "get", get_stale_once)
    record = store.transition(c.task_id, Status.RUNNING)
    assert len(calls) == 2 and record.attempts == 2


def test_ttl_and_seed_fields_survive_transitions(store):
    c = cell()
    expires = int(time.time()) + 86400
    store.register([c], expires_at=expires)
    store.transition(c.task_id, Status.RUNNING, extra={"files": "s3://x/", "date": "20240601"})
    record = store.transition(c.task_id, Status.SUCCEEDED, outputs={"rgb": "x"},
                              extra={"result": "success"})
    assert record.to_item()[TTL_ATTRIBUTE] == expires
    again = store.get(c.task_id)
    assert again.extra == {"files": "s3://x/", "date": "20240601", "result": "success"}
    assert again.expires_at == expires


def _hammer(path: str, task_id: str, n: int) -> None:
    log = SqliteTaskLog(path)
    for _ in range(n):
        log.transition(task_id, Status.RUNNING)


def test_sqlite_is_safe_for_concurrent_worker_processes(tmp_path):
    path = str(tmp_path / "log.sqlite")
    log = SqliteTaskLog(path)
    c = cell()
    log.register([c])
    log.transition(c.task_id, Status.RUNNING)
    processes = [multiprocessing.get_context("spawn").Process(
        target=_hammer, args=(path, c.task_id, 40)) for _ in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
        assert p.exitcode == 0
    assert log.get(c.task_id).attempts == 1 + 4 * 40   # not one update lost


def test_open_task_log_uris(tmp_path):
    assert isinstance(open_task_log(f"sqlite://{tmp_path}/a.sqlite"), SqliteTaskLog)
    assert open_task_log(None).path.endswith("tasklog.sqlite")
    with mock_aws():
        store = open_task_log("dynamodb://my-table?region=eu-west-1")
        assert isinstance(store, DynamoTaskLog) and store.table_name == "my-table"
        assert store.uri == "dynamodb://my-table?region=eu-west-1"
    with pytest.raises(InvalidInput, match="is not understood"):
        open_task_log("postgres://x")


def test_record_json_round_trip():
    record = Record.for_cell(cell(), expires_at=123).moved(Status.RUNNING)
    assert Record.from_item(record.to_item()) == record


def test_skipped_is_done_and_carries_its_reason_and_numbers(store):
    """RUNNING → SKIPPED with the reason and the AOI's numbers (floats, None, nested); a
    skipped record, like a succeeded one, never moves again (resume leaves it)."""
    from qgis_rsbatch.core.tasklog.schema import AOI_MASKED_ATTRIBUTE, STATS_ATTRIBUTE

    c = cell()
    store.register([c])
    store.transition(c.task_id, Status.RUNNING)
    stats = {"ndvi": {"valid_pixels": 0, "valid_fraction": 0.0, "mean": None}}
    store.transition(c.task_id, Status.SKIPPED, error="AOI 87 % masked > 60 %",
                     extra={AOI_MASKED_ATTRIBUTE: 87.125, STATS_ATTRIBUTE: stats})
    record = store.get(c.task_id)
    assert record.status is Status.SKIPPED and record.status.finished and record.status.done
    assert record.error == "AOI 87 % masked > 60 %" and record.outputs == {}
    assert record.aoi_masked_pct == 87.125 and record.stats == stats
    for target in (Status.PENDING, Status.RUNNING, Status.FAILED, Status.SUCCEEDED):
        with pytest.raises(TransitionRejected, match="SKIPPED; it cannot become"):
            store.transition(c.task_id, target)
    assert store.get(c.task_id).status is Status.SKIPPED
    other = cell("2024-06-02")
    store.register([other])
    with pytest.raises(TransitionRejected, match="PENDING; it cannot become SKIPPED"):
        store.transition(other.task_id, Status.SKIPPED, error="never ran")


def test_a_records_index_shard_is_fixed_by_its_cell_and_the_same_in_every_process():
    """Workers, Lambdas and clients compute the shard apart: it must not depend on hash()."""
    import subprocess
    import sys

    from qgis_rsbatch.core.tasklog import schema

    assert schema.job_shard("job-1", "32TMT_2024-06-01") == "job-1#9"
    assert schema.job_shard("job-1", "32TMT_2024-06-02") == "job-1#3"
    code = ("from qgis_rsbatch.core.tasklog.schema import job_shard;"
            "print(job_shard('job-1', '32TMT_2024-06-01'))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": "123"}, check=True)
    assert other.stdout.strip() == "job-1#9"
    shards = {schema.job_shard("j", f"T{n:05d}_2024-06-01") for n in range(1000)}
    assert shards == set(schema.job_shards("j"))  # 1,000 cells reach all 16
    item = schema.Record(task_id="j#c", job_id="j", cell_id="c", tile="32TMT",
                         date="2024-06-01", status=schema.Status.PENDING).to_item()
    assert (item["JobId"], item[schema.JOB_INDEX_KEY]) == ("j", schema.job_shard("j", "c"))
    assert schema.Record.from_item(item).extra == {}


def mosaic_unit(job="job1"):
    from qgis_rsbatch.core.contract import ReduceUnit

    return ReduceUnit.from_dict({
        "job_id": job, "kind": "mosaic", "product": "ndvi", "date": "2024-06-01",
        "inputs": ["32TMT_2024-06-01", "32TNT_2024-06-01"], "output": "/tmp/out",
        "grid": {"epsg": 32632, "transform": [10, 0, 500000, 0, -10, 5000000],
                 "width": 10, "height": 10}})


@pytest.mark.parametrize("ended", [Status.SUCCEEDED, Status.SKIPPED])
def test_a_finished_unit_can_be_sent_back_to_be_remade_but_a_cell_cannot(store, ended):
    """A unit made without an input goes back to PENDING (resume, once that input runs
    again), saying why until it ends again; cells and unfinished units are refused."""
    from qgis_rsbatch.core.tasklog.schema import REMAKE_ATTRIBUTE, remake_pending

    unit, c = mosaic_unit(), cell()
    store.register([c, unit])
    with pytest.raises(TransitionRejected, match="PENDING; it cannot become PENDING"):
        store.remake(unit.task_id, "too early")
    for task in (c, unit):
        store.transition(task.task_id, Status.RUNNING)
        store.transition(task.task_id, ended, outputs={"ndvi": "x"}, error="why",
                         extra={"LackingInputs": ["32TMT_2024-06-01"]})
    with pytest.raises(TransitionRejected, match=f"{ended}; it cannot become PENDING"):
        store.remake(c.task_id, "cells are made once")
    with pytest.raises(TransitionRejected, match=f"{ended}; it cannot become PENDING"):
        store.transition(unit.task_id, Status.PENDING)  # only as a remake, with its reason
    back = store.remake(unit.task_id, "made without 32TMT_2024-06-01, which runs again")
    assert back.status is Status.PENDING and back.outputs == {} and back.error is None
    assert store.get(unit.task_id) == back and remake_pending(back)
    store.transition(unit.task_id, Status.RUNNING)
    again = store.transition(unit.task_id, Status.SUCCEEDED, outputs={"ndvi": "x"},
                             extra={"LackingInputs": [], REMAKE_ATTRIBUTE: None})
    assert again.attempts == 2 and not remake_pending(store.get(unit.task_id))
    assert store.get(c.task_id).status is ended
