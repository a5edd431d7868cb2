"""The embedded default: a job's cells run by worker processes on this machine.

A small supervisor runs the cells, `workers` at a time, each as `rsbatch-worker run -` in
its own process with the cell on stdin; every transition lands in the SQLite task log.
The supervisor runs in the foreground (`rsbatch run`) or detached (the QGIS plugin, which
then only polls the log), so a job survives the window that started it. A worker that
crashes leaves its cell FAILED with the reason and the others go on; cancelling kills the
running workers and marks every unfinished cell CANCELLED; resuming reruns only the cells
that did not succeed (finished outputs are never rewritten: the worker skips them).

The worker needs rasterio, which QGIS's own Python lacks, so workers run with a chosen
Python (`worker_python`): $RSBATCH_WORKER_PYTHON, this interpreter when it has rasterio,
or the project's .venv.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..contract import Cell, Job, Status, normalize_output
from ..errors import DependencyMissing, InvalidInput
from ..tasklog import default_sqlite_path, user_data_dir
from ..tasklog.sqlite import SqliteTaskLog
from .base import JobStatus, Progress, move, poll, unfinished

POLL_SECONDS = 0.2


def _is_python(path: str) -> bool:
    return Path(path).name.lower().startswith("python")


@functools.lru_cache(maxsize=8)
def _has_worker(python: str) -> bool:
    """Whether `python` can run the worker (rasterio and the worker package importable)."""
    try:
        probe = subprocess.run([python, "-c", "import rasterio, numpy, worker.cli"],  # noqa: S603
                               capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def default_worker_python() -> str:
    """The Python that runs workers: $RSBATCH_WORKER_PYTHON, this one, or the project's .venv."""
    configured = os.environ.get("RSBATCH_WORKER_PYTHON")
    if configured:
        return configured
    candidates = []
    if _is_python(sys.executable):
        candidates.append(sys.executable)
    project = Path(__file__).resolve().parents[3]
    candidates += [str(project / ".venv" / "bin" / "python"),
                   str(project / ".venv" / "Scripts" / "python.exe")]
    for candidate in candidates:
        if os.path.exists(candidate) and _has_worker(candidate):
            return candidate
    raise DependencyMissing(
        "the local backend runs the worker with a Python that has rasterio and rsbatch's "
        "worker: run `make setup` in the rsbatch folder (it makes .venv), or set "
        "RSBATCH_WORKER_PYTHON (in QGIS: the plugin's worker Python setting) to such a Python")


def _worker_command(python: str, log_uri: str) -> list[str]:
    return [python, "-m", "worker.cli", "--task-log", log_uri, "-q", "run", "-"]


def _lower_priority() -> None:  # pragma: no cover - runs in the child
    os.nice(5)


@dataclass
class _Running:
    cell: Cell
    process: subprocess.Popen
    log: IO[str]
    log_path: str


