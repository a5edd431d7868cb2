"""The local backend: real worker processes on the sample job; crash, cancel, resume."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from qgis_rsbatch.core.backends.jobfolder import SupervisorLock, job_folder
from qgis_rsbatch.core.backends.local import LocalBackend
from qgis_rsbatch.core.contract import Status
from qgis_rsbatch.core.errors import InvalidInput, JobBusy
from qgis_rsbatch.core.planning import JobRequest, plan
from tests.polling import wait_until


@pytest.fixture
def sample_job(sample_catalog, tmp_path):
    request = JobRequest(aoi=sample_catalog["aoi"], start=sample_catalog["start"],
                         end=sample_catalog["end"], output=str(tmp_path / "out"),
                         catalog=sample_catalog["catalog"], mosaic=False)
    return plan(request).job  # cells only: test_local_reduce.py runs jobs with units


def wrapper_python(tmp_path, body: str) -> str:
    """A 'python' that runs `body` (bash) with the cell on $cell before the real worker."""
    path = tmp_path / "python-wrapper"
    path.write_text(f"""#!/bin/bash
if [ "$2" != "worker.cli" ]; then exec {sys.executable} "$@"; fi
cell=$(cat)
{body}
printf '%s' "$cell" | exec {sys.executable} "$@"
""")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_a_job_runs_every_cell_and_records_it(sample_job, tmp_path):
    backend = LocalBackend(task_log_path=str(tmp_path / "log.sqlite"), workers=2)
    seen = []
    status = backend.submit(sample_job, wait=True, progress=lambda r: seen.append(len(r)))
    assert status.succeeded and status.counts["SUCCEEDED"] == 4
    for record in status.records:
        assert record.attempts == 1 and set(record.outputs) == {"rgb", "ndvi"}
        for uri in record.outputs.values():
            assert os.path.getsize(uri.removeprefix("file://")) > 10_000
    assert seen and backend.jobs()[0]["job_id"] == sample_job.job_id
    # the registry knows the job from anywhere: a new backend object finds it by id
    again = LocalBackend(task_log_path=str(tmp_path / "log.sqlite")).status(sample_job.job_id)
    assert again.succeeded and again.outputs() == status.outputs()


def test_detached_job_is_followed_by_polling(sample_job, tmp_path):
    backend = LocalBackend(task_log_path=str(tmp_path / "log.sqlite"), workers=2)
    started = backend.submit(sample_job)          # returns at once
    assert not started.finished
    done = backend.wait(sample_job.job_id, interval=0.2, timeout=120)
    assert done.succeeded
    assert "supervisor" not in backend.log.load_job(sample_job.job_id)[2]


def test_a_crashed_worker_fails_its_cell_and_the_others_go_on(sample_job, tmp_path):
    crash = ('if [[ "$cell" == *32TNT_2024-06-11* ]]; then echo "reading band nir" >&2; '
             'kill -9 $$; fi')
    backend = LocalBackend(task_log_path=str(tmp_path / "log.sqlite"), workers=2,
                           worker_python=wrapper_python(tmp_path, crash))
    status = backend.submit(sample_job, wait=True)
    by_cell = {r.cell_id: r for r in status.records}
    crashed = by_cell.pop("32TNT_2024-06-11")
    assert crashed.status is Status.FAILED
    log = tmp_path / "out" / sample_job.job_id / "logs" / "32TNT_2024-06-11.log"
    assert crashed.error == ("the worker process was killed by SIGKILL (out of memory?); "
                             f"last lines of its log: reading band nir (log: {log})")
    assert all(r.status is Status.SUCCEEDED for r in by_cell.values())

    # resume: only the failed cell runs again; finished outputs are not rewritten
    stamps = {cell: {p: os.stat(u.removeprefix("file://")).st_mtime_ns
                     for p, u in r.outputs.items()} for cell, r in by_cell.items()}
    healthy = LocalBackend(task_log_path=str(tmp_path / "log.sqlite"), workers=2)
    resumed = healthy.resume(sample_job.job_id, wait=True)
    assert resumed.succeeded
    after = {r.cell_id: r for r in resumed.records}
    rerun = after["32TNT_2024-06-11"]
    assert rerun.status is Status.SUCCEEDED and rerun.error is None
    assert rerun.attempts == 1  # killed before its worker started, so this is its first run
    for cell, outputs in stamps.items():
        assert after[cell].attempts == 1
        for product, stamp in outputs.items():
            path = after[cell].outputs[product].removeprefix("file://")
            assert os.stat(path).st_mtime_ns == stamp


def _lines(path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie awaiting its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_cancel_stops_running_workers_and_pending_cells(sample_job, tmp_path):
    sleepers = tmp_path / "sleepers"
    slow = f"echo $$ >> {sleepers}; exec sleep 600"
    backend = LocalBackend(task_log_path=str(tmp_path / "log.sqlite"), workers=2,
                           worker_python=wrapper_python(tmp_path, slow))
    backend.submit(sample_job)
    # the supervisor has started two (sleeping) workers
    wait_until(lambda: len(_lines(sleepers)) >= 2, 60, "the supervisor to start its workers")
    status = backend.cancel(sample_job.job_id)
    # cancel killed the workers rather than waiting out their ten-minute sleep
    assert not [pid for pid in _lines(sleepers) if _alive(int(pid))]
    assert status.counts["CANCELLED"] == 4
    assert all(r.error == "cancelled by the user" for r in status.records)
    # nothing of the job keeps running
    assert "supervisor" not in backend.log.load_job(sample_job.job_id)[2]
    assert not list((tmp_path / "out").rglob("*.tif"))


def test_a_dead_runner_is_reported_not_left_running(sample_job, tmp_path):
    backend = LocalBackend(task_log_path=str(tmp_path / "log.sqlite"))
    backend.log.save_job(sample_job, "local", {"supervisor": 2**22 + 12345})  # no such pid
    backend.log.register(sample_job.cells)
    first = sample_job.cells[0]
    backend.log.transition(first.task_id, Status.RUNNING)
    status = backend.status(sample_job.job_id)
    assert status.counts["FAILED"] == 4
    assert "the local runner stopped before this cell finished" in status.records[0].error
    assert f"rsbatch resume {sample_job.job_id}" in status.notes[0]


def test_resume_refuses_a_job_whose_lock_is_held(sample_job, tmp_path):
    backend = LocalBackend(task_log_path=str(tmp_path / "log.sqlite"))
    backend.log.save_job(sample_job, "local", {"supervisor": os.getpid()})
    backend.log.register(sample_job.cells)
    lock = SupervisorLock(job_folder(sample_job))
    assert lock.acquire()  # this process supervises the job
    try:
        with pytest.raises(JobBusy, match=f"already being run by another rsbatch process "
                                          f"\\(pid {os.getpid()}\\)"):
            backend.resume(sample_job.job_id)
    finally:
        lock.release()
    assert {r.status for r in backend.log.job_records(sample_job.job_id)} == {Status.PENDING}


@pytest.mark.parametrize("workers", [0, -3])
def test_a_backend_with_no_workers_is_refused(tmp_path, workers):
    with pytest.raises(InvalidInput, match=f"workers must be 1 or more, not {workers}"):
        LocalBackend(task_log_path=str(tmp_path / "log.sqlite"), workers=workers)
