"""The job history the Jobs tab starts from: this machine's job registry (local and AWS jobs
alike), each job with its parameters (what it was about) and its current status."""

from __future__ import annotations

from typing import Any

from qgis.PyQt.QtCore import QCoreApplication

from .backends import BackendKey, aws_key

HISTORY_LIMIT = 30


def tr(text: str) -> str:
    return QCoreApplication.translate("rsbatch", text)


def read_history(context_pool: Any, local: BackendKey, limit: int = HISTORY_LIMIT,
                 task: Any = None) -> list[tuple[dict, BackendKey, Any]]:
    """Jobs in this machine's registry, newest first, with their status (or the error)."""
    registry = context_pool.get(local)
    rows = registry.jobs(limit)
    found = []
    log = getattr(registry, "log", None)
    for listed in rows:
        if task is not None:
            task.check_cancelled()
        key = local
        loaded = log.load_job(listed["job_id"]) if log is not None else None
        row = {**listed, "params": dict(loaded[0].params) if loaded else {}}
        if row.get("backend") == "aws":
            handle = loaded[2] if loaded else {}
            key = aws_key(stack=handle.get("stack") or "rsbatch",
                          region=handle.get("region") or "", profile=handle.get("profile") or "")
        try:
            status = context_pool.get(key).status(row["job_id"])
        except Exception as exc:  # a stack gone, no credentials: show the job anyway
            status = exc
        found.append((row, key, status))
    return found


def backend_label(key: BackendKey) -> str:
    name, options = key
    if name == "aws":
        opts = dict(options)
        if opts.get("region"):
            return tr("AWS stack {} ({})").format(opts.get("stack"), opts["region"])
        return tr("AWS stack {}").format(opts.get("stack"))
    return tr("this computer")
