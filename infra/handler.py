"""The stack's Lambda functions: plan a job, advance it to its next level of reduce units,
record a failed cell or unit, summarize a finished job.

Each is a thin adapter between Step Functions and core: the cell contract validates the
job, core.seed turns the seed's execution input into our ids, and the task log (DynamoDB
through core.tasklog) is written with its conditional transitions, so a retried or
duplicated step never moves a record backwards. Configuration comes from the function's
environment (set by infra/template.yaml); boto3 clients are made per call.

Execution input (infra/README.md has the full contract):
    {"job": {<Job.to_dict()>}}                       a small job, inline
    {"job_uri": "s3://<results bucket>/_rsbatch/…"}   any job, as JSON in the results bucket
    {"detail": {"cells": [{"files", "date", "output_bucket", "region_name"}, …]}}   the seed's
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qgis_rsbatch.core.contract import Cell, Job, ReduceUnit, Status, new_job_id
from qgis_rsbatch.core.errors import (
    InvalidInput,
    SourceUnavailable,
    TransitionRejected,
)
from qgis_rsbatch.core.seed import seed_cell
from qgis_rsbatch.core.tasklog.dynamodb import DynamoTaskLog
from qgis_rsbatch.core.tasklog.schema import TABLE_NAME

from . import units as stages
from .failures import describe_failure
from .summary import summarize_job
from .units import task_item

log = logging.getLogger("rsbatch.infra")
log.setLevel(logging.INFO)

#: where the planner keeps a job's working files in the results bucket
WORK_PREFIX = "_rsbatch/jobs"
#: the template's defaults (CellTimeLimitSeconds, JobTimeLimitSeconds, PlanMaxCells)
DEFAULT_CELL_TIME_LIMIT = 6 * 3600
DEFAULT_JOB_TIME_LIMIT = 7 * 86400
DEFAULT_MAX_CELLS = 30_000
_JOB_ID_BAD = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Settings:
    """The function's configuration, from the environment the template gives it."""

    table: str
    bucket: str
    region: str | None
    distributed_threshold: int
    #: days the task log keeps a job's records (DynamoDB TTL); 0 keeps them for ever
    retention_days: int = 0
    #: seconds a cell may take from submission to its end, queue and run (a job may ask less)
    cell_time_limit: int = DEFAULT_CELL_TIME_LIMIT
    #: seconds a whole job may take: the state machine's TimeoutSeconds (a job may ask less)
    job_time_limit: int = DEFAULT_JOB_TIME_LIMIT
    #: the most cells one planning call takes on (its time and memory; bench/results/plan.md)
    max_cells: int = DEFAULT_MAX_CELLS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(table=env.get("TASK_LOG_TABLE") or TABLE_NAME,
                   bucket=env.get("RESULTS_BUCKET", ""),
                   region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
                   distributed_threshold=int(env.get("DISTRIBUTED_THRESHOLD") or 40),
                   retention_days=int(env.get("TASK_LOG_RETENTION_DAYS") or 0),
                   cell_time_limit=int(env.get("CELL_TIME_LIMIT") or DEFAULT_CELL_TIME_LIMIT),
                   job_time_limit=int(env.get("JOB_TIME_LIMIT") or DEFAULT_JOB_TIME_LIMIT),
                   max_cells=int(env.get("PLAN_MAX_CELLS") or DEFAULT_MAX_CELLS))

    def expires_at(self) -> int | None:
        """The TTL of records written now, or None when they are kept."""
        if self.retention_days <= 0:
            return None
        return int(time.time()) + self.retention_days * 86400

    @property
    def task_log_uri(self) -> str:
        return f"dynamodb://{self.table}?region={self.region or ''}"

    def task_log(self) -> DynamoTaskLog:
        return DynamoTaskLog(self.table, region=self.region)


def _s3(settings: Settings) -> Any:
    import boto3

    return boto3.session.Session(region_name=settings.region).client("s3")


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


# --- plan ---------------------------------------------------------------------------------

