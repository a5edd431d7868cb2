"""A job's completion message, counted from the task log in a few requests at any size.

The summary reads the job's records through the JobId index with a projected, paged Query
(a 10,000-cell job is a handful of 1 MB pages of six small attributes), not one GetItem per
cell. The index is eventually consistent, so only the records it shows unfinished are read
again, consistently and in batches of 100. The summarize Lambda (end of a job), the
reconcile Lambda (an execution that stopped, timed out or failed) and the watchdog share it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from qgis_rsbatch.core.contract import Status
from qgis_rsbatch.core.tasklog.dynamodb import DynamoTaskLog

#: how many failed cells a message lists
FAILED_LISTED = 50
#: SNS caps a message at 256 KB; a message a person reads should be far shorter
MESSAGE_CHARS = 2000
_ERROR_CHARS = 500


def clip(text: str, limit: int = MESSAGE_CHARS) -> str:
    """`text`, cut to `limit` characters with an ellipsis when longer."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def subject(job_id: str, succeeded: int, failed: int, total: int, verb: str = "") -> str:
    """An SNS subject: at most 100 printable ASCII characters."""
    tail = f": {succeeded}/{total} succeeded, {failed} failed{verb}"
    room = 100 - len("rsbatch ") - len(tail)
    name = job_id if len(job_id) <= room else job_id[:room - 3] + "..."
    return f"rsbatch {name}{tail}"


def current_statuses(store: DynamoTaskLog, job_id: str) -> list[dict[str, Any]]:
    """The job's records (status attributes only), unfinished ones re-read consistently."""
    items = store.job_statuses(job_id)
    stale = [str(item["TaskID"]) for item in items
             if not Status(item.get("Status", "PENDING")).finished]
    if stale:
        fresh = store.get_many(stale)
        items = [_as_item(fresh[str(item["TaskID"])]) if str(item["TaskID"]) in fresh
                 else item for item in items]
    return items


def _as_item(record: Any) -> dict[str, Any]:
    item = record.to_item()
    return {key: item.get(key) for key in ("TaskID", "CellId", "Status", "Attempts",
                                           "UpdatedAt", "Error")}


def summarize_items(job_id: str, items: Iterable[Mapping[str, Any]], *, planned: int = 0,
                    outputs: Iterable[str] = (), execution: Any = None,
                    event: str = "job.completed") -> dict[str, Any]:
    """The message: counts per status, the first failed cells with reasons, outputs."""
    items = list(items)
    counts = Counter(str(item.get("Status") or "PENDING") for item in items)
    failed = sorted((item for item in items if item.get("Status") == Status.FAILED.value),
                    key=lambda item: str(item.get("CellId") or ""))
    planned = planned or len(items)
    succeeded, failures = counts.get("SUCCEEDED", 0), counts.get("FAILED", 0)
    return {
        "event": event, "job_id": job_id, "total": planned,
        "succeeded": succeeded, "failed": failures,
        "cancelled": counts.get("CANCELLED", 0),
        "unfinished": counts.get("PENDING", 0) + counts.get("RUNNING", 0),
        "missing": max(0, planned - len(items)),
        "counts": dict(sorted(counts.items())),
        "outputs": list(outputs),
        "failed_cells": [{"cell_id": str(item.get("CellId") or ""),
                          "error": clip(str(item.get("Error") or ""), _ERROR_CHARS)}
                         for item in failed[:FAILED_LISTED]],
        "execution": execution,
        "subject": subject(job_id, succeeded, failures, planned),
    }


def summarize_job(store: DynamoTaskLog, job_id: str, **kwargs: Any) -> dict[str, Any]:
    """summarize_items over the task log's current records of the job."""
    return summarize_items(job_id, current_statuses(store, job_id), **kwargs)
