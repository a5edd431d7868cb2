"""The embedded default: a job's cells run by worker processes on this machine.

A supervisor (supervisor.py) runs the cells, `workers` at a time, each as
`rsbatch-worker run -` in its own process; every transition lands in the SQLite task log.
It runs in the foreground (`rsbatch run`) or detached (the QGIS plugin, which then only
polls the log), so a job survives the window that started it. A worker that crashes
leaves its cell FAILED with the reason and the others go on; cancelling kills the running
workers (also orphans, by the pid and start time their records hold) and marks every
unfinished cell CANCELLED; resuming reruns only the cells that did not succeed (finished
outputs are never rewritten: the worker skips them), and remakes the reduce units that were
made without one of those cells (and the units reading them).

Each job has a folder (jobfolder.py): job.json written at submit, so a job outlives its
task log (`adopt`); the workers' logs; the lock that lets exactly one supervisor run it.
A cell is declared dead only when its worker is provably gone (core.processes).

The worker needs rasterio, which QGIS's own Python lacks, so workers run with a chosen
Python (`worker_python`): $RSBATCH_WORKER_PYTHON, this interpreter when it has rasterio,
or the checkout's .venv (the plugin adds its own worker environment: core.workerenv). Our
code reaches that Python through PYTHONPATH, so it needs only the third-party wheels.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..contract import Job, Status, normalize_output, task_id_for
from ..errors import DependencyMissing, InvalidInput, JobBusy, TaskLogUnavailable, Terminated
from ..processes import ProcessId
from ..tasklog import default_sqlite_path, user_data_dir
from ..tasklog.schema import WORKER_PID, WORKER_START, Record
from ..tasklog.sqlite import SqliteTaskLog
from ..workerenv import worker_process_env
from .base import JobStatus, Progress, move, poll, unfinished, units_to_remake
from .jobfolder import SupervisorLock, job_folder, read_job, sweep_scratch, write_job
from .supervisor import POLL_SECONDS, Supervisor


def _is_python(path: str) -> bool:
    return Path(path).name.lower().startswith("python")


@functools.lru_cache(maxsize=8)
def _has_worker(python: str) -> bool:
    """Whether `python` can run the worker (rasterio and the worker package importable)."""
    try:
        probe = subprocess.run([python, "-c", "import rasterio, numpy, worker.cli"],  # noqa: S603
                               capture_output=True, timeout=60, check=False,
                               env=worker_process_env())
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def checkout_python() -> str | None:
    """The checkout's .venv python when this code runs from a checkout that has one."""
    project = Path(__file__).resolve().parents[3]
    for candidate in (project / ".venv" / "bin" / "python",
                      project / ".venv" / "Scripts" / "python.exe"):
        if candidate.is_file():
            return str(candidate)
    return None


def default_worker_python(extra: tuple[str, ...] = ()) -> str:
    """The Python that runs workers: $RSBATCH_WORKER_PYTHON, this one, the checkout's .venv,
    then `extra` (the plugin's own worker environment)."""
    configured = os.environ.get("RSBATCH_WORKER_PYTHON")
    if configured:
        return configured
    candidates = []
    if _is_python(sys.executable):
        candidates.append(sys.executable)
    candidates += [p for p in (checkout_python(), *extra) if p]
    for candidate in candidates:
        if os.path.exists(candidate) and _has_worker(candidate):
            return candidate
    raise DependencyMissing(
        "the local backend runs the worker with a Python that has rasterio: in QGIS, set up "
        "the worker environment (rsbatch Settings ▸ Set up, or Processing rsbatch:setupworker); "
        "in a checkout, `make setup` (it makes .venv); or set RSBATCH_WORKER_PYTHON (in QGIS: "
        "the plugin's worker Python setting) to such a Python")


def _worker(record: Record) -> ProcessId | None:
    return ProcessId.from_fields(record.extra.get(WORKER_PID), record.extra.get(WORKER_START))


def _live_worker(record: Record) -> ProcessId | None:
    """The recorded worker of a RUNNING cell when it still runs (else None)."""
    worker = _worker(record) if record.status is Status.RUNNING else None
    return worker if worker is not None and worker.alive() else None


