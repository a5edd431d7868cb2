"""Nothing waits forever, on moto: the watchdog, the reconciler and the cells' time limits.

Each test deploys the real template (infra/deploy.py), starts an execution whose Batch job
is held in RUNNABLE (tests/infra/motohooks.py: no capacity), and invokes the functions the
way AWS would: the watchdog through Lambda as its schedule does, the reconciler with the
event EventBridge sends for "Step Functions Execution Status Change".
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from tests.polling import wait_until

from .conftest import REGION, STACK

pytestmark = pytest.mark.slow

BANDS = {key: f"s3://rsbatch-test-bands/T/{key}.tif" for key in ("blue", "green", "red", "nir")}


def _job(job_id: str, output: str, days: int) -> dict[str, Any]:
    return {"job_id": job_id, "cells": [
        {"tile": "32TMT", "date": f"2024-06-{day:02d}", "bands": BANDS, "output": output,
         "products": ["ndvi"], "cloud_mask": False} for day in range(1, days + 1)]}


def _start(stack: Any, execution_input: dict[str, Any]) -> str:
    sfn = stack.client("stepfunctions")
    return sfn.start_execution(stateMachineArn=stack.state_machine_arn,
                               input=json.dumps(execution_input))["executionArn"]


def _runnable(stack: Any, count: int) -> list[dict[str, Any]]:
    batch = stack.client("batch")

    def listed() -> list[dict[str, Any]] | None:
        jobs = batch.list_jobs(jobQueue=stack.outputs["JobQueueArn"],
                               jobStatus="RUNNABLE")["jobSummaryList"]
        return jobs if len(jobs) >= count else None

    return wait_until(listed, 120, f"{count} Batch job(s) RUNNABLE", interval=0.2)


def _finished(stack: Any, arn: str) -> dict[str, Any]:
    sfn = stack.client("stepfunctions")

    def ended() -> dict[str, Any] | None:
        described = sfn.describe_execution(executionArn=arn)
        return described if described["status"] != "RUNNING" else None

    return wait_until(ended, 240, "the execution ending", interval=0.2)


def _invoke(stack: Any, function: str, event: dict[str, Any]) -> dict[str, Any]:
    answer = stack.client("lambda").invoke(FunctionName=f"{STACK}-{function}",
                                           Payload=json.dumps(event).encode())
    body = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, body
    return body


#: moto 5.2.5 ends an execution stopped inside a Map as FAILED (States.Runtime: its
#: interpreter trips over the aborted iteration); AWS reports ABORTED with the error and
#: cause given to StopExecution, and EventBridge delivers that
STOPPED = {"status": "ABORTED"}


def _status_change(stack: Any, arn: str, **told: Any) -> dict[str, Any]:
    """The event EventBridge delivers for an execution's status change (its documented shape).

    `told` overrides what moto's describe_execution says (status, error, cause).
    """
    described = {**stack.client("stepfunctions").describe_execution(executionArn=arn), **told}

    def millis(value: Any) -> int | None:
        return int(value.timestamp() * 1000) if value else None

    return {
        "version": "0", "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change", "source": "aws.states",
        "account": "123456789012", "time": datetime.now(timezone.utc).isoformat(),
        "region": REGION, "resources": [arn],
        "detail": {
            "executionArn": arn, "stateMachineArn": described["stateMachineArn"],
            "name": arn.rsplit(":", 1)[1], "status": described["status"],
            "startDate": millis(described["startDate"]),
            "stopDate": millis(described.get("stopDate")),
            "input": described["input"], "output": None,
            "inputDetails": {"included": True}, "outputDetails": None,
            "error": described.get("error"), "cause": described.get("cause"),
        },
    }


def _latest_metrics(stack: Any) -> dict[tuple[str, str | None], float]:
    """The watchdog's published values: (metric, Status dimension) → the latest value."""
    cloudwatch = stack.client("cloudwatch")
    found = {}
    for metric in cloudwatch.list_metrics(Namespace="rsbatch")["Metrics"]:
        dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
        assert dims["Stack"] == STACK
        stats = cloudwatch.get_metric_statistics(
            Namespace="rsbatch", MetricName=metric["MetricName"],
            Dimensions=metric["Dimensions"], StartTime=datetime(2020, 1, 1, tzinfo=timezone.utc),
            EndTime=datetime(2100, 1, 1, tzinfo=timezone.utc),
            Period=60, Statistics=["Maximum"])
        found[(metric["MetricName"], dims.get("Status"))] = max(
            p["Maximum"] for p in stats["Datapoints"])
    return found


