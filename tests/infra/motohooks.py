"""Patches that make moto 5.2.5 run the stack for real, in the test process.

moto is pinned exactly (requirements.txt) because these reach into its internals:
- Step Functions' `batch:submitJob.sync` integration: moto 5.2.5 passes the state's
  PascalCase parameters to botocore unchanged (`'JobName'` error) and reads the answer as if
  it were PascalCase. Converting both ways with botocore's Batch service model is what
  Step Functions itself does.
- moto's docker-free Batch (`batch_simple`) marks every job SUCCEEDED without running it:
  here a job runs the real worker command line (`rsbatch-worker` + the job's command, with
  the job definition's and the overrides' environment) as a subprocess, attempt after
  attempt as the job definition's RetryStrategy says, and the job ends with the worker's
  exit code. A test may ask for a cell's first attempt to lose its Spot instance.
- moto's docker-free Lambda (`awslambda_simple`) echoes its input: here an invocation calls
  the function's handler (infra/handler.py) in-process with the function's environment,
  and an exception becomes a function error the way Lambda's Python runtime reports it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

#: the worker's own command line, as the container's ENTRYPOINT runs it
WORKER = shutil.which("rsbatch-worker", path=str(Path(sys.executable).parent)) or "rsbatch-worker"
SPOT_REASON = "Host EC2 (instance i-0123456789abcdef0) terminated."


@dataclass
class WorkerRun:
    """One attempt of one Batch job, for assertions and for debugging a failing test."""

    job_name: str
    command: list[str]
    environment: dict[str, str]
    exit_code: int | None
    status_reason: str | None = None
    stderr: str = ""


@dataclass
class Hooks:
    """What the patched moto did; tests read it and may steer it."""

    endpoint_url: str
    #: the environment a container starts from (the test's, captured once: the Lambda hook
    #: sets function variables in os.environ while Batch jobs start in other threads)
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    runs: list[WorkerRun] = field(default_factory=list)
    lambda_calls: list[tuple[str, Any]] = field(default_factory=list)
    #: Batch job names whose first attempt fails as a Spot interruption would
    interrupt_first: set[str] = field(default_factory=set)
    #: Batch job names whose every attempt loses its Spot instance
    interrupt_always: set[str] = field(default_factory=set)
    #: Batch job names that wait in RUNNABLE (no capacity) until cancelled, created this
    #: many seconds ago
    hold_runnable: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _lambda_lock: threading.Lock = field(default_factory=threading.Lock)

    def runs_of(self, needle: str) -> list[WorkerRun]:
        return [run for run in self.runs if needle in run.job_name]


# --- Step Functions ↔ Batch: PascalCase parameters and answers --------------------------

def _batch_operation(task: Any, action: str | None) -> Any:
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model("batch")
    names = {xform_name(name): name for name in model.operation_names}
    snake = xform_name(action or task.resource.api_action)
    return model.operation_model(names[snake])


def _normalise_parameters(self: Any, parameters: dict, boto_service_name: str | None = None,
                          service_action_name: str | None = None) -> None:
    self._to_boto_request(parameters, _batch_operation(self, service_action_name).input_shape)


def _normalise_response(self: Any, response: Any, boto_service_name: str | None = None,
                        service_action_name: str | None = None) -> None:
    self._from_boto_response(response, _batch_operation(self, service_action_name).output_shape)


# --- Batch: run the worker -----------------------------------------------------------------

def _key(data: dict, name: str) -> Any:
    """moto keeps job definitions with the first letter of each key lowered; accept both."""
    return data.get(name, data.get(name[:1].upper() + name[1:]))


def _retry_action(strategy: dict, exit_code: int | None, status_reason: str,
                  reason: str) -> str:
    """AWS Batch's EvaluateOnExit: the first matching rule's action; RETRY when none does."""
    for rule in _key(strategy, "evaluateOnExit") or []:
        checks = [("onExitCode", "" if exit_code is None else str(exit_code)),
                  ("onStatusReason", status_reason), ("onReason", reason)]
        if all(fnmatch.fnmatchcase(value, _key(rule, name))
               for name, value in checks if _key(rule, name) is not None):
            return str(_key(rule, "action")).upper()
    return "RETRY"


def _container(job: Any) -> tuple[list[str], dict[str, str]]:
    """The job's command and environment: the definition's, overridden by the submission's."""
    props = job.job_definition.container_properties or {}
    overrides = job.container_overrides or {}
    command = list(overrides.get("command") or _key(props, "command") or [])
    environment = {str(_key(e, "name")): str(_key(e, "value"))
                   for e in (_key(props, "environment") or [])}
    environment.update({str(_key(e, "name")): str(_key(e, "value"))
                        for e in overrides.get("environment") or []})
    return command, environment


