"""Before a local job starts: can its output folder take the results? And, when it could
not, the same failed cells again into another folder.

Every cell of a job writing into a folder it cannot write to, or filling the disk half-way,
fails late and all alike; checked before submit, the analyst reads one sentence instead
and chooses another folder. The check really writes (a small file, removed at once):
permissions, read-only mounts and ACLs all answer the same way then.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from urllib.parse import unquote

from .contract import Job, Status, new_job_id, normalize_output
from .errors import InvalidInput, OutputFailed

#: room kept free beyond the estimate (temporary files, the task log, the system's margin)
MARGIN_BYTES = 200 * 1024 * 1024


def local_folder(output: str) -> str | None:
    """The local folder of an output (a path or file:// URI); None for s3://."""
    uri = normalize_output(output)
    return unquote(uri[len("file://"):]) if uri.startswith("file://") else None


def check_output_folder(output: str, needed_bytes: float = 0) -> None:
    """OutputFailed naming the folder and the problem unless it can be created, written
    to, and has room for `needed_bytes` (plus a margin). s3:// outputs are not checked."""
    folder = local_folder(output)
    if folder is None:
        return
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputFailed(f"the output folder {folder} cannot be created "
                           f"({exc.strerror or exc}): choose another folder") from exc
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".rsbatch-write-check-"):
            pass
    except OSError as exc:
        raise OutputFailed(f"the output folder {folder} is not writable "
                           f"({exc.strerror or exc}): choose another folder") from exc
    free = shutil.disk_usage(folder).free
    if needed_bytes and free < needed_bytes + MARGIN_BYTES:
        raise OutputFailed(
            f"the output folder {folder} has {free / 1e9:.2f} GB free, and this job writes "
            f"about {needed_bytes / 1e9:.2f} GB: free some space or choose another folder")


def retry_elsewhere(job: Job, records: list, output: str) -> Job:
    """A new job of the cells that did not succeed (FAILED or CANCELLED in `records`),
    writing into `output` instead; its parameters say which job it retries."""
    again = {r.cell_id for r in records if r.status in (Status.FAILED, Status.CANCELLED)}
    if not again:
        raise InvalidInput(f"job {job.job_id} has no failed or cancelled cell to retry")
    target = normalize_output(output)
    job_id = new_job_id()
    cells = tuple(dataclasses.replace(cell, job_id=job_id, output=target)
                  for cell in job.cells if cell.cell_id in again)
    params = {**job.params, "output": target, "retry_of": job.job_id}
    return Job(job_id=job_id, cells=cells, params=params)