def test_the_watchdog_cancels_a_cell_stuck_in_runnable_and_the_job_completes(deploy_stack):
    stack = deploy_stack()
    results = f"s3://{stack.outputs['ResultsBucket']}/w"
    # the first cell waited three hours for Spot capacity; the second is still young
    stack.hooks.hold_runnable["job-stuck-32TMT_2024-06-01"] = 3 * 3600
    stack.hooks.hold_runnable["job-stuck-32TMT_2024-06-02"] = 60
    arn = _start(stack, {"job": _job("job-stuck", results, 2)})
    _runnable(stack, 2)

    report = _invoke(stack, "watchdog", {"source": "aws.events",
                                         "detail-type": "Scheduled Event", "detail": {}})

    [cancelled] = report["cancelled"]
    assert cancelled["task_id"] == "job-stuck#32TMT_2024-06-01"
    assert cancelled["status"] == "FAILED"
    record = stack.records("job-stuck")["32TMT_2024-06-01"]
    assert record.status.value == "FAILED"
    assert record.error.startswith(f"no Spot capacity for 2 h in {REGION} (")
    assert "RUNNABLE" in record.error and "vCPUs" in record.error
    assert stack.records("job-stuck")["32TMT_2024-06-02"].status.value == "PENDING"
    # the dashboard's queue depth: one cell still waits, one was cancelled
    metrics = _latest_metrics(stack)
    assert metrics[("BatchJobs", "RUNNABLE")] == 1
    assert metrics[("BatchJobs", "RUNNING")] == 0
    assert metrics[("CellsCancelledStuck", None)] == 1
    messages = stack.messages()
    stuck = [m for m in messages if m["event"] == "cells.stuck"]
    assert len(stuck) == 1
    assert stuck[0]["body"]["cancelled"][0]["task_id"] == "job-stuck#32TMT_2024-06-01"
    # the young cell gets capacity at last: cancelled by hand here, the job then ends
    batch = stack.client("batch")
    [young] = [j for j in _runnable(stack, 1) if j["jobName"].endswith("06-02")]
    batch.cancel_job(jobId=young["jobId"], reason="test over")
    execution = _finished(stack, arn)
    assert execution["status"] == "SUCCEEDED", execution
    summary = json.loads(execution["output"])
    assert summary["failed"] == 2
    cells = {c["cell_id"]: c["error"] for c in summary["failed_cells"]}
    assert cells["32TMT_2024-06-01"] == record.error  # the watchdog's reason is kept


def test_a_cell_that_waits_past_its_time_limit_fails_with_that_reason(deploy_stack):
    stack = deploy_stack()
    results = f"s3://{stack.outputs['ResultsBucket']}/t"
    stack.hooks.hold_runnable["job-slow-32TMT_2024-06-01"] = 0
    arn = _start(stack, {"job": _job("job-slow", results, 1), "limits": {"cell_seconds": 2}})

    execution = _finished(stack, arn)

    assert execution["status"] == "SUCCEEDED", execution
    record = stack.records("job-slow")["32TMT_2024-06-01"]
    assert record.status.value == "FAILED"
    assert record.error.startswith("the cell did not finish within its time limit of 2 s")
    assert [m["event"] for m in stack.messages()] == ["cell.failed", "job.completed"]


def test_a_job_limit_larger_than_the_stacks_is_refused_before_anything_runs(deploy_stack):
    stack = deploy_stack()
    results = f"s3://{stack.outputs['ResultsBucket']}/t"
    arn = _start(stack, {"job": _job("job-long", results, 1),
                         "limits": {"job_seconds": 10**9}})
    execution = _finished(stack, arn)
    assert execution["status"] == "FAILED"
    assert "exceeds the stack's JobTimeLimitSeconds" in execution["cause"]
    assert stack.records("job-long") == {}
    assert not stack.hooks.runs


def test_a_stopped_execution_is_reconciled_and_reported(deploy_stack):
    stack = deploy_stack()
    results = f"s3://{stack.outputs['ResultsBucket']}/r"
    for day in (1, 2, 3):
        stack.hooks.hold_runnable[f"job-stop-32TMT_2024-06-0{day}"] = 0
    arn = _start(stack, {"job": _job("job-stop", results, 3)})
    _runnable(stack, 3)
    store_records = stack.records("job-stop")
    assert {r.status.value for r in store_records.values()} == {"PENDING"}
    # one cell had already finished when a person stopped the execution in the console
    from qgis_rsbatch.core.contract import Status
    from qgis_rsbatch.core.tasklog.dynamodb import DynamoTaskLog

    store = DynamoTaskLog(stack.outputs["TaskLogTable"], region=REGION, endpoint_url=stack.url)
    store.transition("job-stop#32TMT_2024-06-01", Status.RUNNING)
    store.transition("job-stop#32TMT_2024-06-01", Status.SUCCEEDED, outputs={"ndvi": "s3://x"})
    store.transition("job-stop#32TMT_2024-06-02", Status.RUNNING)
    sfn = stack.client("stepfunctions")
    sfn.stop_execution(executionArn=arn, error="Stopped", cause="stopped in the console")
    _finished(stack, arn)
    stack.messages()  # drop anything sent before the stop
    stopped = {**STOPPED, "error": "Stopped", "cause": "stopped in the console"}

    summary = _invoke(stack, "reconcile", _status_change(stack, arn, **stopped))

    records = stack.records("job-stop")
    assert {cell: r.status.value for cell, r in records.items()} == {
        "32TMT_2024-06-01": "SUCCEEDED", "32TMT_2024-06-02": "CANCELLED",
        "32TMT_2024-06-03": "CANCELLED"}
    assert records["32TMT_2024-06-03"].error == \
        "the execution was stopped (Stopped: stopped in the console)"
    assert (summary["succeeded"], summary["cancelled"], summary["unfinished"]) == (1, 2, 0)
    [message] = stack.messages()
    assert message["event"] == "job.ended"
    assert message["body"]["execution_status"] == "ABORTED"
    assert message["body"]["cancelled"] == 2 and message["body"]["job_id"] == "job-stop"
    assert message["subject"] == "rsbatch job-stop: 1/3 succeeded, 0 failed (aborted)"
    # EventBridge may deliver twice: the second changes nothing and reports the same counts
    again = _invoke(stack, "reconcile", _status_change(stack, arn, **stopped))
    assert (again["ended_now"], again["cancelled"]) == (0, 2)


