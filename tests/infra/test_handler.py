"""The stack's Lambda functions (infra/handler.py), called directly against in-process moto."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from typing import Any

import pytest

from infra import handler
from infra import summary as summary_module
from qgis_rsbatch.core.contract import Cell, Status
from qgis_rsbatch.core.errors import InvalidInput
from qgis_rsbatch.core.tasklog import schema
from qgis_rsbatch.core.tasklog.dynamodb import DynamoTaskLog

BUCKET = "rsbatch-results"
BANDS = {key: f"s3://bands/T/{key}.tif" for key in ("blue", "green", "red", "nir", "scl")}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto in this process: the results bucket and the task-log table of core's schema."""
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("TASK_LOG_TABLE", schema.TABLE_NAME)
    monkeypatch.setenv("RESULTS_BUCKET", BUCKET)
    monkeypatch.setenv("DISTRIBUTED_THRESHOLD", "40")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        boto3.client("dynamodb").create_table(TableName=schema.TABLE_NAME,
                                              **schema.table_shape())
        yield boto3


def _cells(n: int, **extra: Any) -> list[dict[str, Any]]:
    """n tile-dates of 32TMT from 2024-06-01 on."""
    from datetime import date, timedelta

    return [{"tile": "32TMT", "date": (date(2024, 6, 1) + timedelta(days=i)).isoformat(),
             "bands": BANDS, "output": f"s3://{BUCKET}/out", **extra} for i in range(n)]


def _plan(execution_input: dict, name: str = "exec-1") -> dict:
    return handler.plan({"input": execution_input, "execution_name": name})


def _log() -> DynamoTaskLog:
    return DynamoTaskLog(schema.TABLE_NAME, region="us-east-1")


def test_a_small_job_is_planned_inline_with_pending_records(aws):
    plan = _plan({"job": {"job_id": "job-1", "cells": _cells(3)}})
    assert (plan["mode"], plan["count"], plan["created"]) == ("INLINE", 3, 3)
    assert plan["outputs"] == [f"s3://{BUCKET}/out/job-1/"]
    item = plan["items"][0]
    assert item["task_id"] == "job-1#32TMT_2024-06-01"
    assert item["job_name"] == "job-1-32TMT_2024-06-01"
    assert item["command"][:3] == ["--task-log", "dynamodb://task-log?region=us-east-1", "run"]
    assert Cell.from_dict(json.loads(item["command"][3])).task_id == item["task_id"]
    assert {r.status for r in _log().job_records("job-1")} == {Status.PENDING}


def test_planning_again_leaves_existing_records_alone(aws):
    _plan({"job": {"job_id": "job-1", "cells": _cells(2)}})
    _log().transition("job-1#32TMT_2024-06-01", Status.RUNNING)
    again = _plan({"job": {"job_id": "job-1", "cells": _cells(2)}})
    assert again["created"] == 0
    assert _log().get("job-1#32TMT_2024-06-01").status is Status.RUNNING


def test_a_large_job_goes_to_s3_for_a_distributed_map(aws):
    plan = _plan({"job": {"job_id": "job-big", "cells": _cells(41)}})
    assert (plan["mode"], plan["items"]) == ("DISTRIBUTED", [])
    body = aws.client("s3").get_object(Bucket=BUCKET, Key=plan["items_key"])["Body"].read()
    assert len(json.loads(body)) == 41
    assert plan["items_key"] == "_rsbatch/jobs/job-big/items.json"
    assert len(_log().job_records("job-big")) == 41


def test_a_cell_too_large_for_the_batch_request_is_passed_through_s3(aws):
    ring = [[7.0 + i / 10000, 45.0] for i in range(1000)] + [[7.2, 45.2], [7.0, 45.0]]
    aoi = {"type": "Polygon", "coordinates": [ring]}
    plan = _plan({"job": {"job_id": "job-aoi", "cells": _cells(1, aoi=aoi)}})
    uri = plan["items"][0]["command"][-1]
    assert uri == f"s3://{BUCKET}/_rsbatch/jobs/job-aoi/cells/32TMT_2024-06-01.json"
    stored = aws.client("s3").get_object(Bucket=BUCKET, Key=uri.split("/", 3)[3])
    assert Cell.from_dict(json.loads(stored["Body"].read())).aoi == aoi


