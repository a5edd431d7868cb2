"""A cell's (or reduce unit's) worker log, wherever it ran: `rsbatch logs JOB_ID CELL_ID`
and the dock.

Local cells write `Cell.log_uri` (a file beside the outputs); AWS cells log to CloudWatch,
in the stream AWS Batch names for the cell's Batch job, whose id the worker records on the
task-log record (`BatchJobId`) when the cell starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlparse

from .contract import Cell, Job, ReduceUnit
from .errors import InvalidInput, SourceUnavailable


def _key(task: Cell | ReduceUnit) -> str:
    return task.unit_id if isinstance(task, ReduceUnit) else task.cell_id


def _named(task: Cell | ReduceUnit) -> str:
    return f"unit {task.unit_id}" if isinstance(task, ReduceUnit) else f"cell {task.cell_id}"


def find_cell(job: Job, cell_id: str) -> Cell | ReduceUnit:
    """The cell, or the reduce unit (mosaic, composite), of `job` with that id."""
    for task in job.tasks:
        if _key(task) == cell_id:
            return task
    known = ", ".join(c.cell_id for c in job.cells[:5])
    raise InvalidInput(f"job {job.job_id} has no cell {cell_id} nor a unit of that id (it has "
                       f"{known}{', …' if len(job.cells) > 5 else ''})")


def local_log_path(cell: Cell | ReduceUnit) -> str:
    """The file path of a local cell's log (its output is a folder, file:// or plain)."""
    uri = cell.log_uri
    if uri.startswith("file://"):
        return unquote(urlparse(uri).path)
    if "://" in uri:
        raise InvalidInput(f"{_named(cell)} writes to {cell.output}: its log is not a "
                           "local file")
    return uri


def read_local_log(cell: Cell | ReduceUnit) -> str:
    path = local_log_path(cell)
    if not os.path.exists(path):
        raise InvalidInput(f"{_named(cell)} has no log yet ({path}): has it started?")
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def read_cell_log(backend: Any, job: Job, cell_id: str) -> str:
    """The whole log of a cell of `job`, run by `backend` (the CLI and the dock call this).

    Blocking (a file read, or CloudWatch requests): call it from a task, not the GUI thread.
    """
    if getattr(backend, "name", "") == "aws":
        return "".join(f"{line}\n" for line in backend.cell_log(job.job_id, cell_id))
    return read_local_log(find_cell(job, cell_id))


def cloudwatch_lines(logs: Any, group: str, stream: str) -> Iterator[str]:
    """Every message of a CloudWatch log stream, oldest first, page by page."""
    kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream,
                              "startFromHead": True}
    while True:
        page = logs.get_log_events(**kwargs)
        for event in page.get("events", []):
            yield str(event.get("message", ""))
        token = page.get("nextForwardToken")
        if not token or token == kwargs.get("nextToken"):
            return
        kwargs["nextToken"] = token


def batch_log_stream(batch: Any, batch_job_id: str) -> tuple[str | None, str]:
    """(log group or None, stream) of an AWS Batch job, from describe_jobs."""
    jobs = batch.describe_jobs(jobs=[batch_job_id]).get("jobs") or []
    if not jobs:
        raise SourceUnavailable(f"AWS Batch no longer knows job {batch_job_id} (it keeps "
                                "finished jobs for about a week); search its log group")
    container = jobs[0].get("container") or {}
    stream = container.get("logStreamName")
    if not stream:
        attempts = jobs[0].get("attempts") or []
        stream = ((attempts[-1] if attempts else {}).get("container") or {}).get(
            "logStreamName")
    if not stream:
        raise InvalidInput(f"AWS Batch job {batch_job_id} has no log stream yet: it has not "
                           f"started ({jobs[0].get('status')})")
    options = (container.get("logConfiguration") or {}).get("options") or {}
    return options.get("awslogs-group"), str(stream)