def test_a_job_past_its_own_time_limit_is_stopped_and_its_cells_fail(deploy_stack):
    stack = deploy_stack()
    results = f"s3://{stack.outputs['ResultsBucket']}/j"
    stack.hooks.hold_runnable["job-late-32TMT_2024-06-01"] = 0
    arn = _start(stack, {"job": _job("job-late", results, 1), "limits": {"job_seconds": 1}})
    _runnable(stack, 1)
    time.sleep(1.1)  # the job's own limit passes (the stack's is a week)

    report = _invoke(stack, "watchdog", {"source": "aws.events", "detail": {}})

    [stopped] = report["stopped"]
    assert stopped["execution"] == arn
    _finished(stack, arn)
    summary = _invoke(stack, "reconcile", _status_change(
        stack, arn, **STOPPED, error="rsbatch.JobTimeLimit", cause=stopped["cause"]))
    record = stack.records("job-late")["32TMT_2024-06-01"]
    assert record.status.value == "FAILED"
    assert record.error == ("the job's time limit ran out before this cell finished "
                            "(the job's time limit of 1 s ran out)")
    assert summary["failed"] == 1
    assert sorted(m["event"] for m in stack.messages()) == ["cells.stuck", "job.ended"]


def test_cancel_from_the_client_stops_the_batch_jobs_and_ends_every_cell(deploy_stack,
                                                                        tmp_path):
    from qgis_rsbatch.core.backends.aws import AwsBackend
    from qgis_rsbatch.core.contract import Job
    from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog

    stack = deploy_stack()
    results = f"s3://{stack.outputs['ResultsBucket']}/c"
    job = Job.from_dict(_job("job-cancel", results, 3))
    for cell in job.cells:
        stack.hooks.hold_runnable[f"job-cancel-{cell.cell_id}"] = 0
    # a job whose name shares the prefix: its Batch job must survive the cancel
    other = Job.from_dict(_job("job-cancel-2", results, 1))
    stack.hooks.hold_runnable["job-cancel-2-32TMT_2024-06-01"] = 0
    outputs = {**stack.outputs, "StackName": STACK, "Region": REGION,
               "EndpointUrl": stack.url, "StateMachineArn": stack.state_machine_arn}
    aws = AwsBackend(outputs=outputs,
                     registry=SqliteTaskLog(str(tmp_path / "registry.sqlite")))
    aws.submit(job)
    aws.submit(other)
    _runnable(stack, 4)

    status = aws.cancel(job.job_id)

    assert status.counts["CANCELLED"] == 3 and status.finished
    assert {r.error for r in status.records} == {"cancelled by the user"}
    batch = stack.client("batch")
    left = batch.list_jobs(jobQueue=stack.outputs["JobQueueArn"],
                           jobStatus="RUNNABLE")["jobSummaryList"]
    assert [j["jobName"] for j in left] == ["job-cancel-2-32TMT_2024-06-01"]
    assert stack.records("job-cancel-2")["32TMT_2024-06-01"].status.value == "PENDING"


def test_a_summary_that_fails_is_still_announced_and_the_execution_fails(deploy_stack,
                                                                        monkeypatch):
    from infra import handler
    from qgis_rsbatch.core.errors import SourceUnavailable

    def broken(event, context=None):
        raise SourceUnavailable("DynamoDB query failed: the table is being restored")

    monkeypatch.setattr(handler, "summarize", broken)  # the Lambda hook looks it up per call
    stack = deploy_stack()
    results = f"s3://{stack.outputs['ResultsBucket']}/s"
    arn = _start(stack, {"job": _job("job-nosum", results, 1)})  # its band is missing

    execution = _finished(stack, arn)

    assert execution["status"] == "FAILED"
    assert execution["error"] == "rsbatch.SummaryFailed"
    messages = {m["event"]: m for m in stack.messages()}
    notice = messages["job.completed"]
    assert notice["subject"] == "rsbatch: a job ended but could not be summarized"
    assert notice["body"]["job_id"] == "job-nosum" and notice["body"]["total"] == 1
    assert "the table is being restored" in notice["body"]["summary_cause"]
    # the cell itself was recorded and reported as usual
    assert stack.records("job-nosum")["32TMT_2024-06-01"].status.value == "FAILED"
    assert "cell.failed" in messages
