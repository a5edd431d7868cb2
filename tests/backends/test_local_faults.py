"""The local backend under faults, for real: killed runners and workers, racing resumes, a
lost task log. Workers are stopped at a named point with the worker's test hook
(RSBATCH_WORKER_PAUSE=<point>:<folder>, see worker.process.pause_point), never by timing.

Afterwards a job folder must hold only final outputs, STAC items, job.json and logs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qgis_rsbatch.core.backends.jobfolder import job_folder, write_job
from qgis_rsbatch.core.backends.local import LocalBackend
from qgis_rsbatch.core.contract import Status, cloud_mask_uri
from qgis_rsbatch.core.errors import TransitionRejected
from qgis_rsbatch.core.planning import JobRequest, plan
from qgis_rsbatch.core.processes import SUPERVISOR_ENV, ProcessId, pid_alive
from qgis_rsbatch.core.products import get as get_product
from qgis_rsbatch.core.scratch import writer_pid
from qgis_rsbatch.core.tasklog import default_sqlite_path
from qgis_rsbatch.core.tasklog.schema import WORKER_PID, WORKER_START
from tests.polling import wait_until

FIRST = "32TMT_2024-06-01"


# --- helpers ---------------------------------------------------------------------------

def rsbatch(*args: str, cwd: Path | None = None, env: dict | None = None,
            wait: bool = True):
    command = [sys.executable, "-m", "qgis_rsbatch.cli", *args]
    full_env = {**os.environ, **(env or {})}
    if wait:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300,
                              check=False, env=full_env)
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=full_env)


def run_args(catalog: dict, *extra: str) -> list[str]:
    return ["run", "--aoi", json.dumps(catalog["aoi"]), "--start", catalog["start"],
            "--end", catalog["end"], "--catalog", catalog["catalog"], "--no-mosaic", *extra]


def paused(folder: Path, count: int) -> dict[str, int]:
    """cell id → pid of the workers that reached their pause point, once `count` have."""
    def found():
        files = {p.name.removesuffix(".paused"): p for p in folder.glob("*.paused")}
        texts = {cell: p.read_text() for cell, p in files.items()}
        if len(texts) >= count and all(texts.values()):
            return {cell: int(text) for cell, text in texts.items()}
        return None
    return wait_until(found, 120, f"{count} paused workers")


def release(folder: Path, *cells: str) -> None:
    for cell in cells:
        (folder / f"{cell}.go").touch()


def scratch_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if writer_pid(p.name) is not None)


def assert_only_results(folder: Path, cells: list[str], products=("rgb", "ndvi")) -> None:
    """The folder holds final outputs (with the cloud masks beside those that keep their
    clouds), STAC items, job.json and logs (and the lock)."""
    expected = {f"{cell}_{product}.tif" for cell in cells for product in products}
    expected |= {cloud_mask_uri(f"{cell}_{product}.tif") for cell in cells
                 for product in products if get_product(product).clouds_beside}
    expected |= {f"{cell}.json" for cell in cells} | {"job.json", "logs", ".supervisor.lock"}
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)
    logs = {p.name for p in (folder / "logs").iterdir()}
    assert logs <= {f"{cell}.log" for cell in cells} | {"supervisor.log"}


def records(job_id: str) -> dict:
    status = rsbatch("status", job_id, "--json")
    return {cell["CellId"]: cell for cell in json.loads(status.stdout)["cells"]}


@pytest.fixture
def sample_job(sample_catalog, tmp_path):
    request = JobRequest(aoi=sample_catalog["aoi"], start=sample_catalog["start"],
                         end=sample_catalog["end"], output=str(tmp_path / "out"),
                         catalog=sample_catalog["catalog"], mosaic=False)
    return plan(request).job  # cells only: test_local_reduce.py runs jobs with units


def start_worker(cell, log_uri: str, pause: Path, point: str, supervisor: int):
    """A worker as the local runner starts it, belonging to the process `supervisor`."""
    env = {**os.environ, "RSBATCH_WORKER_PAUSE": f"{point}:{pause}",
           SUPERVISOR_ENV: str(supervisor)}
    process = subprocess.Popen([sys.executable, "-m", "worker.cli", "--task-log", log_uri,
                                "run", "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, text=True, env=env,
                               start_new_session=True)
    process.stdin.write(json.dumps(cell.to_dict()))
    process.stdin.close()
    return process


@pytest.fixture
def stand_in():
    """A live process standing in for a supervisor (a worker stops when its own is gone)."""
    process = subprocess.Popen(["sleep", "600"])
    yield process
    process.kill()
    process.wait()


# --- 1. a runner that dies takes its workers with it; status tells the truth -------------

@pytest.mark.parametrize(("detach", "sig"), [(False, signal.SIGKILL), (False, signal.SIGTERM),
                                             (True, signal.SIGKILL)],
                         ids=["foreground-kill-9", "foreground-sigterm", "detached-kill-9"])
def test_a_killed_runner_takes_its_workers_along_and_resume_finishes_clean(
        sample_catalog, tmp_path, detach, sig):
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {"RSBATCH_WORKER_PAUSE": f"written:{pause}"}
    runner = rsbatch(*run_args(sample_catalog, "--workers", "2", *(["--detach"] * detach)),
                     cwd=tmp_path, env=env, wait=False)
    job_id = runner.stdout.readline().strip()
    workers = paused(pause, 2)  # two workers wrote every strip into scratch files
    folder = tmp_path / "rsbatch-output" / job_id
    assert {writer_pid(name) for name in scratch_files(folder)} == set(workers.values())
    if detach:
        assert runner.wait(timeout=60) == 0
        supervisor = LocalBackend().log.load_job(job_id)[2]["supervisor"]
        # the detached runner holds the job's lock, handed over by the process that left
        busy = rsbatch("resume", job_id)
        assert busy.returncode == 2 and f"(pid {supervisor})" in busy.stderr
    else:
        supervisor = runner.pid
    os.kill(supervisor, sig)

    wait_until(lambda: not any(pid_alive(pid) for pid in workers.values()), 120,
               "the workers to end with their runner")
    if not detach:
        assert runner.wait(timeout=60) == (-signal.SIGKILL if sig == signal.SIGKILL else 143)
    assert scratch_files(folder) == []  # each worker removed its own on the way out
    cells = records(job_id)
    assert not [c for c in cells.values() if c["Status"] in ("RUNNING", "PENDING")]
    for cell in workers:
        if sig == signal.SIGTERM:
            assert cells[cell]["Status"] == "CANCELLED"
            assert cells[cell]["Error"] == "the local runner was stopped (SIGTERM)"
        else:
            assert cells[cell]["Status"] == "FAILED"
            assert cells[cell]["Error"].startswith("the local runner stopped before this cell")

    resumed = rsbatch("resume", job_id)
    assert resumed.returncode == 0, resumed.stderr
    assert "4 succeeded" in resumed.stdout
    cells = records(job_id)
    assert {c["Status"] for c in cells.values()} == {"SUCCEEDED"}
    for cell, record in cells.items():  # the stopped cells ran twice, no cell ran beside itself
        assert record["Attempts"] == (2 if cell in workers else 1)
    assert_only_results(folder, list(cells))
    log = (folder / "logs" / f"{next(iter(workers))}.log").read_text()
    assert log.count("attempt started by the rsbatch supervisor") == 2


def test_status_never_fails_a_cell_whose_worker_still_runs_and_cancel_kills_it(
        sample_job, tmp_path, stand_in):
    """An orphan (its runner died without taking it along, as where the parent cannot be
    watched): RUNNING while it lives, and `cancel` finds it by what the task log holds."""
    backend = LocalBackend(task_log_path=str(tmp_path / "log.sqlite"))
    backend.log.save_job(sample_job, "local", {})
    backend.log.register(sample_job.cells)
    folder = job_folder(sample_job)
    write_job(folder, sample_job, {"workers": 1})
    pause = tmp_path / "pause"
    pause.mkdir()
    orphan = start_worker(sample_job.cells[0], backend.log.uri, pause, "written", stand_in.pid)
    pid = paused(pause, 1)[FIRST]
    assert scratch_files(folder)

    status = backend.status(sample_job.job_id)
    by_cell = {r.cell_id: r for r in status.records}
    assert by_cell[FIRST].status is Status.RUNNING
    assert by_cell[FIRST].extra[WORKER_PID] == pid
    assert f"the worker of {FIRST} still runs" in status.notes[-1]
    assert all(r.status is Status.FAILED for c, r in by_cell.items() if c != FIRST)

    cancelled = backend.cancel(sample_job.job_id)
    assert orphan.wait(timeout=60) == 143  # it was told to stop, and cleaned up
    first = next(r for r in cancelled.records if r.cell_id == FIRST)
    assert first.status is Status.CANCELLED and first.error == "cancelled by the user"
    assert scratch_files(folder) == []


def test_a_worker_that_finishes_after_a_wrong_failed_is_recorded_succeeded(
        sample_job, tmp_path, stand_in):
    backend = LocalBackend(task_log_path=str(tmp_path / "log.sqlite"))
    backend.log.save_job(sample_job, "local", {})
    backend.log.register(sample_job.cells)
    pause = tmp_path / "pause"
    pause.mkdir()
    cell = sample_job.cells[0]
    worker = start_worker(cell, backend.log.uri, pause, "written", stand_in.pid)
    paused(pause, 1)
    wrong = "the local runner stopped before this cell finished"
    backend.log.transition(cell.task_id, Status.FAILED, error=wrong)
    record = backend.log.get(cell.task_id)
    # no other process may claim the cell's success
    with pytest.raises(TransitionRejected):
        backend.log.transition(cell.task_id, Status.SUCCEEDED, outputs={"rgb": "x"},
                               extra={WORKER_PID: record.extra[WORKER_PID] + 1,
                                      WORKER_START: record.extra[WORKER_START]})
    release(pause, cell.cell_id)
    assert worker.wait(timeout=120) == 0
    done = backend.log.get(cell.task_id)
    assert done.status is Status.SUCCEEDED and done.error is None
    assert set(done.outputs) == {"rgb", "ndvi"}
    assert done.warnings == (
        f"recorded SUCCEEDED after it had been marked FAILED on the worker's behalf ({wrong}): "
        "the worker finished and its outputs are complete",)


# --- 2. exactly one supervisor per job ---------------------------------------------------

def test_three_resumes_at_once_run_one_supervisor(sample_job, tmp_path):
    backend = LocalBackend(workers=2)  # the default task log, which `rsbatch` uses too
    backend.log.save_job(sample_job, "local", {"workers": 2})
    backend.log.register(sample_job.cells)
    write_job(job_folder(sample_job), sample_job, {"workers": 2})
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {"RSBATCH_WORKER_PAUSE": f"running:{pause}"}
    racers = [rsbatch("resume", sample_job.job_id, env=env, wait=False) for _ in range(3)]
    # the winner's workers wait at their pause point, so the others meet a held lock
    losers = wait_until(lambda: [r for r in racers if r.poll() is not None] if sum(
        r.poll() is not None for r in racers) == 2 else None, 120, "two resumes to give up")
    for loser in losers:
        err = loser.stderr.read()
        assert loser.returncode == 2
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"job {sample_job.job_id} is already being run by another rsbatch process" in err
    assert len(paused(pause, 2)) == 2
    release(pause, *(cell.cell_id for cell in sample_job.cells))
    winner = next(r for r in racers if r not in losers)
    assert winner.wait(timeout=300) == 0, winner.stderr.read()
    done = backend.log.job_records(sample_job.job_id)
    assert {r.status for r in done} == {Status.SUCCEEDED}
    assert [r.attempts for r in done] == [1, 1, 1, 1]  # never two workers on one cell


# --- 3. a lost or damaged task log -------------------------------------------------------

def test_deleting_the_task_log_under_a_running_job_is_one_line_and_resume_rebuilds_it(
        sample_catalog, tmp_path):
    pause = tmp_path / "pause"
    pause.mkdir()
    runner = rsbatch(*run_args(sample_catalog, "--workers", "2"), cwd=tmp_path,
                     env={"RSBATCH_WORKER_PAUSE": f"written:{pause}"}, wait=False)
    job_id = runner.stdout.readline().strip()
    paused(pause, 2)
    log = default_sqlite_path()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(log + suffix):
            os.remove(log + suffix)
    _, err = runner.communicate(timeout=120)
    assert runner.returncode == 1
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        f"rsbatch: error: the task log {log} is missing; `rsbatch resume <output folder>/"
        "<job id>` rebuilds a local job's records from its folder")
    folder = tmp_path / "rsbatch-output" / job_id
    assert scratch_files(folder) == []

    resumed = rsbatch("resume", str(folder))
    assert resumed.returncode == 0, resumed.stderr
    assert "4 succeeded" in resumed.stdout
    assert_only_results(folder, list(records(job_id)))


def test_a_damaged_task_log_is_one_line_and_finished_cells_are_not_made_again(
        sample_catalog, tmp_path):
    done = rsbatch(*run_args(sample_catalog, "--workers", "2", "--products", "ndvi"),
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.splitlines()[0]
    folder = tmp_path / "rsbatch-output" / job_id
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.tif")}
    Path(default_sqlite_path()).write_bytes(b"this is not a database" * 100)

    status = rsbatch("status", job_id)
    assert status.returncode == 1
    assert status.stderr.count("\n") == 1 and "Traceback" not in status.stderr
    assert "is unusable (file is not a database)" in status.stderr

    resumed = rsbatch("resume", str(folder))
    assert resumed.returncode == 0, resumed.stderr
    assert "it was moved to" in resumed.stderr and "4 succeeded" in resumed.stdout
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.tif")} == stamps
    assert_only_results(folder, list(records(job_id)), products=("ndvi",))


def test_resume_of_a_folder_without_a_job_is_one_line(tmp_path):
    proc = rsbatch("resume", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == f"rsbatch: error: {tmp_path} is not a job folder: it has no job.json\n"


# --- 4 and 8. scratch files and the worker's own log -------------------------------------

def test_a_worker_killed_by_sigkill_is_recorded_with_its_own_log_and_leaves_no_scratch(
        sample_catalog, tmp_path):
    pause = tmp_path / "pause"
    pause.mkdir()
    release(pause, "32TMT_2024-06-11", "32TNT_2024-06-01", "32TNT_2024-06-11")
    runner = rsbatch(*run_args(sample_catalog, "--workers", "1"), cwd=tmp_path,
                     env={"RSBATCH_WORKER_PAUSE": f"written:{pause}"}, wait=False)
    job_id = runner.stdout.readline().strip()
    pid = paused(pause, 1)[FIRST]
    folder = tmp_path / "rsbatch-output" / job_id
    assert scratch_files(folder)
    os.kill(pid, signal.SIGKILL)  # what the kernel's OOM killer does
    out, _ = runner.communicate(timeout=300)
    assert runner.returncode == 1
    assert "3 succeeded" in out and "1 failed" in out
    log = folder / "logs" / f"{FIRST}.log"
    # the worker's own lines: the supervisor's "--- attempt started" header is not the worker's
    own_lines = [line.strip() for line in log.read_text().splitlines()
                 if line.strip() and not line.startswith("--- ")]
    error = records(job_id)[FIRST]["Error"]
    assert error == ("the worker process was killed by SIGKILL (out of memory?); last lines "
                     f"of its log: {' | '.join(own_lines[-3:])} (log: {log})")
    assert f"INFO rsbatch.worker {FIRST}  85% rows" in error  # its own progress line
    assert scratch_files(folder) == []  # swept once the runner saw its writer was gone


def test_scratch_of_a_worker_killed_without_a_runner_is_swept_by_resume(
        sample_job, tmp_path, stand_in):
    backend = LocalBackend(workers=2)
    backend.log.save_job(sample_job, "local", {"workers": 2})
    backend.log.register(sample_job.cells)
    folder = job_folder(sample_job)
    write_job(folder, sample_job, {"workers": 2})
    pause = tmp_path / "pause"
    pause.mkdir()
    worker = start_worker(sample_job.cells[0], backend.log.uri, pause, "written", stand_in.pid)
    paused(pause, 1)
    worker.kill()
    worker.wait()
    left = scratch_files(folder)
    assert left and {writer_pid(name) for name in left} == {worker.pid}

    resumed = rsbatch("resume", str(folder))
    assert resumed.returncode == 0, resumed.stderr
    assert "4 succeeded" in resumed.stdout
    assert_only_results(folder, [cell.cell_id for cell in sample_job.cells])


def test_an_immediate_resume_stops_an_orphan_before_its_cell_runs_again(
        sample_job, tmp_path, stand_in):
    backend = LocalBackend(workers=2)
    backend.log.save_job(sample_job, "local", {"workers": 2})
    backend.log.register(sample_job.cells)
    write_job(job_folder(sample_job), sample_job, {"workers": 2})
    pause = tmp_path / "pause"
    pause.mkdir()
    orphan = start_worker(sample_job.cells[0], backend.log.uri, pause, "written", stand_in.pid)
    paused(pause, 1)

    resumed = rsbatch("resume", sample_job.job_id)
    assert resumed.returncode == 0, resumed.stderr
    assert orphan.poll() == 143  # stopped (and cleaned up) before a new worker took the cell
    first = backend.log.get(sample_job.cells[0].task_id)
    assert first.status is Status.SUCCEEDED and first.attempts == 2
    assert_only_results(job_folder(sample_job), [cell.cell_id for cell in sample_job.cells])


def test_a_recorded_pid_now_held_by_another_process_is_not_taken_for_the_worker(
        sample_job, tmp_path, stand_in):
    """pid reuse: the number lives on in another process, the worker does not."""
    backend = LocalBackend(task_log_path=str(tmp_path / "log.sqlite"))
    backend.log.save_job(sample_job, "local", {})
    backend.log.register(sample_job.cells)
    first, second = sample_job.cells[0], sample_job.cells[1]
    started = ProcessId.of(stand_in.pid).start
    assert started is not None  # /proc gives start times here
    backend.log.transition(first.task_id, Status.RUNNING,
                           extra={WORKER_PID: stand_in.pid, WORKER_START: started - 1})
    backend.log.transition(second.task_id, Status.RUNNING,
                           extra={WORKER_PID: stand_in.pid, WORKER_START: started})
    by_cell = {r.cell_id: r for r in backend.status(sample_job.job_id).records}
    assert by_cell[first.cell_id].status is Status.FAILED  # its worker is provably gone
    assert by_cell[second.cell_id].status is Status.RUNNING  # this one still runs
    assert stand_in.poll() is None  # status only looks; it never kills
