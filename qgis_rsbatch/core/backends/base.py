"""The one interface both backends offer, and the job summary every front end shows.

A backend runs a Job's cells somewhere and reports each cell's record from the task log.
`local` runs them in worker processes on this machine; `aws` starts the deployed Step
Functions state machine. The command line and the QGIS dock only speak this interface.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..contract import Job, Status
from ..errors import TransitionRejected
from ..tasklog.schema import LACKING_ATTRIBUTE, Record

#: called with the job's records whenever they change while waiting
Progress = Callable[[list[Record]], None]


@dataclass(frozen=True)
class JobStatus:
    """A job's records, summarised."""

    job_id: str
    records: tuple[Record, ...]
    backend: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def counts(self) -> dict[str, int]:
        counts = Counter(record.status.value for record in self.records)
        return {status.value: counts.get(status.value, 0) for status in Status}

    @property
    def finished(self) -> bool:
        return bool(self.records) and all(record.status.finished for record in self.records)

    @property
    def succeeded(self) -> bool:
        """Every cell done: succeeded, or skipped by the job's AOI cloud limit."""
        return self.finished and all(r.status.done for r in self.records)

    @property
    def progress(self) -> float:
        if not self.records:
            return 0.0
        return sum(record.status.finished for record in self.records) / len(self.records)

    def outputs(self) -> dict[str, dict[str, str]]:
        """cell id → product → URI, for the cells that succeeded."""
        return {r.cell_id: dict(r.outputs) for r in self.records if r.status is Status.SUCCEEDED}

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "backend": self.backend, "counts": self.counts,
                "finished": self.finished, "notes": list(self.notes),
                "cells": [record.to_item() for record in self.records]}


class Backend(Protocol):
    """Runs jobs; `local` and `aws` implement it, a contract test holds them to it."""

    name: str

    def default_output(self) -> str:
        """Where outputs go when the user names no place (a folder URI, or an s3:// prefix)."""

    def submit(self, job: Job, *, wait: bool = False,
               progress: Progress | None = None) -> JobStatus:
        """Record the job's cells PENDING and start them. With `wait`, return when finished."""

    def status(self, job_id: str) -> JobStatus:
        """Every cell's record, reconciled with what is really running."""

    def cancel(self, job_id: str) -> JobStatus:
        """Stop the job: unfinished cells become CANCELLED."""

    def resume(self, job_id: str, *, wait: bool = False,
               progress: Progress | None = None) -> JobStatus:
        """Run again the cells that did not succeed; finished outputs are not rewritten."""

    def wait(self, job_id: str, progress: Progress | None = None,
             interval: float = 1.0, timeout: float | None = None) -> JobStatus:
        """Poll until every cell has finished."""


def poll(status: Callable[[], JobStatus], progress: Progress | None, interval: float,
         timeout: float | None) -> JobStatus:
    """Ask for the status every `interval` s until the job has finished or `timeout` passed,
    telling `progress` whenever the records changed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        current = status()
        if progress and current.records != last:
            progress(list(current.records))
            last = current.records
        if current.finished or (deadline is not None and time.monotonic() > deadline):
            return current
        time.sleep(interval)


def unfinished(records: Iterable[Record]) -> list[Record]:
    return [record for record in records if not record.status.finished]


def move(log: Any, task_id: str, status: Status, **kwargs: Any) -> None:
    """A transition made on a cell's behalf (cancel, reconcile, a crash) that may lose a race
    with the worker's own write: then the worker's wins, it knows best."""
    with contextlib.suppress(TransitionRejected):
        log.transition(task_id, status, **kwargs)


def units_to_remake(job: Job, records: Iterable[Record],
                    rerun: Iterable[str]) -> dict[str, str]:
    """The finished reduce units a resume must send back to be made again, with why: those
    made without an input that now runs again (`rerun`: the ids going back to PENDING), and,
    in turn, those reading a unit that is remade (a composite of a remade mosaic)."""
    finished = {r.cell_id: r for r in records if r.status in (Status.SUCCEEDED, Status.SKIPPED)}
    again = set(rerun)
    out: dict[str, str] = {}
    for unit in job.units:  # a unit's inputs come before it (Job.from_dict checks)
        record = finished.get(unit.unit_id)
        if record is None:
            continue
        lacked = [i for i in record.extra.get(LACKING_ATTRIBUTE) or () if i in again]
        remade = [i for i in unit.inputs if i in out]
        if lacked:
            out[unit.unit_id] = f"made without {', '.join(lacked)}, which runs again"
        elif remade:
            out[unit.unit_id] = f"its input(s) {', '.join(remade)} are made again"
        else:
            continue
        again.add(unit.unit_id)
    return out
