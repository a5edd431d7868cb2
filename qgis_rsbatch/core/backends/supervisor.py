"""The local runner's loop: start a job's PENDING cells as worker processes, reap them, then
start each PENDING reduce unit (mosaic, composite) once every input it reads is final.

One supervisor per job (it holds the job folder's lock, see jobfolder). Each worker runs
`python -m worker.cli --task-log … run -` (a cell) or `… reduce -` (a unit) in its own
session with the cell or unit on stdin, its stdout and stderr appended to
`<job folder>/logs/<cell or unit id>.log`, and is told to die with
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

from ..contract import (
    INPUT_FINAL,
    Cell,
    Job,
    ReduceUnit,
    Status,
    inputs_not_ended,
    task_key,
)
from ..errors import TaskLogUnavailable, Terminated
from ..processes import SUPERVISOR_ENV, die_with_parent, signal_group
from ..tasklog.schema import Record, utc_now
from ..workerenv import worker_process_env
from .base import Progress, move
from .jobfolder import cell_log, sweep_scratch

POLL_SECONDS = 0.2
#: how many of a dead worker's last log lines its FAILED record quotes
TAIL_LINES = 3


@dataclass
class _Running:
    task: Cell | ReduceUnit
    process: subprocess.Popen
    log: IO[str]
    log_path: Path
    log_start: int  # where this attempt's lines begin in the (appended) log


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.nice(5)  # keep the desktop responsive
    die_with_parent()


def worker_command(python: str, log_uri: str, reduce: bool = False) -> list[str]:
    return [python, "-m", "worker.cli", "--task-log", log_uri, "reduce" if reduce else "run",
            "-"]


class Supervisor:
    """Runs one job's PENDING cells, `workers` at a time, then each PENDING reduce unit once
    its inputs are final (SUCCEEDED, SKIPPED or FAILED), until none is left."""

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
        records = self.log.job_records(job_id)
        pending = {r.cell_id for r in records if r.status is Status.PENDING}
        queue: list[Cell | ReduceUnit] = [c for c in self.job.cells if c.cell_id in pending]
        waiting = [u for u in self.job.units if u.unit_id in pending]
        running: dict[str, _Running] = {}
        sweep_scratch(self.folder)
        last_seen = None
        with _sigterm_raises():
            try:
                while queue or running or waiting:
                    if self._cancel_requested():
                        self._stop_all(running, [*queue, *waiting], "cancelled by the user")
                        break
                    records = self.log.job_records(job_id) if waiting or progress else []
                    if waiting:
                        queue += self._ready(waiting, records, bool(queue or running))
                    while queue and len(running) < self.workers:
                        task = queue.pop(0)
                        record = self.log.get(task.task_id)
                        if record is not None and record.status is Status.PENDING:
                            running[task_key(task)] = self._launch(task)
                    for key, run in list(running.items()):
                        if run.process.poll() is not None:
                            self._reap(run)
                            del running[key]
                    if progress and records != last_seen:
                        progress(records)
                        last_seen = records
                    time.sleep(POLL_SECONDS)
            except BaseException as exc:
                reason = ("the local runner was stopped (SIGTERM)" if isinstance(exc, Terminated)
                          else "the local runner was interrupted")
                self._stop_all(running, [*queue, *waiting], reason)
                raise
            finally:
                sweep_scratch(self.folder)
        if progress:
            progress(self.log.job_records(job_id))

    def _ready(self, waiting: list[ReduceUnit], records: list[Record],
               busy: bool) -> list[ReduceUnit]:
        """The waiting units whose inputs are all final, taken out of `waiting`. When nothing
        runs or waits to start (`busy` off) and an input can no longer become final (it was
        cancelled, or has no record), the unit is FAILED saying which."""
        status = {r.cell_id: r.status for r in records}
        final = INPUT_FINAL
        ready = []
        for unit in list(waiting):
            if status.get(unit.unit_id) is not Status.PENDING:
                waiting.remove(unit)  # cancelled or ended meanwhile: nothing to run
                continue
            stuck = [i for i in unit.inputs if status.get(i) not in final]
            if not stuck:
                waiting.remove(unit)
                ready.append(unit)
            elif not busy and not any(status.get(i) in (Status.PENDING, Status.RUNNING)
                                      for i in stuck):
                waiting.remove(unit)
                move(self.log, unit.task_id, Status.FAILED, error=inputs_not_ended(
                    self.job.job_id, {i: status.get(i) for i in stuck}))
        return ready

    # --- one worker ------------------------------------------------------------------------
    def _launch(self, task: Cell | ReduceUnit) -> _Running:
        path = cell_log(self.folder, task_key(task))
        path.parent.mkdir(parents=True, exist_ok=True)
        log = open(path, "a")  # noqa: SIM115 - closed when the worker is reaped
        log.write(f"--- {utc_now()} attempt started by the rsbatch supervisor "
                  f"(pid {os.getpid()}) ---\n")
        log.flush()
        start = log.tell()
        kwargs: dict[str, Any] = {"start_new_session": True}
        if os.name == "posix":
            kwargs["preexec_fn"] = _child_setup
        command = worker_command(self.python, self.log.uri, isinstance(task, ReduceUnit))
        process = subprocess.Popen(  # noqa: S603 - our own module, our own arguments
            command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, text=True,
            env=self.env, **kwargs)
        if process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write(json.dumps(task.to_dict()))
                process.stdin.close()
        return _Running(task, process, log, path, start)

    def _reap(self, run: _Running) -> None:
        """A worker ended: if it could not record its own end, record it for it."""
        run.log.close()
        code = run.process.returncode
        if code != 0:
            sweep_scratch(self.folder, dead=frozenset({run.process.pid}))
        record = self.log.get(run.task.task_id)
        if record is None or record.status.finished:
            return
        move(self.log, run.task.task_id, Status.FAILED,
             error=death_reason(code, run.log_path, run.log_start))

    def _cancel_requested(self) -> bool:
        found = self.log.load_job(self.job.job_id)
        return bool(found and found[2].get("cancel"))

    def _stop_all(self, running: dict[str, _Running], queue: list[Cell | ReduceUnit],
                  reason: str) -> None:
        """SIGTERM every worker (they remove their scratch files), then record the cells and
        units, running or not yet started."""
        for run in running.values():
            signal_group(run.process.pid, signal.SIGTERM)
        for run in running.values():
            try:
                run.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                run.process.kill()
                run.process.wait()
            run.log.close()
        for task in [run.task for run in running.values()] + queue:
            with contextlib.suppress(TaskLogUnavailable):  # a lost log: nothing to record in
                move(self.log, task.task_id, Status.CANCELLED, error=reason)
        sweep_scratch(self.folder)
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
