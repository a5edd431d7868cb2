"""The stack's Lambda functions: plan a job, record a failed cell, summarize a finished job.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from qgis_rsbatch.core.contract import Cell, Job, Status, new_job_id
from qgis_rsbatch.core.errors import (
    InvalidInput,
    RsbatchError,
    SourceUnavailable,
    TransitionRejected,
)
from qgis_rsbatch.core.seed import seed_cell
from qgis_rsbatch.core.tasklog.dynamodb import DynamoTaskLog
from qgis_rsbatch.core.tasklog.schema import TABLE_NAME, Record

log = logging.getLogger("rsbatch.infra")
log.setLevel(logging.INFO)

#: where the planner keeps a job's working files in the results bucket
WORK_PREFIX = "_rsbatch/jobs"
#: a cell whose JSON is larger than this goes to the worker as an s3:// URI, not inline
#: (AWS Batch caps a SubmitJob request at 30 KiB; this leaves room for the rest)
INLINE_CELL_BYTES = 8 * 1024
#: an inline Map's items must fit in the 256 KiB state payload with room to spare
INLINE_PAYLOAD_BYTES = 160 * 1024
#: how many failed cells a completion message lists
FAILED_LISTED = 50
_MESSAGE_CHARS = 2000
_JOB_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")
_JOB_ID_BAD = re.compile(r"[^A-Za-z0-9_.-]")
#: what the worker's exit codes mean (worker/cli.py), for failure messages
EXIT_MEANINGS = {
    1: "an error a retry may fix; the retries were used up",
    2: "bad input: retrying cannot help",
    3: "the cell was cancelled",
    137: "killed: out of memory (raise the job's memory) or stopped",
    139: "crashed (segmentation fault)",
}


@dataclass(frozen=True)
class Settings:
    """The function's configuration, from the environment the template gives it."""

    table: str
    bucket: str
    region: str | None
    distributed_threshold: int
    #: days the task log keeps a job's records (DynamoDB TTL); 0 keeps them for ever
    retention_days: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(table=env.get("TASK_LOG_TABLE") or TABLE_NAME,
                   bucket=env.get("RESULTS_BUCKET", ""),
                   region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
                   distributed_threshold=int(env.get("DISTRIBUTED_THRESHOLD") or 40),
                   retention_days=int(env.get("TASK_LOG_RETENTION_DAYS") or 0))

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
    job_id, cells, items = _read_input(event["input"], settings,
                                       str(event.get("execution_name") or ""))
    if not cells:
        raise InvalidInput(f"job {job_id} has no cells")
    for cell in cells:
        _check_output(cell, settings.bucket)
    created = _register(cells, settings)
    work = f"{WORK_PREFIX}/{job_id}"
    s3 = _s3(settings)
    if items is None:  # cells of our contract: `rsbatch-worker run <cell JSON or s3:// URI>`
        items = []
        for cell in cells:
            text = json.dumps(cell.to_dict(), separators=(",", ":"))
            if len(text.encode()) > INLINE_CELL_BYTES:  # a large AOI: the worker reads it
                key = f"{work}/cells/{cell.cell_id}.json"
                s3.put_object(Bucket=settings.bucket, Key=key, Body=text.encode(),
                              ContentType="application/json")
                text = f"s3://{settings.bucket}/{key}"
            items.append(_item(job_id, cell, ["--task-log", settings.task_log_uri, "run", text],
                               []))
    payload = json.dumps(items, separators=(",", ":"))
    distributed = len(items) > settings.distributed_threshold or \
        len(payload) > INLINE_PAYLOAD_BYTES
    result: dict[str, Any] = {
        "job_id": job_id, "count": len(items), "created": created,
        "mode": "DISTRIBUTED" if distributed else "INLINE",
        "outputs": sorted({f"{cell.output}/{job_id}/" for cell in cells}),
        "work_bucket": settings.bucket, "work_prefix": f"{work}/",
        "items_key": f"{work}/items.json", "items": [],
    }
    if distributed:
        s3.put_object(Bucket=settings.bucket, Key=result["items_key"], Body=payload.encode(),
                      ContentType="application/json")
    else:
        result["items"] = items
    log.info("job %s: %d cells, %d new PENDING records, %s map", job_id, len(items), created,
             result["mode"].lower())
    return result


def _read_input(event: Mapping[str, Any], settings: Settings, execution_name: str = ""
                ) -> tuple[str, list[Cell], list[dict[str, Any]] | None]:
    """(job id, cells, Map items or None) from any of the three execution inputs.

    The seed's cells come with their items (the worker's env-var mode); ours get theirs
    in plan(), once the PENDING records are written.
    """
    if not isinstance(event, Mapping):
        raise InvalidInput("the execution input must be a JSON object")
    if isinstance(event.get("detail"), Mapping) and "cells" in event["detail"]:
        return _seed_items(event, settings, execution_name)
    if "job" in event:
        job = Job.from_dict(event["job"])
    elif "job_uri" in event:
        job = Job.from_dict(_read_job(str(event["job_uri"]), settings))
    else:
        raise InvalidInput(
            'the execution input must be {"job": {…}}, {"job_uri": "s3://…/job.json"} or the '
            'seed\'s {"detail": {"cells": […]}}; got keys ' + ", ".join(sorted(event)))
    return job.job_id, list(job.cells), None


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


def _job_name(job_id: str, cell_id: str) -> str:
    """An AWS Batch job name: letters, digits, '-' and '_', at most 128 characters."""
    return _JOB_NAME_BAD.sub("_", f"{job_id}-{cell_id}")[:128]