class LocalBackend:
    """Runs jobs on this machine; the task log and job registry are one SQLite file."""

    name = "local"

    def __init__(self, *, task_log_path: str | None = None, workers: int | None = None,
                 worker_python: str | None = None) -> None:
        self.log = SqliteTaskLog(task_log_path or default_sqlite_path())
        if workers is not None and workers < 1:
            raise InvalidInput(f"workers must be 1 or more, not {workers}")
        self.workers = workers or os.cpu_count() or 1
        self._worker_python = worker_python

    def default_output(self) -> str:
        return normalize_output(os.path.join(os.path.expanduser("~"), "rsbatch-output"))

    @property
    def worker_python(self) -> str:
        if self._worker_python is None:
            self._worker_python = default_worker_python()
        return self._worker_python

    # --- the interface ---------------------------------------------------------------------
    def submit(self, job: Job, *, wait: bool = False,
               progress: Progress | None = None) -> JobStatus:
        for cell in job.cells:
            if not cell.output.startswith(("file://", "s3://")):
                raise InvalidInput(f"cell {cell.cell_id}: output {cell.output} is not usable")
        python = self.worker_python  # fail now, clearly, rather than in every cell
        folder = job_folder(job)
        write_job(folder, job, {"workers": self.workers})
        lock = self._lock(job)
        try:
            me = ProcessId.current()  # the runner until a detached one takes over
            self.log.save_job(job, self.name, {"workers": self.workers, "python": python,
                                               "supervisor": me.pid,
                                               "supervisor_start": me.start})
            self.log.register(job.tasks)
        except BaseException:
            lock.release()
            raise
        return self._start(job, lock, wait, progress)

    def adopt(self, path: str) -> str:
        """Make a job folder's job (job.json) known to this task log again, with a PENDING
        record for every cell that has none; returns the job id. For a lost task log."""
        job, options = read_job(path)
        if self.log.load_job(job.job_id) is None:
            self.log.save_job(job, self.name, {"workers": options.get("workers")})
        self.log.register(job.tasks)
        return job.job_id

    def status(self, job_id: str) -> JobStatus:
        job, _, _ = self._load(job_id)
        records = self.log.job_records(job_id)
        notes: list[str] = []
        if not unfinished(records):
            return JobStatus(job_id, tuple(records), self.name)
        lock = self._try_lock(job, 0, probe=True)
        if lock is None:  # a runner holds the job: what the log says is being made true
            return JobStatus(job_id, tuple(records), self.name)
        try:  # nothing runs this job any more (a crash, a reboot): say so in the log itself,
            # but a cell is dead only once its worker is provably gone
            reason = ("the local runner stopped before this cell finished; "
                      f"`rsbatch resume {job_id}` runs it again")
            ending, failed = [], False
            for record in unfinished(self.log.job_records(job_id)):
                if _live_worker(record):
                    ending.append(record.cell_id)
                else:
                    move(self.log, record.task_id, Status.FAILED, error=reason)
                    failed = True
            if failed:
                notes.append(reason)
            if ending:
                notes.append(f"the local runner is gone but the worker of {', '.join(ending)} "
                             f"still runs; `rsbatch cancel {job_id}` stops it")
        finally:
            lock.release()
        return JobStatus(job_id, tuple(self.log.job_records(job_id)), self.name, tuple(notes))

    def cancel(self, job_id: str) -> JobStatus:
        job, _, _ = self._load(job_id)
        self.log.update_handle(job_id, cancel=True)
        # a runner sees the flag, stops its workers, records them and lets the lock go
        lock = self._try_lock(job, 30, probe=True)
        try:
            for record in unfinished(self.log.job_records(job_id)):
                worker = _live_worker(record)  # an orphan of a runner that died
                if worker is not None:
                    worker.terminate()
                move(self.log, record.task_id, Status.CANCELLED, error="cancelled by the user")
            sweep_scratch(job_folder(job))
        finally:
            if lock is not None:
                lock.release()
        return JobStatus(job_id, tuple(self.log.job_records(job_id)), self.name)

    def resume(self, job_id: str, *, wait: bool = False,
               progress: Progress | None = None) -> JobStatus:
        job, _, _ = self._load(job_id)
        # a runner whose cells have all ended is on its way out: let it go first; otherwise
        # only ride out another process's short look (status, cancel) at the lock
        patience = 2 if unfinished(self.log.job_records(job_id)) else 30
        lock = self._try_lock(job, patience)
        if lock is None:
            raise SupervisorLock(job_folder(job)).busy(job_id)
        try:
            me = ProcessId.current()
            self.log.update_handle(job_id, cancel=None, supervisor=me.pid,
                                   supervisor_start=me.start)
            self._settle(job)
            records = self.log.job_records(job_id)
            rerun = []
            for record in records:
                if record.status in (Status.FAILED, Status.CANCELLED):
                    move(self.log, record.task_id, Status.PENDING)
                    rerun.append(record.cell_id)
            # units made without a cell that now runs again are made again once it ends
            for unit_id, reason in units_to_remake(job, records, rerun).items():
                self.log.remake(task_id_for(job_id, unit_id), reason)
            self.log.register(job.tasks)  # cells whose records were lost
        except BaseException:
            lock.release()
            raise
        return self._start(job, lock, wait, progress)

    def wait(self, job_id: str, progress: Progress | None = None, interval: float = 1.0,
             timeout: float | None = None) -> JobStatus:
        status = poll(lambda: self.status(job_id), progress, interval, timeout)
        if status.finished:
            # done means the runner is gone too, not only that every cell has ended
            lock = self._try_lock(self._load(job_id)[0], 10, probe=True)
            if lock is not None:
                lock.release()
        return status

    def jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.log.list_jobs(limit)

    # --- running ---------------------------------------------------------------------------
    def _load(self, job_id: str) -> tuple[Job, str, dict]:
        found = self.log.load_job(job_id)
        if found is None:
            raise InvalidInput(f"no job {job_id} in the local task log {self.log.path}")
        return found

    @staticmethod
    def _lock(job: Job) -> SupervisorLock:
        lock = SupervisorLock(job_folder(job))
        if not lock.acquire():
            raise lock.busy(job.job_id)
        return lock

    def _settle(self, job: Job) -> None:
        """Under the job's lock, before running it again: no worker of an earlier runner may
        live on beside the new ones (one worker per cell), and their cells are FAILED."""
        reason = "the local runner stopped before this cell finished"
        for record in self.log.job_records(job.job_id):
            if record.status is not Status.RUNNING:
                continue
            worker = _live_worker(record)
            if worker is not None:
                worker.terminate()
            move(self.log, record.task_id, Status.FAILED, error=reason)
        sweep_scratch(job_folder(job))

    def _start(self, job: Job, lock: SupervisorLock, wait: bool,
               progress: Progress | None) -> JobStatus:
        """Run the job here (`wait`) or in a detached runner that takes the lock over."""
        try:
            if wait:
                self.supervise(job.job_id, progress, lock=lock)
            else:
                self._spawn_supervisor(job, lock)
        finally:
            lock.release()
        return self.status(job.job_id)

    def _spawn_supervisor(self, job: Job, lock: SupervisorLock) -> None:
        folder = job_folder(job)
        (folder / "logs").mkdir(parents=True, exist_ok=True)
        command = [self.worker_python, "-m", "qgis_rsbatch.core.backends.local", "supervise",
                   job.job_id, "--task-log", self.log.path, "--workers", str(self.workers),
                   "--worker-python", self.worker_python]
        fds: tuple[int, ...] = ()
        if lock.fd is not None:  # the child inherits the held lock: no moment without it
            command += ["--lock-fd", str(lock.fd)]
            fds = (lock.fd,)
        with open(folder / "logs" / "supervisor.log", "a") as out:
            process = subprocess.Popen(  # noqa: S603 - our own module, our own arguments
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, pass_fds=fds,
                env={**worker_process_env(), "RSBATCH_HOME": user_data_dir()},
            )
        lock.mark(process.pid)
        child = ProcessId.of(process.pid)
        self.log.update_handle(job.job_id, supervisor=child.pid, supervisor_start=child.start)

    def supervise(self, job_id: str, progress: Progress | None = None,
                  lock: SupervisorLock | None = None) -> None:
        """Run the job's PENDING cells, `workers` at a time, until none is left; holding the
        job's lock (taken here unless given)."""
        job, _, _ = self._load(job_id)
        own = lock is None
        held = self._lock(job) if lock is None else lock
        held.mark(os.getpid())
        me = ProcessId.current()
        self.log.update_handle(job_id, supervisor=me.pid, supervisor_start=me.start)
        try:
            Supervisor(self.log, job, job_folder(job), self.worker_python,
                       self.workers).run(progress)
        finally:
            with contextlib.suppress(TaskLogUnavailable):
                self.log.update_handle(job_id, supervisor=None, supervisor_start=None)
            if own:
                held.release()

    @staticmethod
    def _try_lock(job: Job, patience: float, probe: bool = False) -> SupervisorLock | None:
        """The job's lock if it becomes free within `patience` seconds, else None."""
        lock = SupervisorLock(job_folder(job))
        deadline = time.monotonic() + patience
        while not lock.acquire(probe=probe):
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_SECONDS)
        return lock


def main(argv: list[str] | None = None) -> int:
    """`python -m qgis_rsbatch.core.backends.local supervise JOB_ID …` (the detached runner)."""
    parser = argparse.ArgumentParser(prog="rsbatch-local")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("supervise")
    run.add_argument("job_id")
    run.add_argument("--task-log", required=True)
    run.add_argument("--workers", type=int, default=None)
    run.add_argument("--worker-python", default=None)
    run.add_argument("--lock-fd", type=int, default=None,
                     help="the job's supervisor lock, already held (handed over by resume)")
    args = parser.parse_args(argv)
    backend = LocalBackend(task_log_path=args.task_log, workers=args.workers,
                           worker_python=args.worker_python)
    lock = None
    if args.lock_fd is not None:
        job, _, _ = backend._load(args.job_id)
        lock = SupervisorLock.from_fd(job_folder(job), args.lock_fd)
    try:
        backend.supervise(args.job_id, lock=lock)
    except JobBusy as exc:
        print(f"rsbatch-local: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        return 128 + signal.SIGTERM
    finally:
        if lock is not None:
            lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