def test_a_job_can_come_from_the_jobs_prefix(aws):
    key = "_rsbatch/jobs/job-2/job.json"
    aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=json.dumps(
        {"job_id": "job-2", "cells": _cells(2)}))
    assert _plan({"job_uri": f"s3://{BUCKET}/{key}"})["count"] == 2
    with pytest.raises(InvalidInput, match="must be under"):
        _plan({"job_uri": "s3://elsewhere/job.json"})
    with pytest.raises(InvalidInput, match="does not exist"):
        _plan({"job_uri": f"s3://{BUCKET}/_rsbatch/jobs/nope.json"})


@pytest.mark.parametrize(("execution_input", "message"), [
    ({"cells": []}, "execution input must be"),
    ({"job": {"job_id": "j", "cells": []}}, "has no cells"),
    ({"job": {"job_id": "j", "cells": _cells(1, output="s3://other-bucket/x")}},
     "outside this stack's results bucket"),
    ({"job": {"job_id": "j", "cells": _cells(1, tile="99ZZZ")}}, "99ZZZ"),
    ({"detail": {"cells": [{"files": "s3://x/y/", "date": "20200801",
                            "output_bucket": BUCKET}]}}, "seed cell 0"),
])
def test_bad_input_is_rejected_before_anything_is_written(aws, execution_input, message):
    with pytest.raises(InvalidInput, match=message):
        _plan(execution_input)
    table = aws.resource("dynamodb").Table(schema.TABLE_NAME)
    assert table.scan()["Items"] == []


def test_the_seeds_input_gets_one_job_id_from_the_execution_name(aws):
    entries = [{"files": f"s3://sentinel-s2-l2a/tiles/48/R/XT/2020/8/{d}/0/R10m/",
                "date": f"2020080{d}", "output_bucket": BUCKET, "region_name": "eu-west-1"}
               for d in (1, 4)]
    plan = _plan({"detail": {"cells": entries}}, name="blog run #1")
    assert plan["job_id"] == "blog-run--1"
    item = plan["items"][1]
    assert item["task_id"] == "blog-run--1#48RXT_2020-08-04"
    assert item["command"] == ["--task-log", "dynamodb://task-log?region=us-east-1"]
    env = {e["Name"]: e["Value"] for e in item["environment"]}
    assert env == {**entries[1], "job_id": "blog-run--1"}
    # the worker's seed mode derives the same task id from that environment
    from qgis_rsbatch.core.seed import seed_cell

    assert seed_cell(env).task_id == item["task_id"]
    assert len(_log().job_records("blog-run--1")) == 2


BATCH_JOB = {"JobId": "abc-123", "Status": "FAILED", "StatusReason":
             "Essential container in task exited",
             "Container": {"ExitCode": 137, "Reason": "OutOfMemoryError: Container killed",
                           "LogStreamName": "cell/default/xyz"},
             "Attempts": [{"Container": {"ExitCode": 137}}]}


def test_describe_failure_reads_the_batch_job_step_functions_reports():
    text = handler.describe_failure({"Error": "States.TaskFailed",
                                     "Cause": json.dumps(BATCH_JOB)})
    assert "AWS Batch job abc-123 FAILED" in text
    assert "OutOfMemoryError" in text and "out of memory" in text
    assert "log stream cell/default/xyz" in text
    camel = {"jobId": "j", "status": "FAILED", "statusReason": "Host EC2 (instance i-1) "
             "terminated.", "container": {}, "attempts": [{}, {}, {}]}
    text = handler.describe_failure({"Error": "States.TaskFailed", "Cause": json.dumps(camel)})
    assert "Host EC2" in text and "3 attempt(s)" in text
    assert handler.describe_failure({"Error": "Batch.AWSBatchException",
                                     "Cause": "Too Many Requests"}) == \
        "Batch.AWSBatchException: Too Many Requests"


def test_record_failure_marks_an_unfinished_cell_failed(aws):
    _plan({"job": {"job_id": "job-1", "cells": _cells(1)}})
    result = handler.record_failure({"task_id": "job-1#32TMT_2024-06-01", "error": {
        "Error": "States.TaskFailed", "Cause": json.dumps(BATCH_JOB)}})
    assert (result["status"], result["recorded_by"]) == ("FAILED", "state machine")
    record = _log().get("job-1#32TMT_2024-06-01")
    assert record.status is Status.FAILED and "out of memory" in record.error


