"""The aws backend's client side against moto: upload, start, reconcile, cancel, resume."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from qgis_rsbatch.core.backends.aws import AwsBackend, execution_name, stack_outputs_path
from qgis_rsbatch.core.contract import Job, Status
from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog
from tests.backends.test_local import sample_job  # noqa: F401 - fixture
from tests.worker.test_remote import create_task_table

PASS_MACHINE = json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Pass",
                                                                     "End": True}}})


@pytest.fixture
def stack(tmp_path):
    """What a deployed stack offers the client: table, bucket, state machine, outputs file."""
    with mock_aws():
        create_task_table()
        boto3.client("s3").create_bucket(Bucket="results")
        iam = boto3.client("iam").create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")
        machine = boto3.client("stepfunctions").create_state_machine(
            name="rsbatch-jobs", definition=PASS_MACHINE, roleArn=iam["Role"]["Arn"])
        outputs = {"StackName": "teststack", "Region": "us-east-1",
                   "StateMachineArn": machine["stateMachineArn"], "TaskLogTable": "task-log",
                   "ResultsBucket": "results", "JobsPrefix": "s3://results/_rsbatch/jobs/"}
        path = stack_outputs_path("teststack")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(outputs))
        yield outputs


def s3_job(job: Job) -> Job:
    data = job.to_dict()
    for cell in data["cells"]:
        cell["output"] = "s3://results/results"
    return Job.from_dict(data)


def backend(tmp_path) -> AwsBackend:
    return AwsBackend(stack="teststack", registry=SqliteTaskLog(str(tmp_path / "reg.sqlite")))


def test_submit_uploads_the_job_and_starts_an_execution(stack, sample_job, tmp_path):  # noqa: F811
    aws = backend(tmp_path)
    assert aws.default_output() == "s3://results/results"
    job = s3_job(sample_job)
    status = aws.submit(job)
    assert [r.status for r in status.records] == [Status.PENDING] * 4
    arn = aws.registry.load_job(job.job_id)[2]["executions"][0]
    execution = boto3.client("stepfunctions").describe_execution(executionArn=arn)
    assert execution["name"] == job.job_id
    uri = json.loads(execution["input"])["job_uri"]
    assert uri == f"s3://results/_rsbatch/jobs/{job.job_id}/job-0.json"
    body = boto3.client("s3").get_object(Bucket="results",
                                         Key=f"_rsbatch/jobs/{job.job_id}/job-0.json")["Body"]
    assert Job.from_dict(json.loads(body.read())) == job


def test_a_jobs_own_time_limits_travel_in_the_execution_input(stack, sample_job,  # noqa: F811
                                                                tmp_path):
    aws = backend(tmp_path)
    data = s3_job(sample_job).to_dict()
    data["params"] = {**data.get("params", {}), "limits": {"cell_seconds": 3600,
                                                           "job_seconds": 86400}}
    job = Job.from_dict(data)
    aws.submit(job)
    arn = aws.registry.load_job(job.job_id)[2]["executions"][0]
    execution = boto3.client("stepfunctions").describe_execution(executionArn=arn)
    assert json.loads(execution["input"])["limits"] == {"cell_seconds": 3600,
                                                        "job_seconds": 86400}


def test_local_outputs_are_refused(stack, sample_job, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="on AWS the outputs must go to S3"):
        backend(tmp_path).submit(sample_job)


def test_an_ended_execution_fails_unfinished_cells(stack, sample_job, tmp_path):  # noqa: F811
    aws = backend(tmp_path)
    job = s3_job(sample_job)
    aws.submit(job)
    aws.task_log.register(job.cells)
    first, second = job.cells[0], job.cells[1]
    aws.task_log.transition(first.task_id, Status.RUNNING)
    aws.task_log.transition(first.task_id, Status.SUCCEEDED, outputs={"ndvi": "s3://x"})
    aws.task_log.transition(second.task_id, Status.RUNNING)
    arn = aws.registry.load_job(job.job_id)[2]["executions"][0]
    boto3.client("stepfunctions").stop_execution(executionArn=arn, error="States.Timeout",
                                                 cause="the job ran out of time")
    status = aws.status(job.job_id)
    by_cell = {r.cell_id: r for r in status.records}
    assert by_cell[first.cell_id].status is Status.SUCCEEDED
    for cell in job.cells[1:]:
        record = by_cell[cell.cell_id]
        assert record.status is Status.FAILED
        assert record.error.startswith("the execution ended (ABORTED) before this cell finished")
    assert status.finished and not status.succeeded
    # written to the task log too: never "running" for ever
    assert aws.task_log.get(second.task_id).status is Status.FAILED


def test_cancel_and_resume_reruns_only_what_did_not_succeed(stack, sample_job, tmp_path):  # noqa: F811
    aws = backend(tmp_path)
    job = s3_job(sample_job)
    aws.submit(job)
    aws.task_log.register(job.cells)
    done = job.cells[0]
    aws.task_log.transition(done.task_id, Status.RUNNING)
    aws.task_log.transition(done.task_id, Status.SUCCEEDED, outputs={"ndvi": "s3://x"})
    status = aws.cancel(job.job_id)
    assert status.counts == {"PENDING": 0, "RUNNING": 0, "SUCCEEDED": 1, "FAILED": 0,
                             "CANCELLED": 3, "SKIPPED": 0}
    aws.resume(job.job_id)
    executions = aws.registry.load_job(job.job_id)[2]["executions"]
    assert len(executions) == 2
    second = boto3.client("stepfunctions").describe_execution(executionArn=executions[1])
    assert second["name"] == execution_name(job.job_id, 1)
    body = boto3.client("s3").get_object(Bucket="results",
                                         Key=f"_rsbatch/jobs/{job.job_id}/job-1.json")["Body"]
    rerun = Job.from_dict(json.loads(body.read()))
    assert rerun == job  # whole, so units can name every input; the planner skips the rest
    assert json.loads(second["input"])["resume"] is True
    assert {r.status for r in aws.task_log.job_records(job.job_id)} == {Status.SUCCEEDED,
                                                                       Status.PENDING}


def test_a_stack_that_is_not_deployed(tmp_path):
    with mock_aws(), pytest.raises(ValueError, match=r"stack 'nostack' not found.*make deploy"):
        AwsBackend(stack="nostack")


def test_expired_credentials_are_named(stack, sample_job, tmp_path, monkeypatch):  # noqa: F811
    from botocore.exceptions import ClientError

    aws = backend(tmp_path)

    def expired(**kwargs):
        raise ClientError({"Error": {"Code": "ExpiredTokenException", "Message": "expired"}},
                          "StartExecution")

    monkeypatch.setattr(aws, "_client", lambda service: type(
        "C", (), {"put_object": lambda self, **k: None, "start_execution":
                  lambda self, **k: expired(**k)})())
    with pytest.raises(PermissionError, match=r"ExpiredTokenException.*have not expired"):
        aws.submit(s3_job(sample_job))
