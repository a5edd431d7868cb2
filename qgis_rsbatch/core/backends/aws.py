"""The scale-out backend: a job becomes one execution of the deployed Step Functions state
machine (plan Lambda → Map over cells → AWS Batch → notify); status comes from DynamoDB.

The stack's outputs (state machine, table, bucket) come from the file `make deploy` wrote
(`<user data>/stacks/<stack>.json`) or from CloudFormation itself. Credentials only come
through boto3's chain (a profile, the environment, an instance role), never from settings.
The job is uploaded to the results bucket and the execution gets `{"job_uri": …}`, so a job
of any size fits Step Functions' 256 KB input. Jobs are also noted in this machine's job
registry, so `rsbatch status JOB_ID` and the QGIS dock find them again later.

Status reconciles with the execution: once it has ended, a cell still PENDING or RUNNING
did not and will not finish, and is recorded FAILED with the execution's reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..cell_logs import batch_log_stream, cloudwatch_lines, find_cell
from ..contract import Job, Status, task_id_for, task_key
from ..errors import (
    AWS_DENIED_CODES,
    AccessDenied,
    InvalidInput,
    SourceUnavailable,
    aws_error_code,
    require,
)
from ..tasklog import default_sqlite_path, user_data_dir
from ..tasklog.dynamodb import DynamoTaskLog
from ..tasklog.schema import BATCH_JOB_ID, Record
from ..tasklog.sqlite import SqliteTaskLog
from .base import JobStatus, Progress, move, poll, unfinished, units_to_remake

RESULTS_PREFIX = "results"
_ENDED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")


def stack_outputs_path(stack: str) -> Path:
    return Path(user_data_dir()) / "stacks" / f"{stack}.json"


def load_stack_outputs(stack: str, *, region: str | None = None, profile: str | None = None,
                       endpoint_url: str | None = None) -> dict[str, Any]:
    """The stack's outputs: the file `make deploy` wrote, else CloudFormation's answer."""
    path = stack_outputs_path(stack)
    if path.exists():
        return json.loads(path.read_text())
    boto3 = require("boto3", "the aws backend")
    session = boto3.session.Session(profile_name=profile, region_name=region)
    client = session.client("cloudformation", endpoint_url=endpoint_url)
    try:
        stacks = client.describe_stacks(StackName=stack)["Stacks"]
    except Exception as exc:  # botocore raises many kinds; all mean the same here
        raise InvalidInput(
            f"stack '{stack}' not found ({exc}); deploy it with `make deploy STACK={stack}` "
            "or pass --stack/--region") from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    outputs.setdefault("Region", session.region_name)
    return {"StackName": stack, "Profile": profile, "EndpointUrl": endpoint_url, **outputs}


def execution_name(job_id: str, attempt: int) -> str:
    """Step Functions names: 80 characters of letters, digits, '-' and '_'."""
    name = _NAME_BAD.sub("-", job_id)[:72]
    return name if attempt == 0 else f"{name}-r{attempt}"


class AwsBackend:
    """Runs jobs on the deployed stack."""

    name = "aws"

    def __init__(self, *, stack: str | None = "rsbatch", region: str | None = None,
                 profile: str | None = None, endpoint_url: str | None = None,
                 outputs: Mapping[str, Any] | None = None, session: Any = None,
                 registry: SqliteTaskLog | None = None) -> None:
        boto3 = require("boto3", "the aws backend")
        stack = stack or "rsbatch"
        self.outputs = dict(outputs or load_stack_outputs(stack, region=region, profile=profile,
                                                          endpoint_url=endpoint_url))
        self.stack = self.outputs.get("StackName", stack)
        self.region = region or self.outputs.get("Region")
        self.profile = profile or self.outputs.get("Profile")
        self.endpoint_url = endpoint_url or self.outputs.get("EndpointUrl")
        for key in ("StateMachineArn", "TaskLogTable", "ResultsBucket"):
            if not self.outputs.get(key):
                raise InvalidInput(f"the outputs of stack {self.stack} lack {key}; "
                                   "run `make deploy` again")
        self.session = session or boto3.session.Session(profile_name=self.profile,
                                                        region_name=self.region)
        self.task_log = DynamoTaskLog(self.outputs["TaskLogTable"], session=self.session,
                                      endpoint_url=self.endpoint_url)
        self.registry = registry or SqliteTaskLog(default_sqlite_path())

    def _client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_url)

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return fn(**kwargs)
        except NoCredentialsError as exc:
            raise AccessDenied(f"{what}: no AWS credentials found (set a profile in the "
                               "settings, AWS_PROFILE, or run `aws sso login`)") from exc
        except ClientError as exc:
            code = aws_error_code(exc)
            if code in AWS_DENIED_CODES:
                raise AccessDenied(f"{what} was denied ({code}): check the AWS profile and "
                                   "that its credentials have not expired") from exc
            if code in ("ExecutionAlreadyExists", "ExecutionDoesNotExist",
                        "StateMachineDoesNotExist", "NoSuchBucket"):
                raise InvalidInput(f"{what}: {code}") from exc
            raise SourceUnavailable(f"{what} failed: {code} {exc}") from exc
        except BotoCoreError as exc:
            raise SourceUnavailable(f"{what} failed: {exc}") from exc

    def default_output(self) -> str:
        return f"s3://{self.outputs['ResultsBucket']}/{RESULTS_PREFIX}"

    # --- the interface -----------------------------------------------------------------------
    def submit(self, job: Job, *, wait: bool = False,
               progress: Progress | None = None) -> JobStatus:
        local = [c.cell_id for c in job.cells if not c.output.startswith("s3://")]
        if local:
            raise InvalidInput(
                f"on AWS the outputs must go to S3 (e.g. {self.default_output()}); cell(s) "
                f"{', '.join(local[:3])} write to {job.cells[0].output}")
        self.registry.save_job(job, self.name, {
            "stack": self.stack, "region": self.region, "profile": self.profile,
            "executions": []})
        self._start(job, attempt=0)
        return self.wait(job.job_id, progress) if wait else self.status(job.job_id)

    def _start(self, job: Job, attempt: int, resume: bool = False) -> str:
        prefix = str(self.outputs.get("JobsPrefix") or
                     f"s3://{self.outputs['ResultsBucket']}/_rsbatch/jobs/")
        uri = f"{prefix.rstrip('/')}/{job.job_id}/job-{attempt}.json"
        bucket, _, key = uri[len("s3://"):].partition("/")
        self._call("uploading the job", self._client("s3").put_object, Bucket=bucket, Key=key,
                   Body=json.dumps(job.to_dict()).encode(), ContentType="application/json")
        execution_input: dict[str, Any] = {"job_uri": uri}
        if resume:
            execution_input["resume"] = True
        if job.params.get("limits"):  # the job's own time limits (infra/README.md)
            execution_input["limits"] = dict(job.params["limits"])
        response = self._call(
            "starting the state machine", self._client("stepfunctions").start_execution,
            stateMachineArn=self.outputs["StateMachineArn"],
            name=execution_name(job.job_id, attempt), input=json.dumps(execution_input))
        arn = response["executionArn"]
        handle = self._handle(job.job_id)
        self.registry.update_handle(job.job_id,
                                    executions=[*handle.get("executions", []), arn])
        return arn

    def _handle(self, job_id: str) -> dict:
        found = self.registry.load_job(job_id)
        if found is None:
            raise InvalidInput(f"no job {job_id} in this machine's job registry")
        return found[2]

    def _job(self, job_id: str) -> Job:
        found = self.registry.load_job(job_id)
        if found is None:
            raise InvalidInput(f"no job {job_id} in this machine's job registry")
        return found[0]

    def execution(self, job_id: str) -> dict[str, Any] | None:
        """The latest execution of the job, as describe_execution gives it."""
        executions = self._handle(job_id).get("executions") or []
        if not executions:
            return None
        return self._call("reading the execution", self._client("stepfunctions")
                          .describe_execution, executionArn=executions[-1])

    def status(self, job_id: str) -> JobStatus:
        job = self._job(job_id)
        records = {r.cell_id: r for r in self.task_log.job_records(job_id)}
        execution = self.execution(job_id)
        notes = []
        if execution is not None and execution["status"] in _ENDED:
            left = [r for r in records.values() if not r.status.finished]
            missing = [t for t in job.tasks if task_key(t) not in records]
            if left or missing:
                reason = (f"the execution ended ({execution['status']}) before this cell "
                          "finished")
                if execution.get("cause") or execution.get("error"):
                    reason += f": {execution.get('error', '')} {execution.get('cause', '')}"
                self.task_log.end_many(left, Status.FAILED, reason.strip())
                if missing:  # the planner never recorded them (it failed first)
                    self.task_log.register(missing, Status.PENDING)
                    fresh = self.task_log.get_many(task.task_id for task in missing)
                    self.task_log.end_many(fresh.values(), Status.FAILED, reason.strip())
                notes.append(reason.strip())
                records = {r.cell_id: r for r in self.task_log.job_records(job_id)}
        elif execution is not None:
            notes.append(f"execution {execution['status'].lower()}")
        # cells and units by id, as the local backend's task log lists them
        ordered = sorted((records.get(task_key(t)) or Record.for_task(t) for t in job.tasks),
                         key=lambda r: r.cell_id)
        return JobStatus(job_id, tuple(ordered), self.name, tuple(notes))

    def _move(self, task_id: str, status: Status, **kwargs: Any) -> None:
        move(self.task_log, task_id, status, **kwargs)

    def cancel(self, job_id: str) -> JobStatus:
        execution = self.execution(job_id)
        if execution is not None and execution["status"] == "RUNNING":
            self._call("stopping the execution", self._client("stepfunctions").stop_execution,
                       executionArn=execution["executionArn"], error="Cancelled",
                       cause="cancelled by the user")
        self.stop_batch_jobs(job_id)
        self.task_log.end_many(unfinished(self.task_log.job_records(job_id)),
                               Status.CANCELLED, "cancelled by the user")
        return self.status(job_id)

    def cell_log(self, job_id: str, cell_id: str) -> Iterator[str]:
        """The cell's worker log: the CloudWatch stream of its latest Batch job attempt."""
        cell = find_cell(self._job(job_id), cell_id)
        record = self.task_log.get(cell.task_id)
        batch_job_id = (record.extra.get(BATCH_JOB_ID) if record else None)
        if not batch_job_id:
            state = record.status.value if record else "not in the task log"
            raise InvalidInput(f"cell {cell_id} has no AWS Batch job recorded ({state}): it "
                               "has not started yet")
        batch = self._client("batch")
        group, stream = self._call("reading the Batch job", batch_log_stream, batch=batch,
                                   batch_job_id=str(batch_job_id))
        group = group or self.outputs.get("WorkerLogGroup")
        if not group:
            raise InvalidInput(f"the outputs of stack {self.stack} lack WorkerLogGroup; run "
                               "`make deploy` again")
        lines = self._call("reading the log", lambda: list(cloudwatch_lines(
            self._client("logs"), str(group), stream)))
        return iter(lines)

    def stop_batch_jobs(self, job_id: str, reason: str = "cancelled by the user") -> int:
        """Terminate the job's Batch jobs that have not ended, a few at a time.

        Step Functions also stops the Batch job of each running Task when its execution
        stops, but only as its children wind down; this does it now. Throttling is retried
        by botocore's adaptive mode (jittered backoff that slows the client down).
        """
        queue = self.outputs.get("JobQueueArn")
        if not queue:
            return 0
        from concurrent.futures import ThreadPoolExecutor

        from botocore.config import Config

        batch = self.session.client("batch", endpoint_url=self.endpoint_url, config=Config(
            retries={"mode": "adaptive", "max_attempts": 10}, max_pool_connections=16))
        prefix = _NAME_BAD.sub("_", f"{job_id}-")
        ids = [summary["jobId"]
               for page in self._call("listing the Batch jobs", lambda: list(
                   batch.get_paginator("list_jobs").paginate(
                       jobQueue=queue, filters=[{"name": "JOB_NAME",
                                                 "values": [prefix + "*"]}])))
               for summary in page["jobSummaryList"]
               if summary.get("status") not in ("SUCCEEDED", "FAILED")]
        ours = []
        for start in range(0, len(ids), 100):  # names may collide: the tag says whose it is
            described = self._call("reading the Batch jobs", batch.describe_jobs,
                                   jobs=ids[start:start + 100])["jobs"]
            ours += [job["jobId"] for job in described
                     if (job.get("tags") or {}).get("rsbatch:job") == job_id]

        def terminate(batch_job_id: str) -> None:
            self._call("stopping a Batch job", batch.terminate_job, jobId=batch_job_id,
                       reason=reason)

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(terminate, ours))
        return len(ours)

    def resume(self, job_id: str, *, wait: bool = False,
               progress: Progress | None = None) -> JobStatus:
        execution = self.execution(job_id)
        if execution is not None and execution["status"] == "RUNNING":
            raise InvalidInput(f"job {job_id} is still running")
        job = self._job(job_id)
        records = {r.cell_id: r for r in self.task_log.job_records(job_id)}
        again, rerun = [], []
        for task in job.tasks:
            record = records.get(task_key(task))
            if record is not None and record.status is Status.SUCCEEDED:
                continue
            if record is not None and record.status in (Status.FAILED, Status.CANCELLED):
                self._move(record.task_id, Status.PENDING)
                rerun.append(record.cell_id)
            again.append(task)
        # units made without a cell that now runs again are made again after it (as local)
        for unit_id, reason in units_to_remake(job, records.values(), rerun).items():
            self.task_log.remake(task_id_for(job_id, unit_id), reason)
        if again:
            # the whole job, so units can name every input; the plan function leaves out
            # the cells that succeeded ("resume") and the units that are not PENDING
            attempt = len(self._handle(job_id).get("executions") or [])
            self._start(job, attempt, resume=True)
        return self.wait(job_id, progress) if wait else self.status(job_id)

    def wait(self, job_id: str, progress: Progress | None = None, interval: float = 5.0,
             timeout: float | None = None) -> JobStatus:
        return poll(lambda: self.status(job_id), progress, interval, timeout)
