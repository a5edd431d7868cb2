"""A local job's own folder: its cells (job.json), its workers' logs, its supervisor lock.

The folder is `<output>/<job_id>/` (beside the outputs) when the outputs are local, else a
folder of the user data directory. What is kept there makes a job independent of the task
log: `job.json` is written at submit, so `rsbatch resume <folder>` can rebuild the records
after the task log was lost; `logs/<cell_id>.log` holds each worker's output, appended
across attempts; `.supervisor.lock` is held (flock) by the one process supervising the
job, and the OS releases it when that process dies, however it dies.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .. import scratch
from ..contract import LOG_FOLDER, REDUCE_KINDS, Job
from ..errors import InvalidInput, JobBusy, OutputFailed
from ..scratch import scratch_path
from ..tasklog import user_data_dir

JOB_FILE = "job.json"
LOCK_FILE = ".supervisor.lock"
LOG_DIR = LOG_FOLDER  # the contract names it (Cell.log_uri)
#: what a job folder holds besides outputs and STAC items (a sweep leaves these alone)
BOOKKEEPING = frozenset({JOB_FILE, LOCK_FILE, LOG_DIR})


def job_folder(job: Job) -> Path:
    """Where a job's bookkeeping lives: beside its outputs when they are local files."""
    output = job.cells[0].output if job.cells else ""
    if output.startswith("file://"):
        return Path(urlparse(output).path) / job.job_id
    return Path(user_data_dir()) / "jobs" / job.job_id


def cell_log(folder: Path, cell_id: str) -> Path:
    return folder / LOG_DIR / f"{cell_id}.log"


def sweep_scratch(folder: Path, dead: frozenset[int] | None = None) -> list[str]:
    """Remove the scratch files of writers that are gone: beside the cells' outputs and in
    the reduce units' folders (<job folder>/mosaic, <job folder>/composite)."""
    removed = scratch.sweep(str(folder), dead=dead)
    for kind in REDUCE_KINDS:
        removed += scratch.sweep(str(folder / kind), dead=dead)
    return removed


def write_job(folder: Path, job: Job, options: dict[str, Any]) -> None:
    """Write job.json atomically (a scratch file renamed into place)."""
    path = folder / JOB_FILE
    tmp = scratch_path(str(path))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"job": job.to_dict(), "backend": "local", "options": options}, fh,
                      indent=1)
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise OutputFailed(f"cannot write {path}: {exc.strerror}") from exc


def read_job(path: str) -> tuple[Job, dict[str, Any]]:
    """The job and its backend options from a job folder (or its job.json)."""
    file = Path(path)
    if file.is_dir():
        file = file / JOB_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return Job.from_dict(data["job"]), dict(data.get("options") or {})
    except FileNotFoundError as exc:
        raise InvalidInput(f"{path} is not a job folder: it has no {JOB_FILE}") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{file} is not a readable job file: {exc}") from exc


class SupervisorLock:
    """The right to supervise one job: an exclusive flock on `<folder>/.supervisor.lock`.

    Taking it is one atomic step, so of several `resume`s racing only one wins; the
    kernel drops it when the holder dies. The holder's pid is written into the file for
    messages only. The open descriptor may be handed to a detached supervisor
    (`from_fd`), which then holds the lock without a moment of it being free.
    Without fcntl (Windows) the lock is advisory only: it is always granted.
    """

    def __init__(self, folder: Path, fd: int | None = None) -> None:
        self.path = folder / LOCK_FILE
        self.fd = fd

    @classmethod
    def from_fd(cls, folder: Path, fd: int) -> SupervisorLock:
        return cls(folder, fd)

    def acquire(self, blocking: bool = False, probe: bool = False) -> bool:
        """Take the lock; False when another process holds it (and `blocking` is off).

        A `probe` (is a runner alive?) neither makes a missing folder nor fails on one it
        may not write: no runner can hold a lock there, so the answer is "free", unlocked.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return True
        try:
            if not probe:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if probe:
                return True
            raise OutputFailed(f"cannot lock the job folder {self.path.parent}: "
                               f"{exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        if not probe:
            self.mark(os.getpid())
        return True

    def mark(self, pid: int) -> None:
        """Write the holder's pid into the lock file (for `holder()`)."""
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(pid).encode(), 0)

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def busy(self, job_id: str) -> JobBusy:
        return JobBusy(f"job {job_id} is already being run by another rsbatch process "
                       f"(pid {self.holder()}): follow it with `rsbatch status {job_id}`")

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
