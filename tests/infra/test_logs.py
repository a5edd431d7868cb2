"""`rsbatch logs JOB_ID CELL_ID` on AWS: the cell's CloudWatch stream, found through the
Batch job id the worker records on its task-log record (moto; the hooks play the awslogs
driver, copying the container's output into the job's stream)."""

from __future__ import annotations

import json

import pytest

from .conftest import REGION, STACK

pytestmark = pytest.mark.slow


def test_the_logs_command_prints_the_cells_cloudwatch_stream(deploy_stack, bands, capsys,
                                                            tmp_path, monkeypatch):
    from qgis_rsbatch import cli
    from qgis_rsbatch.core.backends.aws import AwsBackend, stack_outputs_path
    from qgis_rsbatch.core.contract import Job
    from qgis_rsbatch.core.tasklog import default_sqlite_path
    from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog

    stack = deploy_stack()
    results = f"s3://{stack.outputs['ResultsBucket']}/logs"
    job = Job.from_dict({"job_id": "job-logs", "cells": [
        {"tile": "32TMT", "date": "2024-06-01", "bands": bands("32TMT", "2024-06-01", 3),
         "products": ["ndvi"], "output": results, "scale": 0.0001, "offset": -0.1}]})
    outputs = {**stack.outputs, "StackName": STACK, "Region": REGION,
               "EndpointUrl": stack.url, "StateMachineArn": stack.state_machine_arn}
    path = stack_outputs_path(STACK)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outputs))
    aws = AwsBackend(stack=STACK, registry=SqliteTaskLog(default_sqlite_path()))
    status = aws.wait(aws.submit(job).job_id, interval=0.5, timeout=240)
    assert status.succeeded, status.records
    record = stack.records("job-logs")["32TMT_2024-06-01"]
    batch_job_id = record.extra["BatchJobId"]
    [run] = stack.hooks.runs_of("32TMT")
    assert run.stderr.strip()

    code = cli.main(["logs", "job-logs", "32TMT_2024-06-01"])

    printed = capsys.readouterr().out
    assert code == 0
    assert printed.splitlines() == [line for line in run.stderr.splitlines() if line.strip()]
    described = stack.client("batch").describe_jobs(jobs=[batch_job_id])["jobs"][0]
    assert described["jobName"] == "job-logs-32TMT_2024-06-01"
    # a cell the job does not have: one line, exit 2
    assert cli.main(["logs", "job-logs", "32TMT_2024-06-09"]) == 2
    assert "has no cell 32TMT_2024-06-09" in capsys.readouterr().err
