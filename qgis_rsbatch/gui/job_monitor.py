"""Watching jobs: a main-thread timer that starts one poll task at a time.

The timer is single-shot and re-armed only when the last poll task has ended, so polls never
overlap or pile up however slow the task log is (a DynamoDB table across an ocean, a
SQLite file on a busy disk). The task reads every unfinished job's status through its
backend; the monitor compares the records with the previous ones on the main thread and
says what changed: cells that succeeded (their outputs can be loaded), cells that failed
(with the reason), jobs that finished.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from qgis.PyQt.QtCore import QCoreApplication, QObject, QTimer, pyqtSignal

from ..core.contract import Status
from ..tasks import FunctionTask
from .backends import BackendKey, BackendPool
from .messages import describe


def tr(text: str) -> str:
    return QCoreApplication.translate("rsbatch", text)


@dataclass
class WatchedJob:
    job_id: str
    key: BackendKey
    created: str = ""
    status: Any = None          # core JobStatus, once known
    error: str = ""             # why the last poll of this job failed
    announced: bool = False     # the "job finished" notice was given

    @property
    def finished(self) -> bool:
        return self.status is not None and self.status.finished


def poll_statuses(pool: BackendPool, jobs: Iterable[tuple[str, BackendKey]],
                  task: Any = None) -> dict[str, Any]:
    """job id → JobStatus, or the exception that prevented reading it (blocking)."""
    results: dict[str, Any] = {}
    for job_id, key in jobs:
        if task is not None:
            task.check_cancelled()
        try:
            results[job_id] = pool.get(key).status(job_id)
        except Exception as exc:  # one unreachable job must not hide the others
            results[job_id] = exc
    return results


class JobMonitor(QObject):
    """Polls the unfinished jobs it watches and reports what changed."""

    #: a job's status or error changed (job id)
    jobChanged = pyqtSignal(str)
    #: job id, records of cells that have just succeeded
    cellsSucceeded = pyqtSignal(str, list)
    #: job id, records of cells that have just failed
    cellsFailed = pyqtSignal(str, list)
    #: job id: every cell has finished (emitted once per run of the job)
    jobFinished = pyqtSignal(str)

    def __init__(self, tasks: Any, pool: BackendPool, interval_ms: int = 2000,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.tasks = tasks
        self.pool = pool
        self.interval_ms = interval_ms
        self.jobs: dict[str, WatchedJob] = {}
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.poll)
        self._task: Any = None
        self._stopped = False
        self._again = False

    # --- what is watched ---------------------------------------------------------------
    def watch(self, job_id: str, key: BackendKey, *, status: Any = None, created: str = "",
              error: str = "") -> WatchedJob:
        """Start (or keep) watching a job; `status` is what is already known of it."""
        job = self.jobs.get(job_id)
        if job is None:
            job = self.jobs[job_id] = WatchedJob(job_id, key, created)
            # a job seen finished at first sight (history) needs no "finished" notice
            job.announced = status is not None and status.finished
        job.key = key
        job.error = error
        if status is not None:
            self._apply(job, status, quiet=True)
        self.jobChanged.emit(job_id)
        self.schedule()
        return job

    def rearm(self, job_id: str, status: Any = None) -> None:
        """The job runs again (resume): announce its end again, poll it now."""
        job = self.jobs.get(job_id)
        if job is None:
            return
        job.announced = False
        if status is not None:
            self._apply(job, status)
        self.poll_soon()

    def update(self, job_id: str, status: Any) -> None:
        """A status obtained elsewhere (a cancel's answer): apply it as a poll would."""
        job = self.jobs.get(job_id)
        if job is not None:
            self._apply(job, status)
            self.schedule()

    def unfinished(self) -> list[WatchedJob]:
        return [job for job in self.jobs.values() if not job.finished]

    # --- the loop ------------------------------------------------------------------------
    def schedule(self, delay_ms: int | None = None) -> None:
        """Arm the timer unless a poll is running (its end re-arms it) or nothing is left."""
        if self._stopped or self._task is not None or not self.unfinished():
            return
        if not self.timer.isActive():
            self.timer.start(self.interval_ms if delay_ms is None else delay_ms)

    def poll_soon(self) -> None:
        """Poll as soon as the running poll (if any) has ended."""
        if self._task is not None:
            self._again = True
            return
        self.timer.stop()
        self.schedule(0)

    def poll(self) -> None:
        if self._stopped or self._task is not None:
            return
        watched = [(job.job_id, job.key) for job in self.unfinished()]
        if not watched:
            return
        pool = self.pool
        self._task = FunctionTask(
            tr("rsbatch: checking {} job(s)").format(len(watched)),
            lambda task: poll_statuses(pool, watched, task),
            on_success=self._polled,
            on_error=lambda error: self._polled({job_id: error for job_id, _ in watched}),
            on_cancel=self._ended)
        self.tasks.start(self._task)

    def _ended(self) -> None:
        self._task = None
        if self._again:
            self._again = False
            self.schedule(0)
        else:
            self.schedule()

    def _polled(self, results: dict[str, Any]) -> None:
        for job_id, result in results.items():
            job = self.jobs.get(job_id)
            if job is None:
                continue
            if isinstance(result, BaseException):
                message = describe(result)
                if message != job.error:
                    job.error = message
                    self.jobChanged.emit(job_id)
                continue
            job.error = ""
            self._apply(job, result)
        self._ended()

    def _apply(self, job: WatchedJob, status: Any, *, quiet: bool = False) -> None:
        before = {r.cell_id: r for r in (job.status.records if job.status else ())}
        job.status = status
        succeeded, failed = [], []
        for record in status.records:
            old = before.get(record.cell_id)
            if old is not None and old.status is record.status and \
                    old.updated_at == record.updated_at:
                continue
            if record.status is Status.SUCCEEDED:
                succeeded.append(record)
            elif record.status is Status.FAILED and (old is None or
                                                     old.status is not Status.FAILED):
                failed.append(record)
        self.jobChanged.emit(job.job_id)
        if quiet:
            return
        if succeeded:
            self.cellsSucceeded.emit(job.job_id, succeeded)
        if failed:
            self.cellsFailed.emit(job.job_id, failed)
        if status.finished and not job.announced:
            job.announced = True
            self.jobFinished.emit(job.job_id)

    def stop(self) -> None:
        """No more polls (unload); a running poll task is cancelled by the registry."""
        self._stopped = True
        self.timer.stop()

    def pause(self) -> None:
        """No polls until `resume()` (QGIS is closing); a running poll task is the caller's."""
        self._stopped = True
        self.timer.stop()

    def resume(self) -> None:
        self._stopped = False
        self.schedule(0)
