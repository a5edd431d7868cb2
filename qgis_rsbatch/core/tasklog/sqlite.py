"""The local task log: SQLite in WAL mode, safe for many worker processes writing at once.

Also keeps the jobs themselves (id, parameters, cells) so `rsbatch status/resume JOB_ID`
work from any folder and the QGIS dock shows job history after a restart.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any
from urllib.parse import quote

from ..contract import Job, Status
from ..errors import InvalidInput, OutputFailed, TaskLogUnavailable, TransitionRejected
from .base import CompareAndSetLog
from .schema import Record, allowed

_SCHEMA = """
CREATE TABLE IF NOT EXISTS task_log (
    TaskID    TEXT PRIMARY KEY,
    JobId     TEXT NOT NULL,
    CellId    TEXT NOT NULL,
    Tile      TEXT NOT NULL,
    Date      TEXT NOT NULL,
    Status    TEXT NOT NULL,
    Attempts  INTEGER NOT NULL DEFAULT 0,
    UpdatedAt TEXT NOT NULL,
    Outputs   TEXT NOT NULL DEFAULT '{}',
    Error     TEXT,
    Warnings  TEXT NOT NULL DEFAULT '[]',
    Extra     TEXT NOT NULL DEFAULT '{}',
    ExpiresAt INTEGER
);
CREATE INDEX IF NOT EXISTS task_log_job ON task_log (JobId);
CREATE TABLE IF NOT EXISTS jobs (
    JobId    TEXT PRIMARY KEY,
    Created  TEXT NOT NULL,
    Backend  TEXT NOT NULL,
    Job      TEXT NOT NULL,
    Handle   TEXT NOT NULL DEFAULT '{}'
);
"""
_COLUMNS = ("TaskID", "JobId", "CellId", "Tile", "Date", "Status", "Attempts", "UpdatedAt",
            "Outputs", "Error", "Warnings", "Extra", "ExpiresAt")


def _row(record: Record) -> tuple[Any, ...]:
    return (record.task_id, record.job_id, record.cell_id, record.tile, record.date,
            record.status.value, record.attempts, record.updated_at,
            json.dumps(dict(record.outputs)), record.error, json.dumps(list(record.warnings)),
            json.dumps(dict(record.extra)), record.expires_at)


def _record(row: sqlite3.Row) -> Record:
    return Record(task_id=row["TaskID"], job_id=row["JobId"], cell_id=row["CellId"],
                  tile=row["Tile"], date=row["Date"], status=Status(row["Status"]),
                  attempts=row["Attempts"], updated_at=row["UpdatedAt"],
                  outputs=json.loads(row["Outputs"]), error=row["Error"],
                  warnings=tuple(json.loads(row["Warnings"])), extra=json.loads(row["Extra"]),
                  expires_at=row["ExpiresAt"])


class SqliteTaskLog(CompareAndSetLog):
    """Task log in one SQLite file. Opens a short-lived connection per call (process-safe)."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(os.path.expanduser(path))
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        except OSError as exc:
            raise OutputFailed(f"cannot open the task log {self.path}: {exc}") from exc
        with self._connect(create=True) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(task_log)")}
            if "ExpiresAt" not in columns:  # a log made by an earlier version
                db.execute("ALTER TABLE task_log ADD COLUMN ExpiresAt INTEGER")

    @property
    def uri(self) -> str:
        return "sqlite://" + self.path

    @contextmanager
    def _connect(self, create: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection to the existing file (only `create` may make it): a log deleted under
        a running job must not come back empty and silently lose every record."""
        # isolation_level=None + explicit BEGIN IMMEDIATE: a writer takes the lock up front
        # instead of failing on upgrade; busy timeout waits for other worker processes.
        uri = f"file:{quote(self.path)}?mode={'rwc' if create else 'rw'}"
        try:
            with closing(sqlite3.connect(uri, uri=True, timeout=30,
                                         isolation_level=None)) as db:
                db.row_factory = sqlite3.Row
                db.execute("PRAGMA busy_timeout=30000")
                yield db
        except sqlite3.Error as exc:
            problem = "is missing" if not os.path.exists(self.path) else f"is unusable ({exc})"
            raise TaskLogUnavailable(
                f"the task log {self.path} {problem}; `rsbatch resume <output folder>/<job id>`"
                " rebuilds a local job's records from its folder") from exc

    def get(self, task_id: str) -> Record | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM task_log WHERE TaskID = ?", (task_id,)).fetchone()
        return _record(row) if row else None

    def job_records(self, job_id: str) -> list[Record]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM task_log WHERE JobId = ? ORDER BY CellId",
                              (job_id,)).fetchall()
        return [_record(row) for row in rows]

    def _insert(self, record: Record) -> bool:
        marks = ", ".join("?" for _ in _COLUMNS)
        with self._connect() as db:
            cursor = db.execute(
                f"INSERT OR IGNORE INTO task_log ({', '.join(_COLUMNS)}) VALUES ({marks})",  # noqa: S608
                _row(record),
            )
            return cursor.rowcount == 1

    def transition(self, task_id: str, status: Status, **kwargs: Any) -> Record:
        """Read, check and write in one write transaction: SQLite serialises the writers of
        all processes, so no compare-and-set race can happen here."""
        status = Status(status)
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT * FROM task_log WHERE TaskID = ?",
                                 (task_id,)).fetchone()
                if row is None:
                    raise TransitionRejected(f"task {task_id} is not in the task log")
                current = _record(row)
                if not allowed(current, status, kwargs.get("extra")):
                    raise TransitionRejected(
                        f"task {task_id} is {current.status}; it cannot become {status}")
                new = current.moved(status, **kwargs)
                sets = ", ".join(f"{column} = ?" for column in _COLUMNS[1:])
                db.execute(f"UPDATE task_log SET {sets} WHERE TaskID = ?",  # noqa: S608
                           (*_row(new)[1:], task_id))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return new

    def _replace(self, old: Record, new: Record) -> bool:
        sets = ", ".join(f"{column} = ?" for column in _COLUMNS[1:])
        with self._connect() as db:
            cursor = db.execute(
                f"UPDATE task_log SET {sets} WHERE TaskID = ? AND Status = ? AND UpdatedAt = ?"  # noqa: S608
                " AND Attempts = ?",
                (*_row(new)[1:], old.task_id, old.status.value, old.updated_at, old.attempts),
            )
            return cursor.rowcount == 1

    # --- the local job registry -------------------------------------------------------
    def save_job(self, job: Job, backend: str = "local", handle: dict | None = None) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO jobs (JobId, Created, Backend, Job, Handle)"
                " VALUES (?, ?, ?, ?, ?)",
                (job.job_id, job.created, backend, json.dumps(job.to_dict()),
                 json.dumps(handle or {})),
            )

    def update_handle(self, job_id: str, **changes: Any) -> dict:
        """Change keys of a job's backend handle atomically (None removes a key).

        Several processes touch a handle (the supervisor its pid, `cancel` its flag), so the
        read-modify-write happens inside one write transaction.
        """
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT Handle FROM jobs WHERE JobId = ?", (job_id,)).fetchone()
                if row is None:
                    raise InvalidInput(f"no job {job_id} in the task log {self.path}")
                handle = json.loads(row["Handle"])
                for key, value in changes.items():
                    if value is None:
                        handle.pop(key, None)
                    else:
                        handle[key] = value
                db.execute("UPDATE jobs SET Handle = ? WHERE JobId = ?",
                           (json.dumps(handle), job_id))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return handle

    def load_job(self, job_id: str) -> tuple[Job, str, dict] | None:
        """(job, backend name, backend handle) or None when the id is unknown here."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE JobId = ?", (job_id,)).fetchone()
        if row is None:
            return None
        return Job.from_dict(json.loads(row["Job"])), row["Backend"], json.loads(row["Handle"])

    def list_jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first: job id, creation time, backend and per-status counts."""
        with self._connect() as db:
            jobs = db.execute("SELECT JobId, Created, Backend FROM jobs ORDER BY Created DESC"
                              " LIMIT ?", (limit,)).fetchall()
            result = []
            for job in jobs:
                counts = dict(db.execute(
                    "SELECT Status, COUNT(*) FROM task_log WHERE JobId = ? GROUP BY Status",
                    (job["JobId"],)).fetchall())
                result.append({"job_id": job["JobId"], "created": job["Created"],
                               "backend": job["Backend"], "counts": counts})
        return result