def _run_job(hooks: Hooks, job: Any) -> None:
    strategy = job.job_definition.retry_strategy or {}
    attempts = int(_key(strategy, "attempts") or 1)
    command, environment = _container(job)
    exit_code: int | None = None
    status_reason = ""
    for attempt in range(attempts):
        job._start_attempt()
        if job.job_name in hooks.interrupt_always or (
                attempt == 0 and job.job_name in hooks.interrupt_first):
            exit_code, status_reason, stderr = None, SPOT_REASON, ""
        else:
            env = {**hooks.base_env, **environment, "AWS_ENDPOINT_URL": hooks.endpoint_url,
                   "AWS_BATCH_JOB_ID": job.job_id, "AWS_BATCH_JOB_ATTEMPT": str(attempt + 1)}
            done = subprocess.run([WORKER, *command], env=env, capture_output=True, text=True,
                                  timeout=300, check=False)
            exit_code, stderr = done.returncode, done.stderr
            status_reason = "Essential container in task exited"
        with hooks._lock:
            hooks.runs.append(WorkerRun(job.job_name, command, environment, exit_code,
                                        status_reason, stderr[-3000:]))
        _awslogs(hooks, job, stderr)
        job.latest_attempt["container"]["exitCode"] = exit_code
        job.latest_attempt["statusReason"] = status_reason
        if exit_code == 0 or _retry_action(strategy, exit_code, status_reason, "") == "EXIT":
            break
    job.exit_code = exit_code
    job.job_stopped_reason = status_reason if exit_code != 0 else None
    job._mark_stopped(success=exit_code == 0)


def _hold(job: Any, age: float) -> None:
    """Keep `job` RUNNABLE, as Batch does without capacity, until it is cancelled."""
    job.job_created_at = datetime.now() - timedelta(seconds=age)  # noqa: DTZ005 - moto's
    job._transitions = [("RUNNABLE", "RUNNABLE")]  # moto's states would move it on
    job.status = "RUNNABLE"

    def wait_for_cancel() -> None:
        while not job.stop:
            time.sleep(0.05)
        job.job_stopped_reason = job.job_stopped_reason or "cancelled"
        job._mark_stopped(success=False)

    threading.Thread(target=wait_for_cancel, daemon=True).start()


def _awslogs(hooks: Hooks, job: Any, text: str) -> None:
    """What the awslogs driver does: the container's output into the job's log stream."""
    import boto3

    props = job.job_definition.container_properties or {}
    config = _key(props, "logConfiguration") or {}
    group = (_key(config, "options") or {}).get("awslogs-group")
    if not group or not text or not job.log_stream_name:
        return
    logs = boto3.client("logs", endpoint_url=hooks.endpoint_url)
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):  # attempt 2+
        logs.create_log_stream(logGroupName=group, logStreamName=job.log_stream_name)
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName=job.log_stream_name, logEvents=[
        {"timestamp": now, "message": line} for line in text.splitlines() if line.strip()])


def _mark_job_as_finished(hooks: Hooks) -> Any:
    def finish(self: Any, include_start_attempt: bool, job: Any) -> None:
        self.backend._jobs[job.job_id] = job
        if job.job_name in hooks.hold_runnable:
            _hold(job, hooks.hold_runnable[job.job_name])
            return
        job.job_started_at = datetime.now()  # noqa: DTZ005 - moto keeps naive times
        job.log_stream_name = job._stream_name
        _run_job(hooks, job)

    return finish


def _container_details(original: Any) -> Any:
    """moto's job description drops the container's exit code: keep it, as Batch does."""
    def details(self: Any) -> dict[str, Any]:
        result = original(self)
        if self.exit_code is not None:
            result["exitCode"] = self.exit_code
        return result

    return details


# --- Lambda: call the handler ---------------------------------------------------------------

def _invoke(hooks: Hooks) -> Any:
    def invoke(self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any,
               response_headers: Any) -> bytes:
        function = self.get_function(function_name, qualifier)
        module_name, _, attribute = str(function.handler).rpartition(".")
        event = json.loads(body) if body else {}
        variables = {str(k): str(v) for k, v in function.environment_vars.items()}
        with hooks._lambda_lock:  # the function's environment is process-wide here
            hooks.lambda_calls.append((attribute, event))
            saved = {name: os.environ.get(name) for name in variables}
            os.environ.update(variables)
            try:
                handler = getattr(importlib.import_module(module_name), attribute)
                result = handler(event, None)
            except Exception as exc:
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc),
                                   "stackTrace": traceback.format_tb(exc.__traceback__)}
                                  ).encode()
            finally:
                for name, value in saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
        return json.dumps(result).encode()

    return invoke


def install(hooks: Hooks) -> ExitStack:
    """Patch moto; closing the returned stack restores it."""
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.batch.models import Job
    from moto.batch_simple.models import BatchSimpleBackend
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_batch,
    )

    batch_task = state_task_service_batch.StateTaskServiceBatch
    stack = ExitStack()
    stack.enter_context(mock.patch.object(batch_task, "_normalise_parameters",
                                          _normalise_parameters))
    stack.enter_context(mock.patch.object(batch_task, "_normalise_response",
                                          _normalise_response))
    stack.enter_context(mock.patch.object(BatchSimpleBackend, "_mark_job_as_finished",
                                          _mark_job_as_finished(hooks)))
    stack.enter_context(mock.patch.object(Job, "_container_details",
                                          _container_details(Job._container_details)))
    stack.enter_context(mock.patch.object(LambdaSimpleBackend, "invoke", _invoke(hooks)))
    return stack