def plan(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Validate the execution input, write PENDING records, and hand the Map its items.

    `event` is what the state machine passes: {"input": <the execution input>,
    "execution_name": <its name>}; the name is the seed's job id when its input names none,
    so a retried planning step reuses the same id. Small jobs come back with their items
    inline; large ones (more cells than the threshold, or items too large for the state
    payload) are written to S3 for a Distributed Map's ItemReader.
    """
    settings = Settings.from_env()
    if not settings.bucket:
        raise InvalidInput("the planner has no RESULTS_BUCKET: the stack is misconfigured")
    if not isinstance(event, Mapping) or "input" not in event:
        raise InvalidInput('the planner expects {"input": <execution input>, "execution_name"}')
    limits = job_limits(event["input"], settings)
    job_id, cells, items, units = _read_input(event["input"], settings,
                                              str(event.get("execution_name") or ""))
    if not cells:
        raise InvalidInput(f"job {job_id} has no cells")
    if len(cells) > settings.max_cells:
        raise InvalidInput(
            f"job {job_id} has {len(cells)} cells; this stack plans at most "
            f"{settings.max_cells} per job (the plan function's time and memory): split it "
            "into smaller jobs or raise the stack's PlanMaxCells with a larger function")
    for task in (*cells, *units):
        _check_output(task, settings.bucket)
    created = _register([*cells, *units], settings)
    work = f"{WORK_PREFIX}/{job_id}"
    s3 = _s3(settings)
    if items is None:  # cells of our contract: `rsbatch-worker run <cell JSON or s3:// URI>`
        if _resuming(event["input"]):  # a resumed job: what succeeded is not submitted again
            done = settings.task_log().get_many(cell.task_id for cell in cells)
            cells_to_run = [c for c in cells if getattr(done.get(c.task_id), "status", None)
                            is not Status.SUCCEEDED]
        else:
            cells_to_run = cells
        items = [stages.worker_item(cell, settings.task_log_uri, s3, settings.bucket, work)
                 for cell in cells_to_run]
    for item in items:
        item["cell_timeout"] = limits["cell_seconds"]
    levels = stages.write_levels(units, s3=s3, bucket=settings.bucket, work=work)
    result: dict[str, Any] = {
        "job_id": job_id, "count": len(cells) + len(units), "created": created,
        "outputs": sorted({f"{cell.output}/{job_id}/" for cell in cells}),
        "work_bucket": settings.bucket, "work_prefix": f"{work}/", "limits": limits,
        "level": 0, "levels": levels,
        **stages.stage(items, s3=s3, bucket=settings.bucket, key=f"{work}/items.json",
                       threshold=settings.distributed_threshold),
    }
    log.info("job %s: %d cells and %d units (%d levels), %d new PENDING records, %s map",
             job_id, len(cells), len(units), levels, created, result["mode"].lower())
    return result


def _resuming(event: Any) -> bool:
    return isinstance(event, Mapping) and event.get("resume") is True


def advance(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """After a stage's Map: the plan with the next level of reduce units to run (mosaics,
    then the composites reading them), or `done` (infra/units.py)."""
    settings = Settings.from_env()
    plan_ = event.get("plan") if isinstance(event, Mapping) else None
    if not isinstance(plan_, Mapping) or not plan_.get("job_id"):
        raise InvalidInput('advance expects {"plan": <the plan function\'s result>}')
    return stages.next_stage(plan_, store=settings.task_log(), s3=_s3(settings),
                             task_log_uri=settings.task_log_uri,
                             threshold=settings.distributed_threshold)


def job_limits(event: Any, settings: Settings) -> dict[str, int]:
    """The job's time limits: the stack's, or shorter ones from the input's "limits".

    {"limits": {"cell_seconds": …, "job_seconds": …}}: a cell's covers its time in the
    Batch queue and its run (the Task's TimeoutSeconds); the job's is enforced by the
    state machine's TimeoutSeconds (the stack's) and by the watchdog (a shorter one).
    """
    asked = event.get("limits") if isinstance(event, Mapping) else None
    if asked is None:
        asked = {}
    if not isinstance(asked, Mapping):
        raise InvalidInput('"limits" must be {"cell_seconds": …, "job_seconds": …}')
    unknown = sorted(set(asked) - {"cell_seconds", "job_seconds"})
    if unknown:
        raise InvalidInput(f'"limits" has unknown key(s) {", ".join(unknown)}; '
                           'use cell_seconds and job_seconds')
    limits = {}
    for key, stack_value, name in (("cell_seconds", settings.cell_time_limit,
                                    "CellTimeLimitSeconds"),
                                   ("job_seconds", settings.job_time_limit,
                                    "JobTimeLimitSeconds")):
        value = asked.get(key, stack_value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInput(f"limits.{key} must be a positive whole number of seconds; "
                               f"got {value!r}")
        if value > stack_value:
            raise InvalidInput(f"limits.{key} {value} exceeds the stack's {name} "
                               f"({stack_value}); ask for less or deploy with a larger {name}")
        limits[key] = value
    return limits


def _read_input(event: Mapping[str, Any], settings: Settings, execution_name: str = ""
                ) -> tuple[str, list[Cell], list[dict[str, Any]] | None, list[ReduceUnit]]:
    """(job id, cells, Map items or None, reduce units) from any of the three execution
    inputs.

    The seed's cells come with their items (the worker's env-var mode); ours get theirs
    in plan(), once the PENDING records are written.
    """
    if not isinstance(event, Mapping):
        raise InvalidInput("the execution input must be a JSON object")
    if isinstance(event.get("detail"), Mapping) and "cells" in event["detail"]:
        return (*_seed_items(event, settings, execution_name), [])
    if "job" in event:
        job = Job.from_dict(event["job"])
    elif "job_uri" in event:
        job = Job.from_dict(_read_job(str(event["job_uri"]), settings))
    else:
        raise InvalidInput(
            'the execution input must be {"job": {…}}, {"job_uri": "s3://…/job.json"} or the '
            'seed\'s {"detail": {"cells": […]}}; got keys ' + ", ".join(sorted(event)))
    return job.job_id, list(job.cells), None, list(job.units)


def _read_job(uri: str, settings: Settings) -> Any:
    prefix = f"s3://{settings.bucket}/{WORK_PREFIX}/"
    if not uri.startswith(prefix):
        raise InvalidInput(f"job_uri {uri} must be under {prefix} (the stack's results bucket)")
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = _split_s3(uri)
    try:
        body = _s3(settings).get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404"):
            raise InvalidInput(f"job_uri {uri} does not exist") from exc
        raise SourceUnavailable(f"cannot read job_uri {uri}: {code or exc}") from exc
    except BotoCoreError as exc:
        raise SourceUnavailable(f"cannot read job_uri {uri}: {exc}") from exc
    try:
        return json.loads(body)
    except ValueError as exc:
        raise InvalidInput(f"job_uri {uri} is not JSON: {exc}") from exc


def _seed_job_id(execution_name: str) -> str:
    """A job id (core.contract's rules) from an execution name, or a new one."""
    text = _JOB_ID_BAD.sub("-", execution_name)[:80].strip("-_.")
    return text if text and text[0].isalnum() else new_job_id()


def _seed_items(event: Mapping[str, Any], settings: Settings, execution_name: str = ""
                ) -> tuple[str, list[Cell], list[dict[str, Any]]]:
    """The seed's cells: one job id for the execution, the worker in its env-var mode."""
    detail = event["detail"]
    entries = detail.get("cells")
    if not isinstance(entries, list):
        raise InvalidInput('the seed input\'s "detail.cells" must be a list')
    job_id = str(event.get("job_id") or detail.get("job_id") or _seed_job_id(execution_name))
    cells, items = [], []
    for index, raw in enumerate(entries):
        if not isinstance(raw, Mapping):
            raise InvalidInput(f"seed cell {index} must be an object")
        entry = {key: str(value) for key, value in raw.items() if value is not None}
        entry["job_id"] = job_id
        entry.setdefault("region_name", settings.region or "")
        try:
            cell = seed_cell(entry)
        except InvalidInput as exc:
            raise InvalidInput(f"seed cell {index}: {exc}") from exc
        environment = [{"Name": name, "Value": entry[name]}
                       for name in ("files", "date", "output_bucket", "region_name", "job_id")
                       if entry.get(name)]
        cells.append(cell)
        items.append(task_item(job_id, cell, ["--task-log", settings.task_log_uri],
                               environment))
    dupes = sorted(i for i, n in Counter(cell.cell_id for cell in cells).items() if n > 1)
    if dupes:
        raise InvalidInput(f"seed input has the same tile-date twice: {', '.join(dupes)}")
    return job_id, cells, items


def _check_output(task: Cell | ReduceUnit, bucket: str) -> None:
    """Workers may only write to the stack's bucket: say so now, not in 10,000 failures."""
    root = f"s3://{bucket}"
    if task.output != root and not task.output.startswith(root + "/"):
        name = f"unit {task.unit_id}" if isinstance(task, ReduceUnit) else f"cell {task.cell_id}"
        raise InvalidInput(
            f"{name}: output {task.output} is outside this stack's results "
            f"bucket; use {root}/<prefix>")


def _register(cells: list[Cell | ReduceUnit], settings: Settings) -> int:
    """PENDING records for every cell and unit (conditional: existing ones are left alone)."""
    return settings.task_log().register(cells, expires_at=settings.expires_at())


# --- record a failed cell -----------------------------------------------------------------

def record_failure(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Mark a cell FAILED after its Batch job failed, unless the record is already final.

    The worker records its own failures with a precise reason (bad input, missing band);
    this catches what it could not: a container that never started, was killed for memory,
    timed out, or lost its Spot instance once too often. Returns what the failure message
    says: the record's status and the reason a person can act on.
    """
    settings = Settings.from_env()
    task_id = str(event.get("task_id") or "")
    if not task_id:
        raise InvalidInput('record_failure expects {"task_id": …, "error": {"Error", "Cause"}}')
    reason = describe_failure(event.get("error") or {}, limit=event.get("limit"))
    store = settings.task_log()
    try:
        record = store.transition(task_id, Status.FAILED, error=reason)
        recorded_by = "state machine"
    except TransitionRejected as exc:
        record = store.get(task_id)
        if record is None:
            log.warning("no task-log record for %s: %s", task_id, exc)
            return {"status": "UNKNOWN", "error": reason, "recorded_by": "nobody",
                    "task_id": task_id}
        recorded_by = "worker" if record.status is Status.FAILED else "nobody"
    return {"status": record.status.value, "error": record.error or reason,
            "recorded_by": recorded_by, "task_id": task_id, "attempts": record.attempts}


# --- summarize a finished job -------------------------------------------------------------

def summarize(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The completion message: counts per status, failed cells with reasons, output prefixes.

    Counts come from the task log, the one authority on cell status, read by a projected
    Query on the job index (infra/summary.py), so a 10,000-cell job takes seconds.
    """
    settings = Settings.from_env()
    job_id = str(event.get("job_id") or "")
    if not job_id:
        raise InvalidInput("summarize needs the job_id")
    return summarize_job(settings.task_log(), job_id, planned=int(event.get("count") or 0),
                         outputs=event.get("outputs") or [], execution=event.get("execution"))