class LocalBackend:
    """Runs jobs on this machine; the task log and job registry are one SQLite file."""

    name = "local"

    def __init__(self, *, task_log_path: str | None = None, workers: int | None = None,
                 worker_python: str | None = None) -> None:
        self.log = SqliteTaskLog(task_log_path or default_sqlite_path())
        self.workers = max(1, workers or os.cpu_count() or 1)
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
        self.log.save_job(job, self.name, {"workers": self.workers, "python": python})
        self.log.register(job.cells)
        return self._start(job.job_id, wait, progress)

    def status(self, job_id: str) -> JobStatus:
        _, _, handle = self._load(job_id)
        records = self.log.job_records(job_id)
        notes = []
        if unfinished(records) and not _alive(handle.get("supervisor")):
            # nothing runs this job any more (a crash, a reboot): say so in the log itself
            reason = ("the local runner stopped before this cell finished; "
                      f"`rsbatch resume {job_id}` runs it again")
            for record in unfinished(records):
                move(self.log, record.task_id, Status.FAILED, error=reason)
            records = self.log.job_records(job_id)
            notes.append(reason)
        return JobStatus(job_id, tuple(records), self.name, tuple(notes))

    def cancel(self, job_id: str) -> JobStatus:
        self._load(job_id)
        handle = self.log.update_handle(job_id, cancel=True)
        for record in self.log.job_records(job_id):
            if record.status is Status.PENDING or (
                    record.status is Status.RUNNING and not _alive(handle.get("supervisor"))):
                move(self.log, record.task_id, Status.CANCELLED, error="cancelled by the user")
        if _alive(handle.get("supervisor")):
            self._wait_for_supervisor(handle["supervisor"], 30)
        return JobStatus(job_id, tuple(self.log.job_records(job_id)), self.name)

    def resume(self, job_id: str, *, wait: bool = False,
               progress: Progress | None = None) -> JobStatus:
        job, _, handle = self._load(job_id)
        if _alive(handle.get("supervisor")) and not unfinished(self.log.job_records(job_id)):
            # every cell has ended and the runner is on its way out: let it go first
            self._wait_for_supervisor(handle["supervisor"], 30)
            job, _, handle = self._load(job_id)
        if _alive(handle.get("supervisor")):
            raise InvalidInput(f"job {job_id} is still running")
        for record in self.log.job_records(job_id):
            if record.status in (Status.FAILED, Status.CANCELLED):
                move(self.log, record.task_id, Status.PENDING)
        self.log.update_handle(job_id, cancel=None)
        self.log.register(job.cells)  # cells whose records were lost
        return self._start(job_id, wait, progress)

    def wait(self, job_id: str, progress: Progress | None = None, interval: float = 1.0,
             timeout: float | None = None) -> JobStatus:
        status = poll(lambda: self.status(job_id), progress, interval, timeout)
        if status.finished:
            # done means the runner is gone too, not only that every cell has ended
            pid = self._load(job_id)[2].get("supervisor")
            if pid is not None:
                self._wait_for_supervisor(pid, 10)
        return status

    def jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.log.list_jobs(limit)

    # --- running ---------------------------------------------------------------------------
    def _load(self, job_id: str) -> tuple[Job, str, dict]:
        found = self.log.load_job(job_id)
        if found is None:
            raise InvalidInput(f"no job {job_id} in the local task log {self.log.path}")
        return found

    def _start(self, job_id: str, wait: bool, progress: Progress | None) -> JobStatus:
        if wait:
            self.supervise(job_id, progress)
            return self.status(job_id)
        self._spawn_supervisor(job_id)
        return self.status(job_id)

    def _spawn_supervisor(self, job_id: str) -> None:
        logs = Path(user_data_dir()) / "logs" / job_id
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / "supervisor.log", "a") as out:
            process = subprocess.Popen(  # noqa: S603 - our own module, our own arguments
                [self.worker_python, "-m", "qgis_rsbatch.core.backends.local", "supervise",
                 job_id, "--task-log", self.log.path, "--workers", str(self.workers),
                 "--worker-python", self.worker_python],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
                env={**os.environ, "RSBATCH_HOME": user_data_dir()},
            )
        self.log.update_handle(job_id, supervisor=process.pid)

    def supervise(self, job_id: str, progress: Progress | None = None) -> None:
        """Run the job's PENDING cells, `workers` at a time, until none is left."""
        job, _, _ = self._load(job_id)
        self.log.update_handle(job_id, supervisor=os.getpid())
        cells = {cell.cell_id: cell for cell in job.cells}
        queue = [cells[r.cell_id] for r in self.log.job_records(job_id)
                 if r.status is Status.PENDING and r.cell_id in cells]
        running: dict[str, _Running] = {}
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        env = {**os.environ, "RSBATCH_GDAL_THREADS": str(threads)}
        logs = Path(user_data_dir()) / "logs" / job_id
        logs.mkdir(parents=True, exist_ok=True)
        last_seen = None
        try:
            while queue or running:
                if self._cancel_requested(job_id):
                    self._stop_all(running, queue)
                    break
                while queue and len(running) < self.workers:
                    cell = queue.pop(0)
                    record = self.log.get(cell.task_id)
                    if record is None or record.status is not Status.PENDING:
                        continue
                    running[cell.cell_id] = self._launch(cell, logs, env)
                for cell_id, run in list(running.items()):
                    if run.process.poll() is not None:
                        self._reap(run)
                        del running[cell_id]
                if progress:
                    records = self.log.job_records(job_id)
                    if records != last_seen:
                        progress(records)
                        last_seen = records
                time.sleep(POLL_SECONDS)
        except BaseException:
            self._stop_all(running, queue, reason="the local runner was interrupted")
            raise
        finally:
            self.log.update_handle(job_id, supervisor=None)
        if progress:
            progress(self.log.job_records(job_id))

    def _launch(self, cell: Cell, logs: Path, env: dict[str, str]) -> _Running:
        log_path = logs / f"{cell.cell_id}.log"
        log = open(log_path, "w")  # noqa: SIM115 - closed when the worker is reaped
        kwargs: dict[str, Any] = {"start_new_session": True}
        if os.name == "posix":
            kwargs["preexec_fn"] = _lower_priority  # keep the desktop responsive
        process = subprocess.Popen(  # noqa: S603
            _worker_command(self.worker_python, self.log.uri), stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=log, text=True, env=env, **kwargs)
        if process.stdin is not None:
            process.stdin.write(json.dumps(cell.to_dict()))
            process.stdin.close()
        return _Running(cell, process, log, str(log_path))

    def _reap(self, run: _Running) -> None:
        """A worker ended: if it could not record its own end, record it for it."""
        run.log.close()
        code = run.process.returncode
        record = self.log.get(run.cell.task_id)
        if record is None or record.status.finished:
            return
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ \
                else str(-code)
            reason = f"the worker process was killed by {name}"
            if name == "SIGKILL":
                reason += " (out of memory?)"
        else:
            reason = f"the worker process exited with code {code}"
        tail = _last_line(run.log_path)
        if tail:
            reason += f": {tail}"
        move(self.log, run.cell.task_id, Status.FAILED, error=reason)

    def _cancel_requested(self, job_id: str) -> bool:
        found = self.log.load_job(job_id)
        return bool(found and found[2].get("cancel"))

    def _stop_all(self, running: dict[str, _Running], queue: list[Cell],
                  reason: str = "cancelled by the user") -> None:
        for run in running.values():
            _kill(run.process)
        for run in running.values():
            try:
                run.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                run.process.kill()
            run.log.close()
            move(self.log, run.cell.task_id, Status.CANCELLED, error=reason)
        for cell in queue:
            move(self.log, cell.task_id, Status.CANCELLED, error=reason)
        running.clear()
        queue.clear()

    @staticmethod
    def _wait_for_supervisor(pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)


def _kill(process: subprocess.Popen) -> None:
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.terminate()
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    if os.name != "posix":
        return True  # pragma: no cover - on Windows the supervisor clears its own pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of this process is not alive
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _last_line(path: str) -> str:
    try:
        with open(path) as fh:
            lines = [line.strip() for line in fh if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if "error" in line.lower()]
    line = (errors or lines or [""])[-1]
    return line.removeprefix("rsbatch-worker: error: ")[:300]


def main(argv: list[str] | None = None) -> int:
    """`python -m qgis_rsbatch.core.backends.local supervise JOB_ID …` (the detached runner)."""
    parser = argparse.ArgumentParser(prog="rsbatch-local")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("supervise")
    run.add_argument("job_id")
    run.add_argument("--task-log", required=True)
    run.add_argument("--workers", type=int, default=None)
    run.add_argument("--worker-python", default=None)
    args = parser.parse_args(argv)
    backend = LocalBackend(task_log_path=args.task_log, workers=args.workers,
                           worker_python=args.worker_python)
    backend.supervise(args.job_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
