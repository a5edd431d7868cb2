"""The state machine's stages: the Map's items for the cells, then for each level of reduce
units (mosaics, then the composites that read them), one level at a time.

The job's Map runs once per stage. The plan function hands it the cells; after each Map
the `advance` function (infra.handler.advance) reads the next level's units from the job's
work folder in S3, keeps the ones still PENDING, records FAILED those whose inputs can no
longer end (cancelled, never recorded: the local backend's rule, core.contract), and hands
the Map their items: inline when small, else as an S3 object for the Distributed Map's
ItemReader, so a 10,000-cell job's units never ride in the 256 KiB state payload either.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from qgis_rsbatch.core.contract import (
    INPUT_FINAL,
    Cell,
    ReduceUnit,
    Status,
    inputs_not_ended,
    task_id_for,
    task_key,
    unit_levels,
)
from qgis_rsbatch.core.errors import InvalidInput, TransitionRejected

#: a cell or unit whose JSON is larger than this goes to the worker as an s3:// URI, not
#: inline (AWS Batch caps a SubmitJob request at 30 KiB; this leaves room for the rest)
INLINE_TASK_BYTES = 8 * 1024
#: an inline Map's items must fit in the 256 KiB state payload with room to spare
INLINE_PAYLOAD_BYTES = 160 * 1024
_JOB_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")


def job_name(job_id: str, task_key: str) -> str:
    """An AWS Batch job name: letters, digits, '-' and '_', at most 128 characters (the
    cancel path finds a job's Batch jobs by the '<job_id>-' prefix)."""
    return _JOB_NAME_BAD.sub("_", f"{job_id}-{task_key}")[:128]


def task_item(job_id: str, task: Cell | ReduceUnit, command: list[str],
              environment: list[dict[str, str]]) -> dict[str, Any]:
    """One Map item: what the Batch task submits. `cell_id` holds a unit's id for units,
    and `kind` ("mosaic", "composite") tells the state machine that a failure is a unit's."""
    key = task_key(task)
    item = {"task_id": task.task_id, "job_id": job_id, "cell_id": key,
            "job_name": job_name(job_id, key), "command": command,
            "environment": environment}
    if isinstance(task, ReduceUnit):
        item["kind"] = task.kind
    return item


def worker_item(task: Cell | ReduceUnit, task_log_uri: str, s3: Any, bucket: str,
                work: str) -> dict[str, Any]:
    """`rsbatch-worker run CELL` or `rsbatch-worker reduce UNIT`, the JSON inline or, when
    large (a detailed AOI), as an object in the job's work folder the worker reads."""
    unit = isinstance(task, ReduceUnit)
    key = task_key(task)
    text = json.dumps(task.to_dict(), separators=(",", ":"))
    if len(text.encode()) > INLINE_TASK_BYTES:
        object_key = f"{work}/{'units' if unit else 'cells'}/{key}.json"
        s3.put_object(Bucket=bucket, Key=object_key, Body=text.encode(),
                      ContentType="application/json")
        text = f"s3://{bucket}/{object_key}"
    return task_item(task.job_id, task,
                     ["--task-log", task_log_uri, "reduce" if unit else "run", text], [])


def stage(items: list[dict[str, Any]], *, s3: Any, bucket: str, key: str,
          threshold: int) -> dict[str, Any]:
    """The Map's view of a stage: its items inline, or in S3 for a Distributed Map."""
    payload = json.dumps(items, separators=(",", ":"))
    distributed = len(items) > threshold or len(payload) > INLINE_PAYLOAD_BYTES
    if distributed:
        s3.put_object(Bucket=bucket, Key=key, Body=payload.encode(),
                      ContentType="application/json")
    return {"mode": "DISTRIBUTED" if distributed else "INLINE", "items_key": key,
            "items": [] if distributed else items, "stage_count": len(items)}


def units_key(work: str) -> str:
    return f"{work}/units.json"


def write_levels(units: Iterable[ReduceUnit], *, s3: Any, bucket: str, work: str) -> int:
    """The job's units by level into its work folder (read by `next_stage`); the count of
    levels (0: no units, nothing written)."""
    levels = unit_levels(list(units))
    if levels:
        body = json.dumps([[u.to_dict() for u in level] for level in levels],
                          separators=(",", ":"))
        s3.put_object(Bucket=bucket, Key=units_key(work), Body=body.encode(),
                      ContentType="application/json")
    return len(levels)


def _read_levels(s3: Any, bucket: str, work: str) -> list[list[dict[str, Any]]]:
    from botocore.exceptions import ClientError

    try:
        body = s3.get_object(Bucket=bucket, Key=units_key(work))["Body"].read()
    except ClientError as exc:
        raise InvalidInput(f"the job's units are gone from s3://{bucket}/{units_key(work)} "
                           f"({exc}); resume the job to write them again") from exc
    return json.loads(body)


def next_stage(plan: Mapping[str, Any], *, store: Any, s3: Any, task_log_uri: str,
               threshold: int) -> dict[str, Any]:
    """The plan with the next level's items that have work to do, or `done` when none is
    left. Levels with nothing PENDING are passed over here, not in the state machine."""
    job_id, bucket = str(plan["job_id"]), str(plan["work_bucket"])
    work = str(plan["work_prefix"]).rstrip("/")
    level, levels = int(plan.get("level") or 0), int(plan.get("levels") or 0)
    timeout = (plan.get("limits") or {}).get("cell_seconds")
    raw: list[list[dict[str, Any]]] | None = None
    while level < levels:
        level += 1
        raw = raw if raw is not None else _read_levels(s3, bucket, work)
        units = [ReduceUnit.from_dict(data) for data in raw[level - 1]]
        wanted = [u.task_id for u in units] + [task_id_for(job_id, i)
                                               for u in units for i in u.inputs]
        records = store.get_many(wanted)
        items = []
        for unit in units:
            record = records.get(unit.task_id)
            if record is None or record.status is not Status.PENDING:
                continue  # done, cancelled or failed before: resume decides, not us
            statuses = {i: getattr(records.get(task_id_for(job_id, i)), "status", None)
                        for i in unit.inputs}
            stuck = {i: s for i, s in statuses.items() if s not in INPUT_FINAL}
            if stuck:
                with contextlib.suppress(TransitionRejected):  # cancelled meanwhile: it stays
                    store.transition(unit.task_id, Status.FAILED,
                                     error=inputs_not_ended(job_id, stuck))
                continue
            item = worker_item(unit, task_log_uri, s3, bucket, work)
            if timeout is not None:
                item["cell_timeout"] = timeout
            items.append(item)
        if items:
            return {**plan, "level": level, "done": False,
                    **stage(items, s3=s3, bucket=bucket, key=f"{work}/items-{level}.json",
                            threshold=threshold)}
    return {**plan, "level": level, "done": True, "mode": "INLINE", "items": [],
            "stage_count": 0}
