"""Why a cell failed, in words a person can act on, from what Step Functions reports.

The record-failure function (infra/handler.py) stores this on the task-log record when the
worker could not (a container that never started, was killed for memory, lost its Spot
instance too often, or ran past its time limit).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .summary import clip as _clip

#: what the worker's exit codes mean (worker/cli.py), for failure messages
EXIT_MEANINGS = {
    1: "an error a retry may fix; the retries were used up",
    2: "bad input: retrying cannot help",
    3: "the cell was cancelled",
    137: "killed: out of memory (raise the job's memory) or stopped",
    139: "crashed (segmentation fault)",
}


def describe_failure(error: Mapping[str, Any], limit: Any = None) -> str:
    """A one-paragraph reason from a Step Functions error (Batch job JSON or plain text)."""
    name = str(error.get("Error") or "States.TaskFailed")
    cause = str(error.get("Cause") or "")
    if name == "States.Timeout":  # the Task's TimeoutSeconds: queue and run together
        within = f" of {duration(int(limit))}" if str(limit or "").isdigit() else ""
        return _clip(f"the cell did not finish within its time limit{within} (waiting in the "
                     "AWS Batch queue and running); Step Functions stopped its Batch job")
    try:
        job = json.loads(cause)
    except ValueError:
        job = None
    if not isinstance(job, dict):
        return _clip(f"{name}: {cause}" if cause else name)
    get = _either(job)
    container = get("Container") or {}
    attempts = get("Attempts") or []
    last = attempts[-1] if attempts else {}
    exit_code = _either(container)("ExitCode")
    if exit_code is None and isinstance(last, dict):
        exit_code = _either(_either(last)("Container") or {})("ExitCode")
    parts = [f"AWS Batch job {get('JobId') or '?'} {get('Status') or 'FAILED'}"]
    status_reason = get("StatusReason") or _either(last)("StatusReason")
    if status_reason:
        parts.append(str(status_reason).rstrip("."))
    container_reason = _either(container)("Reason")
    if container_reason:
        parts.append(str(container_reason).rstrip("."))
    if exit_code is not None:
        meaning = EXIT_MEANINGS.get(int(exit_code), "see the job's log")
        parts.append(f"container exit code {exit_code} ({meaning})")
    if attempts:
        parts.append(f"{len(attempts)} attempt(s)")
    stream = _either(container)("LogStreamName")
    if stream:
        parts.append(f"log stream {stream}")
    return _clip("; ".join(parts))


def duration(seconds: int) -> str:
    """'2 h', '90 min', '45 s': a limit as a person says it."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _either(data: Any) -> Any:
    """Read a key as Step Functions spells it (PascalCase) or as the Batch API does."""
    def get(key: str) -> Any:
        if not isinstance(data, Mapping):
            return None
        if key in data:
            return data[key]
        return data.get(key[:1].lower() + key[1:])

    return get