def test_record_failure_keeps_the_workers_reason_and_never_undoes_success(aws):
    _plan({"job": {"job_id": "job-1", "cells": _cells(2)}})
    log = _log()
    first, second = "job-1#32TMT_2024-06-01", "job-1#32TMT_2024-06-02"
    log.transition(first, Status.RUNNING)
    log.transition(first, Status.FAILED, error="band nir (s3://…) does not exist")
    log.transition(second, Status.RUNNING)
    log.transition(second, Status.SUCCEEDED, outputs={"rgb": "s3://x"})
    error = {"Error": "States.TaskFailed", "Cause": json.dumps(BATCH_JOB)}
    kept = handler.record_failure({"task_id": first, "error": error})
    assert (kept["status"], kept["recorded_by"]) == ("FAILED", "worker")
    assert kept["error"] == "band nir (s3://…) does not exist"
    done = handler.record_failure({"task_id": second, "error": error})
    assert done["status"] == "SUCCEEDED"
    assert log.get(second).status is Status.SUCCEEDED


def test_summarize_counts_from_the_task_log(aws):
    _plan({"job": {"job_id": "job-1", "cells": _cells(3)}})
    log = _log()
    for day, status in ((1, Status.SUCCEEDED), (2, Status.FAILED)):
        log.transition(f"job-1#32TMT_2024-06-0{day}", Status.RUNNING)
        log.transition(f"job-1#32TMT_2024-06-0{day}", status,
                       error="boom" if status is Status.FAILED else None)
    summary = handler.summarize({"job_id": "job-1", "count": 3,
                                 "outputs": [f"s3://{BUCKET}/out/job-1/"], "execution": "e"})
    assert (summary["succeeded"], summary["failed"], summary["unfinished"]) == (1, 1, 1)
    assert summary["failed_cells"] == [{"cell_id": "32TMT_2024-06-02", "error": "boom"}]
    assert summary["subject"] == "rsbatch job-1: 1/3 succeeded, 1 failed"


def test_the_subject_stays_within_snss_100_characters():
    subject = summary_module.subject("j" * 80, 10000, 10000, 20000)
    assert len(subject) <= 100 and subject.isascii()


def test_the_lambda_package_imports_on_its_own(tmp_path):
    """Everything the handler imports is in the zip (no site-packages, no repository)."""
    from infra.deploy import lambda_package

    package = lambda_package()
    assert package == lambda_package()  # reproducible: same sources, same hash
    zipfile.ZipFile(io.BytesIO(package)).extractall(tmp_path)
    root = str(tmp_path)
    code = ("import infra.handler as h, infra.watch as w, qgis_rsbatch.core.contract as c; "
            "assert w.__file__.startswith(h.__file__.rsplit('/', 1)[0]); "
            f"assert h.__file__.startswith({root!r}) and c.__file__.startswith({root!r}); "
            "print(h.plan.__name__)")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-S", "-c", code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "plan"


def test_summarize_reads_10000_records_by_query_not_one_get_per_cell(aws, monkeypatch):
    table = aws.resource("dynamodb").Table(schema.TABLE_NAME)
    statuses = ["SUCCEEDED"] * 9000 + ["FAILED"] * 700 + ["CANCELLED"] * 200 + \
        ["RUNNING"] * 60 + ["PENDING"] * 40
    with table.batch_writer() as batch:
        for n, status in enumerate(statuses):
            cell_id = f"T{n:05d}_2024-06-01"
            record = schema.Record(
                task_id=f"job-10k#{cell_id}", job_id="job-10k", cell_id=cell_id, tile="32TMT",
                date="2024-06-01", status=Status(status), attempts=1,
                error=f"reason {n}" if status == "FAILED" else None)
            batch.put_item(Item=record.to_item())

    def no_single_reads(self, task_id):  # the old way: one GetItem per cell
        raise AssertionError(f"GetItem {task_id}")

    monkeypatch.setattr(DynamoTaskLog, "get", no_single_reads)
    summary = handler.summarize({"job_id": "job-10k", "count": 10000, "outputs": []})
    assert (summary["total"], summary["succeeded"], summary["failed"], summary["cancelled"],
            summary["unfinished"], summary["missing"]) == (10000, 9000, 700, 200, 100, 0)
    assert len(summary["failed_cells"]) == summary_module.FAILED_LISTED
    assert summary["failed_cells"][0] == {"cell_id": "T09000_2024-06-01", "error": "reason 9000"}
    assert summary["subject"] == "rsbatch job-10k: 9000/10000 succeeded, 700 failed"
    assert len(json.dumps(summary)) < 20_000  # fits an SNS message with room to spare


