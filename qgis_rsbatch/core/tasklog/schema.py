"""The task-log schema: one record per cell, keyed `<job_id>#<cell_id>` (DESIGN.md).

This module is the single source of the table's shape. The CloudFormation template's
table is checked against it by a test, the SQLite store creates its table from it and the
DynamoDB store maps records through it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Protocol

from ..contract import REDUCE_KINDS, Cell, ReduceUnit, Status
from ..errors import InvalidInput

TABLE_NAME = "task-log"
HASH_KEY = "TaskID"
#: the job's id, on every record (not a key)
JOB_ID = "JobId"
#: "all cells of a job" is a GSI whose hash key spreads a job over JOB_SHARDS values
#: (`<job_id>#<n>`): one value per job would put a 10,000-cell plan on one index partition,
#: about 1,000 writes a second, and throttle it. Readers query every shard (in parallel).
JOB_INDEX = "JobShard-index"
JOB_INDEX_KEY = "JobShard"
JOB_SHARDS = 16
#: DynamoDB's view of the keys: (attribute, type) for the table and its GSI
KEY_ATTRIBUTES = {HASH_KEY: "S", JOB_INDEX_KEY: "S"}
#: attribute holding an epoch time after which DynamoDB may expire the record
TTL_ATTRIBUTE = "ExpiresAt"
#: attribute holding the share (%) of the cell's AOI pixels that SCL masks (every record
#: the worker finishes; None without SCL)
AOI_MASKED_ATTRIBUTE = "AoiMaskedPct"
#: attribute holding the AOI statistics: product → {valid_pixels, valid_fraction, mean, …}
STATS_ATTRIBUTE = "Stats"


def table_shape() -> dict[str, Any]:
    """The table's keys, index and billing as DynamoDB's CreateTable takes them: what a test
    or a bench creates in moto (`create_table(TableName=…, **table_shape())`), and what
    the template's table is checked against."""
    return {
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": k, "AttributeType": t}
                                 for k, t in KEY_ATTRIBUTES.items()],
        "KeySchema": [{"AttributeName": HASH_KEY, "KeyType": "HASH"}],
        # status polling reads every field: the index projects them all
        "GlobalSecondaryIndexes": [{
            "IndexName": JOB_INDEX, "Projection": {"ProjectionType": "ALL"},
            "KeySchema": [{"AttributeName": JOB_INDEX_KEY, "KeyType": "HASH"}]}],
    }


#: status → the statuses a record may move to from it. A record never moves backwards
#: from SUCCEEDED or SKIPPED (both done: resume leaves them); FAILED/CANCELLED may go back
#: to PENDING (resume) and FAILED/RUNNING to RUNNING (a retry of the same cell after a crash
#: or a Spot interruption).
TRANSITIONS: Mapping[Status | None, frozenset[Status]] = {
    None: frozenset({Status.PENDING, Status.RUNNING}),
    Status.PENDING: frozenset({Status.RUNNING, Status.FAILED, Status.CANCELLED}),
    Status.RUNNING: frozenset({Status.RUNNING, Status.SUCCEEDED, Status.FAILED,
                               Status.CANCELLED, Status.SKIPPED}),
    Status.FAILED: frozenset({Status.PENDING, Status.RUNNING}),
    Status.CANCELLED: frozenset({Status.PENDING}),
    Status.SUCCEEDED: frozenset(),
    Status.SKIPPED: frozenset(),
}


#: a reduce unit's record: the inputs it was made without (failed or skipped), and, while it
#: waits to be made again with them, why (set by `remade`, cleared when it succeeds again)
LACKING_ATTRIBUTE = "LackingInputs"
REMAKE_ATTRIBUTE = "RemakeReason"

#: the worker's identity in a record's extra attributes (pid + start time, see core.processes)
WORKER_PID, WORKER_START = "WorkerPid", "WorkerStart"
#: the AWS Batch job of the cell's latest attempt: where its CloudWatch log is
BATCH_JOB_ID = "BatchJobId"
LATE_SUCCESS_NOTE = ("recorded SUCCEEDED after it had been marked FAILED on the worker's "
                     "behalf ({error}): the worker finished and its outputs are complete")


def late_success(current: Record, status: Status, extra: Mapping[str, Any] | None) -> bool:
    """Whether this is the one move out of FAILED that skips the table: a worker that was
    declared FAILED on its behalf (by a runner that thought it dead) and then finished.

    Only the same worker process may make it: the record's worker pid and start time must
    be the writer's own. Its outputs are the truth, so the record becomes SUCCEEDED.
    """
    if current.status is not Status.FAILED or status is not Status.SUCCEEDED or not extra:
        return False
    pid = current.extra.get(WORKER_PID)
    return (pid is not None and extra.get(WORKER_PID) == pid
            and extra.get(WORKER_START) == current.extra.get(WORKER_START))


