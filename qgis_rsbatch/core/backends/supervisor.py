"""The local runner's loop: start a job's PENDING cells as worker processes, reap them.

One supervisor per job (it holds the job folder's lock, see jobfolder). Each worker runs
`python -m worker.cli --task-log … run -` in its own session with the cell on stdin, its
stdout and stderr appended to `<job folder>/logs/<cell_id>.log`, and is told to die with
the supervisor (core.processes). A worker that could not record its own end (a signal, a
crash) is recorded FAILED by the supervisor with the signal and its log's last lines.
SIGTERM or Ctrl-C stops the workers and records their cells CANCELLED; scratch files of
workers that are gone are swept at start, after every failed worker and at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .. import scratch
from ..contract import Cell, Job, Status
from ..errors import TaskLogUnavailable, Terminated
from ..processes import SUPERVISOR_ENV, die_with_parent, signal_group
from ..tasklog.schema import utc_now
from ..workerenv import worker_process_env
from .base import Progress, move
from .jobfolder import cell_log

POLL_SECONDS = 0.2
#: how many of a dead worker's last log lines its FAILED record quotes
TAIL_LINES = 3


@dataclass
class _Running:
    cell: Cell
    process: subprocess.Popen
    log: IO[str]
    log_path: Path
    log_start: int  # where this attempt's lines begin in the (appended) log


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.nice(5)  # keep the desktop responsive
    die_with_parent()


def worker_command(python: str, log_uri: str) -> list[str]:
    return [python, "-m", "worker.cli", "--task-log", log_uri, "run", "-"]


class Supervisor:
    """Runs one job's PENDING cells, `workers` at a time, until none is left."""

    def __init__(self, log: Any, job: Job, folder: Path, worker_python: str,
                 workers: int) -> None:
        self.log, self.job, self.folder = log, job, folder
        self.python, self.workers = worker_python, workers
        threads = max(1, (os.cpu_count() or 1) // workers)
        # our code on PYTHONPATH: a worker environment holds only third-party wheels
        self.env = {**worker_process_env(), "RSBATCH_GDAL_THREADS": str(threads),
                    SUPERVISOR_ENV: str(os.getpid())}

    def run(self, progress: Progress | None = None) -> None:
        job_id = self.job.job_id
        cells = {cell.cell_id: cell for cell in self.job.cells}
        queue = [cells[r.cell_id] for r in self.log.job_records(job_id)
                 if r.status is Status.PENDING and r.cell_id in cells]
        running: dict[str, _Running] = {}
        scratch.sweep(str(self.folder))
        last_seen = None
        with _sigterm_raises():
            try:
                while queue or running:
                    if self._cancel_requested():
                        self._stop_all(running, queue, "cancelled by the user")
                        break
                    while queue and len(running) < self.workers:
                        cell = queue.pop(0)
                        record = self.log.get(cell.task_id)
                        if record is not None and record.status is Status.PENDING:
                            running[cell.cell_id] = self._launch(cell)
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
            except BaseException as exc:
                reason = ("the local runner was stopped (SIGTERM)" if isinstance(exc, Terminated)
                          else "the local runner was interrupted")
                self._stop_all(running, queue, reason)
                raise
            finally:
                scratch.sweep(str(self.folder))
        if progress:
            progress(self.log.job_records(job_id))

    # --- one worker ------------------------------------------------------------------------
    def _launch(self, cell: Cell) -> _Running:
        path = cell_log(self.folder, cell.cell_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        log = open(path, "a")  # noqa: SIM115 - closed when the worker is reaped
        log.write(f"--- {utc_now()} attempt started by the rsbatch supervisor "
                  f"(pid {os.getpid()}) ---\n")
        log.flush()
        start = log.tell()
        kwargs: dict[str, Any] = {"start_new_session": True}
        if os.name == "posix":
            kwargs["preexec_fn"] = _child_setup
        process = subprocess.Popen(  # noqa: S603 - our own module, our own arguments
            worker_command(self.python, self.log.uri), stdin=subprocess.PIPE, stdout=log,
            stderr=subprocess.STDOUT, text=True, env=self.env, **kwargs)
        if process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write(json.dumps(cell.to_dict()))
                process.stdin.close()
        return _Running(cell, process, log, path, start)

    def _reap(self, run: _Running) -> None:
        """A worker ended: if it could not record its own end, record it for it."""
        run.log.close()
        code = run.process.returncode
        if code != 0:
            scratch.sweep(str(self.folder), dead=frozenset({run.process.pid}))
        record = self.log.get(run.cell.task_id)
        if record is None or record.status.finished:
            return
        move(self.log, run.cell.task_id, Status.FAILED,
             error=death_reason(code, run.log_path, run.log_start))

    def _cancel_requested(self) -> bool:
        found = self.log.load_job(self.job.job_id)
        return bool(found and found[2].get("cancel"))

    def _stop_all(self, running: dict[str, _Running], queue: list[Cell], reason: str) -> None:
        """SIGTERM every worker (they remove their scratch files), then record the cells."""
        for run in running.values():
            signal_group(run.process.pid, signal.SIGTERM)
        for run in running.values():
            try:
                run.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                run.process.kill()
                run.process.wait()
            run.log.close()
        for cell in [run.cell for run in running.values()] + queue:
            with contextlib.suppress(TaskLogUnavailable):  # a lost log: nothing to record in
                move(self.log, cell.task_id, Status.CANCELLED, error=reason)
        scratch.sweep(str(self.folder))
        running.clear()
        queue.clear()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While supervising, SIGTERM unwinds like Ctrl-C, so the workers are stopped first."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (QGIS runs a detached supervisor)
        return

    def stop(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated("stopped by SIGTERM")

    previous: Callable | int | None = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)


def death_reason(code: int, log_path: Path, start: int = 0) -> str:
    """Why a worker ended without recording it: the signal or exit code, the last lines of
    its own log for this attempt, and where that log is."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        reason = f"the worker process was killed by {name}"
        if name == "SIGKILL":
            reason += " (out of memory?)"
        tail = log_tail(log_path, start)
        reason += f"; last lines of its log: {tail}" if tail else "; its log is empty"
    else:
        reason = f"the worker process exited with code {code}"
        line = _error_line(log_path, start)
        if line:
            reason += f": {line}"
    return f"{reason} (log: {log_path})"


def _attempt_lines(path: Path, start: int) -> list[str]:
    try:
        with open(path, errors="replace") as fh:
            fh.seek(start)
            return [line.strip() for line in fh if line.strip()]
    except OSError:
        return []


def log_tail(path: Path, start: int = 0, lines: int = TAIL_LINES) -> str:
    """The last `lines` non-empty lines written since `start`, joined by ' | '."""
    return " | ".join(line[:200] for line in _attempt_lines(path, start)[-lines:])


def _error_line(path: Path, start: int) -> str:
    lines = _attempt_lines(path, start)
    errors = [line for line in lines if "error" in line.lower()]
    line = (errors or lines or [""])[-1]
    return line.removeprefix("rsbatch-worker: error: ")[:300]