def test_the_projected_query_and_batched_reads_see_what_the_records_say(aws):
    _plan({"job": {"job_id": "job-p", "cells": _cells(130)}})
    log = _log()
    log.transition("job-p#32TMT_2024-06-01", Status.RUNNING)
    items = log.job_statuses("job-p")
    assert len(items) == 130
    # the records are spread over the index's shards, and every shard was read
    table = aws.resource("dynamodb").Table(schema.TABLE_NAME)
    shards = {item[schema.JOB_INDEX_KEY] for item in table.scan()["Items"]}
    assert shards == set(schema.job_shards("job-p"))
    assert set(items[0]) <= {"TaskID", "CellId", "Status", "Attempts", "UpdatedAt", "Error"}
    fresh = log.get_many([item["TaskID"] for item in items])  # two BatchGetItem pages
    assert len(fresh) == 130
    assert fresh["job-p#32TMT_2024-06-01"].status is Status.RUNNING
    ended = log.end_many(fresh.values(), Status.CANCELLED, "stopped")
    assert len(ended) == 130
    assert {r.status for r in log.job_records("job-p")} == {Status.CANCELLED}


def test_a_job_too_large_for_the_planner_is_refused_before_anything_is_written(aws,
                                                                                monkeypatch):
    monkeypatch.setenv("PLAN_MAX_CELLS", "50")
    with pytest.raises(InvalidInput, match=r"job job-huge has 51 cells; this stack plans at "
                                           r"most 50 per job .* PlanMaxCells"):
        _plan({"job": {"job_id": "job-huge", "cells": _cells(51)}})
    assert aws.resource("dynamodb").Table(schema.TABLE_NAME).scan()["Items"] == []
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket=BUCKET)


@pytest.mark.parametrize(("limits", "message"), [
    ({"cell_seconds": 0}, "limits.cell_seconds must be a positive whole number"),
    ({"cell_seconds": "1h"}, "limits.cell_seconds must be a positive whole number"),
    ({"job_seconds": 10**9}, "limits.job_seconds 1000000000 exceeds the stack's "
                             "JobTimeLimitSeconds"),
    ({"queue_seconds": 60}, "unknown key"),
])
def test_a_jobs_time_limits_are_checked_against_the_stacks(aws, limits, message):
    with pytest.raises(InvalidInput, match=message):
        _plan({"job": {"job_id": "j", "cells": _cells(1)}, "limits": limits})


def test_each_item_carries_its_time_limit_the_stacks_or_the_jobs(aws, monkeypatch):
    monkeypatch.setenv("CELL_TIME_LIMIT", "7200")
    plan = _plan({"job": {"job_id": "job-1", "cells": _cells(2)}})
    assert {item["cell_timeout"] for item in plan["items"]} == {7200}
    assert plan["limits"] == {"cell_seconds": 7200, "job_seconds": 7 * 86400}
    plan = _plan({"job": {"job_id": "job-2", "cells": _cells(2)},
                  "limits": {"cell_seconds": 600}})
    assert {item["cell_timeout"] for item in plan["items"]} == {600}
    text = handler.describe_failure({"Error": "States.Timeout", "Cause": ""}, limit=7200)
    assert text.startswith("the cell did not finish within its time limit of 2 h (waiting in "
                           "the AWS Batch queue and running)")


def test_batched_reads_retry_the_keys_dynamodb_left_unprocessed(aws, monkeypatch):
    _plan({"job": {"job_id": "job-u", "cells": _cells(3)}})
    log = _log()
    client = log._table.meta.client
    real, calls = client.batch_get_item, []

    def throttled(**kwargs):  # the first answer processes nothing, as under throttling
        calls.append(kwargs)
        if len(calls) == 1:
            return {"Responses": {schema.TABLE_NAME: []},
                    "UnprocessedKeys": kwargs["RequestItems"]}
        return real(**kwargs)

    monkeypatch.setattr(client, "batch_get_item", throttled)
    ids = [f"job-u#32TMT_2024-06-0{day}" for day in (1, 2, 3)]
    assert sorted(log.get_many(ids)) == ids
    assert len(calls) == 2 and calls[1]["RequestItems"] == calls[0]["RequestItems"]