def remade(reason: str) -> dict[str, Any]:
    """The extra attributes that send a finished reduce unit back to PENDING (`remake`)."""
    return {REMAKE_ATTRIBUTE: str(reason)}


def remake(current: Record, status: Status, extra: Mapping[str, Any] | None) -> bool:
    """Whether this is the one move out of SUCCEEDED or SKIPPED: a reduce unit made without
    some of its inputs (or from a unit that is being remade) goes back to PENDING when they
    run again, so it is made again with all of them. Cells never leave SUCCEEDED/SKIPPED:
    their outputs depend only on their scene."""
    return (status is Status.PENDING and current.status in (Status.SUCCEEDED, Status.SKIPPED)
            and is_unit_record(current) and bool(extra and extra.get(REMAKE_ATTRIBUTE)))


def remake_pending(record: Record) -> bool:
    """Whether a unit's record asks for its output to be made again (not reused)."""
    return bool(record.extra.get(REMAKE_ATTRIBUTE))


def allowed(current: Record, status: Status, extra: Mapping[str, Any] | None = None) -> bool:
    """Whether `current` may move to `status` (the table, a worker's late success, or a
    reduce unit's remake)."""
    return (status in TRANSITIONS[current.status] or late_success(current, status, extra)
            or remake(current, status, extra))


def sources_of(status: Status) -> frozenset[Status | None]:
    """The statuses from which `status` may be reached (None: no record yet)."""
    return frozenset(src for src, targets in TRANSITIONS.items() if status in targets)


def job_shard(job_id: str, cell_id: str) -> str:
    """The index key of a cell's record: the job id and a shard chosen by the cell id.

    crc32, not hash(): every process (worker, Lambda, client) must pick the same shard.
    """
    return f"{job_id}#{zlib.crc32(cell_id.encode()) % JOB_SHARDS}"


def job_shards(job_id: str) -> list[str]:
    """Every index key a job's records can have."""
    return [f"{job_id}#{n}" for n in range(JOB_SHARDS)]


def is_unit_record(record: Record) -> bool:
    """Whether a record is a reduce unit's (mosaic, composite), not a cell's."""
    return "Kind" in record.extra


#: the kinds of a job's records in the order they are listed (the dock's rows, the command
#: line's table): the cells, then the mosaics made from them, then the composites reading
#: the mosaics
KINDS = ("cell", *REDUCE_KINDS)


