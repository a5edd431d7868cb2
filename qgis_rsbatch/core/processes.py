"""Which process is which: a pid plus its start time, alive or provably gone.

A pid alone is a poor name for a process: after it ends the kernel may give the number to
another one. The local backend therefore records a worker's and a supervisor's pid with
its start time (Linux: field 22 of /proc/<pid>/stat, clock ticks since boot) and calls a
process gone only when no process has that pid, or the one that has it started at another
time. Where /proc is missing the start time is None and liveness falls back to the pid.

Workers also watch their supervisor (`watch_parent`), so that none outlives it unnoticed:
on Linux the kernel sends SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG), elsewhere
a thread notices the parent's pid change. Stdlib only: this runs in the worker, the
supervisor and QGIS's Python alike.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

#: environment variable naming the supervisor a worker belongs to (its pid)
SUPERVISOR_ENV = "RSBATCH_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None (no /proc, or gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].startswith("Z")


def pid_alive(pid: Any) -> bool:
    """Whether some process (not a zombie) has this pid."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if os.name != "posix":  # pragma: no cover - Windows: no signal 0; assume it may live
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


@dataclass(frozen=True)
class ProcessId:
    """A process named so that a reused pid cannot pass for it."""

    pid: int
    start: int | None = None

    @classmethod
    def of(cls, pid: int) -> ProcessId:
        return cls(pid, start_time(pid))

    @classmethod
    def current(cls) -> ProcessId:
        return cls.of(os.getpid())

    @classmethod
    def from_fields(cls, pid: Any, start: Any) -> ProcessId | None:
        """From a task-log record or job handle (None when no pid was recorded)."""
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            return None
        return cls(pid, start if isinstance(start, int) else None)

    def alive(self) -> bool:
        """True unless the process is provably gone."""
        if not pid_alive(self.pid):
            return False
        if self.start is None:
            return True
        now = start_time(self.pid)
        return now is None or now == self.start

    def terminate(self, grace: float = 10.0) -> bool:
        """SIGTERM the process's group (a worker leads its own session), then SIGKILL it
        after `grace` seconds. True if it is gone afterwards."""
        if not self.alive():
            return True
        signal_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.alive():
            signal_group(self.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
            deadline = time.monotonic() + 5
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        return not self.alive()


def signal_group(pid: int, sig: int) -> None:
    """Signal the process's group when it has one of its own (a worker leads its session,
    so wrapper scripts and their children go too), else the process alone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.name == "posix":
            group = os.getpgid(pid)
            if group != os.getpgrp():
                os.killpg(group, sig)
                return
        os.kill(pid, sig)


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel for SIGTERM when the parent dies (Linux; a no-op elsewhere).

    Called as a Popen preexec_fn: the setting survives exec, so it also covers wrapper
    scripts that exec the worker's Python.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def watch_parent(interval: float = 1.0) -> None:
    """In a worker started by a supervisor ($RSBATCH_SUPERVISOR_PID): SIGTERM ourselves
    when the supervisor is gone or our parent changed (it died and we were re-parented).

    The portable half of `die_with_parent`; it also covers a supervisor that died before
    the kernel was asked to watch it, and a worker started through a wrapper script whose
    own child it is.
    """
    expected = os.environ.get(SUPERVISOR_ENV, "")
    if not expected.isdigit() or os.name != "posix":
        return
    supervisor, parent = int(expected), os.getppid()

    def gone() -> bool:
        return os.getppid() != parent or not pid_alive(supervisor)

    def watch() -> None:
        while not gone():
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    if gone():
        os.kill(os.getpid(), signal.SIGTERM)
        return
    threading.Thread(target=watch, name="rsbatch-parent-watch", daemon=True).start()