def _item(job_id: str, cell: Cell, command: list[str],
          environment: list[dict[str, str]]) -> dict[str, Any]:
    return {"task_id": cell.task_id, "job_id": job_id, "cell_id": cell.cell_id,
            "job_name": _job_name(job_id, cell.cell_id), "command": command,
            "environment": environment}


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
        items.append(_item(job_id, cell, ["--task-log", settings.task_log_uri], environment))
    ids = [cell.cell_id for cell in cells]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise InvalidInput(f"seed input has the same tile-date twice: {', '.join(dupes)}")
    return job_id, cells, items


def _check_output(cell: Cell, bucket: str) -> None:
    """Workers may only write to the stack's bucket: say so now, not in 10,000 failures."""
    root = f"s3://{bucket}"
    if cell.output != root and not cell.output.startswith(root + "/"):
        raise InvalidInput(
            f"cell {cell.cell_id}: output {cell.output} is outside this stack's results "
            f"bucket; use {root}/<prefix>")


def _register(cells: list[Cell], settings: Settings) -> int:
    """PENDING records for every cell (conditional: existing records are left alone)."""
    expires = settings.expires_at()
    if len(cells) <= 25:
        return settings.task_log().register(cells, expires_at=expires)
    # a few writers: every record of a job shares one JobId, so the index takes them all in
    # one partition (about 1,000 writes a second); four threads stay below that
    chunks = [cells[i::4] for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:  # one store (session) per thread
        return sum(pool.map(lambda chunk: settings.task_log().register(chunk, expires_at=expires),
                            chunks))


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
    reason = describe_failure(event.get("error") or {})
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


def describe_failure(error: Mapping[str, Any]) -> str:
    """A one-paragraph reason from a Step Functions error (Batch job JSON or plain text)."""
    name = str(error.get("Error") or "States.TaskFailed")
    cause = str(error.get("Cause") or "")
    try:
        job = json.loads(cause)
    except ValueError:
        job = None
    if not isinstance(job, dict):
        return _clip(f"{name}: {cause}" if cause else name)
    get = _either(job)
    container = get("Container") or {}
    attempts = get("Attempts") or []
    last = attempts[-1] if attempts else {}
    exit_code = _either(container)("ExitCode")
    if exit_code is None and isinstance(last, dict):
        exit_code = _either(_either(last)("Container") or {})("ExitCode")
    parts = [f"AWS Batch job {get('JobId') or '?'} {get('Status') or 'FAILED'}"]
    status_reason = get("StatusReason") or _either(last)("StatusReason")
    if status_reason:
        parts.append(str(status_reason).rstrip("."))
    container_reason = _either(container)("Reason")
    if container_reason:
        parts.append(str(container_reason).rstrip("."))
    if exit_code is not None:
        meaning = EXIT_MEANINGS.get(int(exit_code), "see the job's log")
        parts.append(f"container exit code {exit_code} ({meaning})")
    if attempts:
        parts.append(f"{len(attempts)} attempt(s)")
    stream = _either(container)("LogStreamName")
    if stream:
        parts.append(f"log stream {stream}")
    return _clip("; ".join(parts))


def _either(data: Any) -> Any:
    """Read a key as Step Functions spells it (PascalCase) or as the Batch API does."""
    def get(key: str) -> Any:
        if not isinstance(data, Mapping):
            return None
        if key in data:
            return data[key]
        return data.get(key[:1].lower() + key[1:])

    return get


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS - 1] + "…"


# --- summarize a finished job -------------------------------------------------------------

def summarize(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The completion message: counts per status, failed cells with reasons, output prefixes.

    Counts come from the task log, the one authority on cell status. Its JobId index is
    eventually consistent, so records it shows unfinished are read again consistently.
    """
    settings = Settings.from_env()
    job_id = str(event.get("job_id") or "")
    if not job_id:
        raise InvalidInput("summarize needs the job_id")
    store = settings.task_log()
    records = store.job_records(job_id)
    final = [_fresh(store, record) for record in records]
    counts = Counter(record.status.value for record in final)
    failed = [record for record in final if record.status is Status.FAILED]
    planned = int(event.get("count") or len(final))
    succeeded, failures = counts.get("SUCCEEDED", 0), counts.get("FAILED", 0)
    summary = {
        "event": "job.completed", "job_id": job_id, "total": planned,
        "succeeded": succeeded, "failed": failures,
        "cancelled": counts.get("CANCELLED", 0),
        "unfinished": counts.get("PENDING", 0) + counts.get("RUNNING", 0),
        "missing": max(0, planned - len(final)),
        "counts": dict(sorted(counts.items())),
        "outputs": list(event.get("outputs") or []),
        "failed_cells": [{"cell_id": record.cell_id, "error": _clip(record.error or "")[:500]}
                         for record in failed[:FAILED_LISTED]],
        "execution": event.get("execution"),
    }
    summary["subject"] = _subject(job_id, succeeded, failures, planned)
    return summary


def _fresh(store: DynamoTaskLog, record: Record) -> Record:
    if record.status.finished:
        return record
    try:
        return store.get(record.task_id) or record
    except RsbatchError:
        return record


def _subject(job_id: str, succeeded: int, failed: int, total: int) -> str:
    """An SNS subject: at most 100 printable ASCII characters."""
    tail = f": {succeeded}/{total} succeeded, {failed} failed"
    room = 100 - len("rsbatch ") - len(tail)
    name = job_id if len(job_id) <= room else job_id[:room - 3] + "..."
    return f"rsbatch {name}{tail}"
