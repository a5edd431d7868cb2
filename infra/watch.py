"""Nothing waits forever: the watchdog (every few minutes) and the reconciler (an execution ended).

- `watchdog`, on an EventBridge schedule: a Batch job that has sat in RUNNABLE longer than
  the stack's limit (no Spot capacity, a low vCPU quota) is cancelled with the reason, its
  cell recorded FAILED; an execution older than its job's own time limit is stopped. One
  SNS message says what was done.
- `reconcile`, on EventBridge's "Step Functions Execution Status Change" for ABORTED,
  TIMED_OUT and FAILED: every unfinished cell of the execution's job is ended (CANCELLED
  when a person stopped it, FAILED with the reason otherwise) and the summary goes to SNS,
  because no state of a stopped execution runs to do it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qgis_rsbatch.core.contract import Job, Status
from qgis_rsbatch.core.errors import InvalidInput, TransitionRejected

from .failures import duration as _duration
from .handler import Settings, _read_job, _seed_job_id
from .summary import clip, subject, summarize_job

log = logging.getLogger("rsbatch.infra")

#: the error the watchdog stops an execution with when its job's own limit ran out
JOB_LIMIT_ERROR = "rsbatch.JobTimeLimit"
#: execution statuses after which no state runs again
ENDED_BADLY = ("ABORTED", "TIMED_OUT", "FAILED")
#: the metrics the watchdog publishes each run for the stack's dashboard (template.yaml)
METRIC_NAMESPACE = "rsbatch"
#: cells in flight per AWS Batch state (dimensions Stack, Status): the queue's depth
JOBS_METRIC = "BatchJobs"
#: cells the watchdog cancelled this run (dimension Stack)
CANCELLED_METRIC = "CellsCancelledStuck"
ACTIVE_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
_DESCRIBE_BATCH = 100


@dataclass(frozen=True)
class WatchSettings:
    """The watchdog's and reconciler's configuration (the template sets these variables)."""

    topic_arn: str
    job_queue: str
    state_machine_arn: str
    runnable_limit: int
    stack: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WatchSettings:
        env = os.environ if env is None else env
        return cls(topic_arn=env.get("TOPIC_ARN", ""), job_queue=env.get("JOB_QUEUE", ""),
                   state_machine_arn=env.get("STATE_MACHINE_ARN", ""),
                   runnable_limit=int(env.get("RUNNABLE_LIMIT_SECONDS") or 7200),
                   stack=env.get("STACK_NAME", ""))


def _client(service: str, settings: Settings) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session(region_name=settings.region).client(
        service, config=Config(retries={"mode": "adaptive", "max_attempts": 10}))


def _publish(settings: Settings, topic: str, message: Mapping[str, Any], event: str) -> None:
    if not topic:
        log.warning("no TOPIC_ARN: not reporting %s", event)
        return
    attributes = {"event": {"DataType": "String", "StringValue": event}}
    if message.get("job_id"):
        attributes["job_id"] = {"DataType": "String", "StringValue": str(message["job_id"])}
    _client("sns", settings).publish(
        TopicArn=topic, Subject=str(message.get("subject") or f"rsbatch: {event}")[:100],
        Message=json.dumps(message, default=str), MessageAttributes=attributes)


# --- reconcile an execution that ended without its summary ----------------------------------

def reconcile(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """End the unfinished cells of an execution that stopped, timed out or failed; report."""
    detail = event.get("detail") if isinstance(event, Mapping) else None
    if not isinstance(detail, Mapping) or "executionArn" not in detail:
        raise InvalidInput("reconcile expects an EventBridge 'Step Functions Execution Status "
                           "Change' event")
    status = str(detail.get("status") or "")
    if status not in ENDED_BADLY:
        return {"ignored": status}
    settings, watch = Settings.from_env(), WatchSettings.from_env()
    arn = str(detail["executionArn"])
    error, cause = detail.get("error"), detail.get("cause")
    if error is None and cause is None:  # older events carry neither: ask
        described = _client("stepfunctions", settings).describe_execution(executionArn=arn)
        error, cause = described.get("error"), described.get("cause")
    job_id = _job_id(detail, settings)
    cell_status, reason = _ending(status, str(error or ""), str(cause or ""))
    store = settings.task_log()
    ended = store.end_many(store.job_records(job_id), cell_status, reason)
    summary = summarize_job(store, job_id, execution=arn, event="job.ended")
    summary.update(execution_status=status, reason=reason, ended_now=len(ended))
    summary["subject"] = subject(job_id, summary["succeeded"], summary["failed"],
                                 summary["total"], f" ({status.lower().replace('_', ' ')})")
    _publish(settings, watch.topic_arn, summary, "job.ended")
    log.info("execution %s %s: %d cell(s) ended %s", arn, status, len(ended), cell_status)
    return summary


def _ending(status: str, error: str, cause: str) -> tuple[Status, str]:
    """What an unfinished cell becomes, and why, when its execution ended this way."""
    told = ": ".join(part for part in (error, cause) if part)
    if status == "ABORTED" and error != JOB_LIMIT_ERROR:
        return Status.CANCELLED, clip("the execution was stopped"
                                      + (f" ({told})" if told else ""))
    if status in {"ABORTED", "TIMED_OUT"}:
        return Status.FAILED, clip("the job's time limit ran out before this cell finished"
                                   + (f" ({cause})" if cause else ""))
    return Status.FAILED, clip("the execution failed before this cell finished"
                               + (f": {told}" if told else ""))


def _job_id(detail: Mapping[str, Any], settings: Settings) -> str:
    """The job id the planner gave the execution, from its input (as plan() reads it)."""
    try:
        data = json.loads(detail.get("input") or "{}")
    except ValueError as exc:
        raise InvalidInput(f"execution input is not JSON: {exc}") from exc
    if isinstance(data.get("job"), Mapping) and data["job"].get("job_id"):
        return str(data["job"]["job_id"])
    if data.get("job_uri"):
        job = _read_job(str(data["job_uri"]), settings)
        return Job.from_dict(job).job_id if "cells" in job else str(job["job_id"])
    seed = data.get("detail") if isinstance(data.get("detail"), Mapping) else {}
    return str(data.get("job_id") or seed.get("job_id") or
               _seed_job_id(str(detail.get("name") or "")))


# --- the watchdog -------------------------------------------------------------------------

def watchdog(event: Mapping[str, Any] | None = None, context: Any = None) -> dict[str, Any]:
    """Cancel cells stuck in RUNNABLE past the limit; stop jobs past their own time limit."""
    settings, watch = Settings.from_env(), WatchSettings.from_env()
    if not watch.job_queue:
        raise InvalidInput("the watchdog has no JOB_QUEUE: the stack is misconfigured")
    batch = _client("batch", settings)
    now_ms = int(time.time() * 1000)
    in_flight = {state: [job for page in batch.get_paginator("list_jobs").paginate(
                     jobQueue=watch.job_queue, jobStatus=state)
                         for job in page["jobSummaryList"]] for state in ACTIVE_STATES}
    stuck = [job for job in in_flight["RUNNABLE"]
             if now_ms - int(job.get("createdAt") or now_ms) >= watch.runnable_limit * 1000]
    cancelled = []
    if stuck:
        reason = capacity_reason(batch, watch, settings.region)
        store = settings.task_log()
        for start in range(0, len(stuck), _DESCRIBE_BATCH):
            ids = [job["jobId"] for job in stuck[start:start + _DESCRIBE_BATCH]]
            for job in batch.describe_jobs(jobs=ids)["jobs"]:
                batch.cancel_job(jobId=job["jobId"], reason=reason[:1000])
                cancelled.append(_record_stuck(store, job, reason))
    stopped = _stop_overdue(settings, watch)
    counts = {state: len(jobs) for state, jobs in in_flight.items()}
    counts["RUNNABLE"] -= len(cancelled)
    _publish_metrics(settings, watch, counts, len(cancelled))
    result = {"event": "cells.stuck", "cancelled": cancelled, "stopped": stopped,
              "runnable_limit_seconds": watch.runnable_limit}
    if cancelled or stopped:
        result["subject"] = (f"rsbatch: {len(cancelled)} cell(s) cancelled, {len(stopped)} "
                             "job(s) stopped by the watchdog")
        result["reason"] = reason if cancelled else ""
        _publish(settings, watch.topic_arn, result, "cells.stuck")
    return result


def _publish_metrics(settings: Settings, watch: WatchSettings, counts: Mapping[str, int],
                     cancelled: int) -> None:
    """The dashboard's queue depth and the watchdog's cancellations, once per run."""
    if not watch.stack:
        return
    stack = {"Name": "Stack", "Value": watch.stack}
    data = [{"MetricName": JOBS_METRIC, "Dimensions": [stack, {"Name": "Status", "Value": s}],
             "Value": float(n), "Unit": "Count"} for s, n in counts.items()]
    data.append({"MetricName": CANCELLED_METRIC, "Dimensions": [stack],
                 "Value": float(cancelled), "Unit": "Count"})
    _client("cloudwatch", settings).put_metric_data(Namespace=METRIC_NAMESPACE,
                                                    MetricData=data)


def capacity_reason(batch: Any, watch: WatchSettings, region: str | None) -> str:
    """Why jobs wait: the limit, the region, each compute environment's state and vCPUs."""
    waited = _duration(watch.runnable_limit)
    parts = []
    try:
        queues = batch.describe_job_queues(jobQueues=[watch.job_queue])["jobQueues"]
        order = [entry["computeEnvironment"] for queue in queues
                 for entry in queue.get("computeEnvironmentOrder", [])]
        environments = batch.describe_compute_environments(computeEnvironments=order)[
            "computeEnvironments"] if order else []
    except Exception as exc:  # the reason is still worth giving without this
        log.warning("cannot describe the compute environments: %s", exc)
        environments = []
    kinds = set()
    for environment in environments:
        resources = environment.get("computeResources") or {}
        kinds.add("Spot" if resources.get("type") in ("SPOT", "FARGATE_SPOT") else "On-Demand")
        parts.append(f"{environment.get('computeEnvironmentName')} "
                     f"{environment.get('state', '?')}/{environment.get('status', '?')}, "
                     f"{resources.get('desiredvCpus', '?')} of {resources.get('maxvCpus', '?')} "
                     "vCPUs running")
    kind = " or ".join(sorted(kinds, reverse=True)) or "compute"
    text = f"no {kind} capacity for {waited} in {region or 'this region'}"
    if parts:
        text += f" ({'; '.join(parts)})"
    return text + ": the job waited in RUNNABLE and was cancelled by the watchdog"


