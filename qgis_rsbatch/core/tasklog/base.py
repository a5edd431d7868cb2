"""The transition logic every store shares: read, check, compare-and-set, retry on a race.

A store only supplies three primitives (`get`, `_insert`, `_replace`); each must be atomic
in its backend (a SQLite `UPDATE … WHERE`, a DynamoDB `ConditionExpression`) and report
honestly whether it wrote. Checking that answer is what keeps a retried or duplicated
cell from moving a record backwards.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..contract import Cell, ReduceUnit, Status
from ..errors import TransitionRejected
from .schema import Record, allowed, remade

_RACE_RETRIES = 20


class CompareAndSetLog:
    """Base for task-log stores; subclasses implement the three primitives."""

    def get(self, task_id: str) -> Record | None:
        raise NotImplementedError

    def job_records(self, job_id: str) -> list[Record]:
        raise NotImplementedError

    def _insert(self, record: Record) -> bool:
        """Write `record` only if no record has its key; True if written."""
        raise NotImplementedError

    def _replace(self, old: Record, new: Record) -> bool:
        """Write `new` only if the stored record still equals `old` (status, time); True if so."""
        raise NotImplementedError

    def register(self, cells: Iterable[Cell | ReduceUnit], status: Status = Status.PENDING,
                 expires_at: int | None = None) -> int:
        """Create a record per cell (or reduce unit) unless one exists (`expires_at`: its
        TTL, epoch seconds)."""
        created = 0
        for cell in cells:
            if self._insert(Record.for_task(cell, status, expires_at)):
                created += 1
        return created

    def transition(self, task_id: str, status: Status, *,
                   outputs: Mapping[str, str] | None = None, error: str | None = None,
                   warnings: Iterable[str] = (),
                   extra: Mapping[str, Any] | None = None) -> Record:
        status = Status(status)
        warnings = tuple(warnings)
        for attempt in range(_RACE_RETRIES):
            if attempt:  # lost a race: let the other writer finish, then read again
                time.sleep(random.uniform(0, 0.005 * attempt))  # noqa: S311 - jitter only
            current = self.get(task_id)
            if current is None:
                raise TransitionRejected(f"task {task_id} is not in the task log")
            if not allowed(current, status, extra):
                raise TransitionRejected(
                    f"task {task_id} is {current.status}; it cannot become {status}"
                )
            new = current.moved(status, outputs=outputs, error=error, warnings=warnings,
                                extra=extra)
            if self._replace(current, new):
                return new
        raise TransitionRejected(f"task {task_id} kept changing under concurrent writers")

    def remake(self, task_id: str, reason: str) -> Record:
        """Send a finished reduce unit back to PENDING to be made again (with the inputs it
        lacked, or from a remade input); TransitionRejected for a cell or an unfinished
        unit. Its record says why until it succeeds again (schema.REMAKE_ATTRIBUTE)."""
        return self.transition(task_id, Status.PENDING, extra=remade(reason))