def listing_order(record: Record) -> tuple[int, str]:
    """Where a record goes in a job's listing: by kind (KINDS), then by id (a unit's id
    begins with its date or period, then its product)."""
    kind = record.kind
    return (KINDS.index(kind) if kind in KINDS else len(KINDS), record.cell_id)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Record:
    """One cell's entry in the task log."""

    task_id: str
    job_id: str
    cell_id: str
    tile: str
    date: str
    status: Status
    attempts: int = 0
    updated_at: str = field(default_factory=utc_now)
    outputs: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None
    warnings: tuple[str, ...] = ()
    #: extra attributes kept for compatibility (the seed's files/date/exec_time/result)
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: epoch seconds after which DynamoDB may delete the record (TTL); None keeps it
    expires_at: int | None = None

    @classmethod
    def for_cell(cls, cell: Cell, status: Status = Status.PENDING,
                 expires_at: int | None = None) -> Record:
        return cls(task_id=cell.task_id, job_id=cell.job_id, cell_id=cell.cell_id,
                   tile=cell.tile, date=cell.date, status=status, expires_at=expires_at)

    @classmethod
    def for_unit(cls, unit: ReduceUnit, status: Status = Status.PENDING,
                 expires_at: int | None = None) -> Record:
        """A reduce unit's record: CellId holds the unit id, Tile its kind, Date its first day,
        Period its first and last day (a composite's range: what a map layer's time is)."""
        return cls(task_id=unit.task_id, job_id=unit.job_id, cell_id=unit.unit_id,
                   tile=unit.kind, date=unit.dates[0], status=status, expires_at=expires_at,
                   extra={"Kind": unit.kind, "Product": unit.product,
                          "Inputs": list(unit.inputs), "Period": list(unit.dates)})

    @classmethod
    def for_task(cls, task: Cell | ReduceUnit, status: Status = Status.PENDING,
                 expires_at: int | None = None) -> Record:
        if isinstance(task, ReduceUnit):
            return cls.for_unit(task, status, expires_at)
        return cls.for_cell(task, status, expires_at)

    def moved(self, status: Status, *, outputs: Mapping[str, str] | None = None,
              error: str | None = None, warnings: Iterable[str] = (),
              extra: Mapping[str, Any] | None = None) -> Record:
        """The record after a transition to `status` (attempts count the RUNNINGs)."""
        if not allowed(self, status, extra):
            raise InvalidInput(f"{self.task_id}: {self.status} cannot become {status}")
        if late_success(self, status, extra):
            warnings = (*warnings, LATE_SUCCESS_NOTE.format(error=self.error))
        return replace(
            self,
            status=status,
            attempts=self.attempts + (1 if status is Status.RUNNING else 0),
            updated_at=utc_now(),
            outputs=dict(outputs) if outputs is not None else
            ({} if status in (Status.PENDING, Status.RUNNING) else dict(self.outputs)),
            # the reason a person reads: why it failed, was cancelled or was skipped
            error=error if status in (Status.FAILED, Status.CANCELLED, Status.SKIPPED)
            else None,
            warnings=tuple(warnings),
            extra={**self.extra, **(extra or {})},
        )

    @property
    def kind(self) -> str:
        """"cell", or a reduce unit's kind ("mosaic", "composite")."""
        return str(self.extra.get("Kind") or "cell")

    @property
    def period(self) -> tuple[str, str]:
        """(first, last) day: a cell's date twice, a reduce unit's dates."""
        period = self.extra.get("Period")
        if isinstance(period, (list, tuple)) and len(period) == 2:
            return str(period[0]), str(period[1])
        return self.date, self.date

    @property
    def aoi_masked_pct(self) -> float | None:
        value = self.extra.get(AOI_MASKED_ATTRIBUTE)
        return float(value) if value is not None else None

    @property
    def stats(self) -> dict[str, dict[str, Any]]:
        """product → AOI statistics of an index (worker/aoistats.py), when the cell has them."""
        return dict(self.extra.get(STATS_ATTRIBUTE) or {})

    def to_item(self) -> dict[str, Any]:
        """The record as DynamoDB-style attributes (also the JSON the CLI prints)."""
        item: dict[str, Any] = {
            HASH_KEY: self.task_id, JOB_ID: self.job_id,
            JOB_INDEX_KEY: job_shard(self.job_id, self.cell_id), "CellId": self.cell_id,
            "Tile": self.tile, "Date": self.date, "Status": self.status.value,
            "Attempts": self.attempts, "UpdatedAt": self.updated_at,
            "Outputs": dict(self.outputs),
        }
        if self.error:
            item["Error"] = self.error
        if self.warnings:
            item["Warnings"] = list(self.warnings)
        if self.expires_at is not None:
            item[TTL_ATTRIBUTE] = int(self.expires_at)
        item.update(self.extra)
        return item

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Record:
        known = {HASH_KEY, JOB_ID, JOB_INDEX_KEY, "CellId", "Tile", "Date", "Status", "Attempts",
                 "UpdatedAt", "Outputs", "Error", "Warnings", TTL_ATTRIBUTE}
        return cls(
            task_id=str(item[HASH_KEY]), job_id=str(item.get(JOB_ID, "")),
            cell_id=str(item.get("CellId", "")), tile=str(item.get("Tile", "")),
            date=str(item.get("Date", "")), status=Status(item.get("Status", "PENDING")),
            attempts=int(item.get("Attempts", 0)), updated_at=str(item.get("UpdatedAt", "")),
            outputs={str(k): str(v) for k, v in dict(item.get("Outputs") or {}).items()},
            error=item.get("Error"), warnings=tuple(item.get("Warnings") or ()),
            extra={k: v for k, v in item.items() if k not in known},
            expires_at=int(item[TTL_ATTRIBUTE]) if item.get(TTL_ATTRIBUTE) is not None
            else None,
        )


class TaskLog(Protocol):
    """What every task-log store offers (SQLite locally, DynamoDB on AWS)."""

    def register(self, cells: Iterable[Cell | ReduceUnit], status: Status = Status.PENDING,
                 expires_at: int | None = None) -> int:
        """Create a record per cell unless one exists; returns how many were created."""

    def transition(self, task_id: str, status: Status, *, outputs: Mapping[str, str] | None = None,
                   error: str | None = None, warnings: Iterable[str] = (),
                   extra: Mapping[str, Any] | None = None) -> Record:
        """Move a record to `status` with a conditional write; TransitionRejected if not allowed."""

    def get(self, task_id: str) -> Record | None:
        """The record, or None."""

    def job_records(self, job_id: str) -> list[Record]:
        """Every record of a job, ordered by cell id."""

    def remake(self, task_id: str, reason: str) -> Record:
        """A finished reduce unit back to PENDING, to be made again (see `remake`)."""