def _record_stuck(store: Any, job: Mapping[str, Any], reason: str) -> dict[str, Any]:
    tags = job.get("tags") or {}
    job_id, cell_id = tags.get("rsbatch:job"), tags.get("rsbatch:cell")
    task_id = f"{job_id}#{cell_id}" if job_id and cell_id else None
    entry = {"batch_job_id": job["jobId"], "job_name": job.get("jobName"), "task_id": task_id}
    if task_id is None:  # not a cell of ours (Batch tag values cannot hold the '#')
        return entry
    try:
        entry["status"] = store.transition(task_id, Status.FAILED, error=reason).status.value
    except TransitionRejected as exc:  # finished meanwhile, or never recorded
        entry["status"] = str(exc)
    return entry


def _stop_overdue(settings: Settings, watch: WatchSettings) -> list[dict[str, Any]]:
    """Stop RUNNING executions older than the job limit their input asked for."""
    if not watch.state_machine_arn:
        return []
    sfn = _client("stepfunctions", settings)
    stopped = []
    now = time.time()
    for page in sfn.get_paginator("list_executions").paginate(
            stateMachineArn=watch.state_machine_arn, statusFilter="RUNNING"):
        for execution in page["executions"]:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            try:
                limits = json.loads(described.get("input") or "{}").get("limits") or {}
                limit = int(limits.get("job_seconds") or 0)
            except (ValueError, AttributeError, TypeError):
                continue
            started = described["startDate"].timestamp()
            if limit and now - started >= limit:
                cause = f"the job's time limit of {_duration(limit)} ran out"
                sfn.stop_execution(executionArn=execution["executionArn"],
                                   error=JOB_LIMIT_ERROR, cause=cause)
                stopped.append({"execution": execution["executionArn"], "cause": cause})
    return stopped
