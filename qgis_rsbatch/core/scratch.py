"""Scratch files beside a destination: how they are named, and sweeping those of the dead.

The worker writes every output under a hidden scratch name in the destination's own
folder and renames it into place when complete (so nothing half-written is ever visible
under its final name). A worker that is killed cannot remove its scratch files, so the
name carries the writer's pid: `.<final name>.<pid>.<8 hex>[.<suffix>]`. Anyone may then
remove the scratch files whose writer is gone (`sweep`); a live writer's are kept.
"""

from __future__ import annotations

import os
import re
import uuid

from .processes import pid_alive

#: `.<name>.<pid>.<token>` optionally followed by `.<suffix>` (L0.tif, part, aux.xml …)
_SCRATCH = re.compile(r"^\.(?P<name>.+?)\.(?P<pid>\d+)\.(?P<token>[0-9a-f]{8})(?:\..+)?$")


def scratch_path(final_path: str, suffix: str = "", token: str | None = None) -> str:
    """A hidden scratch name beside `final_path`, owned by this process.

    Files of one writer share a `token` (default: a new one) and differ by `suffix`.
    """
    folder, name = os.path.split(final_path)
    token = token or new_token()
    return os.path.join(folder, f".{name}.{token}" + (f".{suffix}" if suffix else ""))


def new_token() -> str:
    """`<pid>.<8 hex>`: this process's pid (so a sweep can tell if the writer lives on)."""
    return f"{os.getpid()}.{uuid.uuid4().hex[:8]}"


def writer_pid(name: str) -> int | None:
    """The pid encoded in a scratch file's name, or None when it is not a scratch name."""
    match = _SCRATCH.match(name)
    return int(match.group("pid")) if match else None


def sweep(folder: str, dead: frozenset[int] | None = None) -> list[str]:
    """Remove the scratch files in `folder` whose writer is gone; returns their paths.

    `dead`: pids known to be gone (a reaped worker) whatever the pid table says now, for
    a pid that the system has already given to another process.
    """
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        pid = writer_pid(name)
        if pid is None or (pid_alive(pid) and not (dead and pid in dead)):
            continue
        path = os.path.join(folder, name)
        try:
            if os.path.isfile(path):
                os.remove(path)
                removed.append(path)
        except OSError:
            continue  # someone else swept it, or it is not ours to remove
    return removed
