"""The output folder is checked before a local job starts; failed cells retry elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from qgis_rsbatch.core.contract import Status
from qgis_rsbatch.core.errors import InvalidInput, OutputFailed
from qgis_rsbatch.core.outputfolder import check_output_folder, retry_elsewhere
from qgis_rsbatch.core.planning import JobRequest, make_job
from qgis_rsbatch.core.tasklog.schema import Record

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_folder_is_made_and_nothing_is_left_in_it(tmp_path):
    folder = tmp_path / "new" / "results"
    check_output_folder(str(folder), 1000)
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_a_folder_that_cannot_be_made_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputFailed, match=f"the output folder {blocker}/out cannot be "
                                           r"created \(Not a directory\)"):
        check_output_folder(str(blocker / "out"))


def test_too_little_room_for_the_estimate(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    check_output_folder(f"file://{tmp_path}", free / 10)
    with pytest.raises(OutputFailed, match=rf"has {free / 1e9:.2f} GB free, and this job "
                                           rf"writes about {(free + 1e12) / 1e9:.2f} GB"):
        check_output_folder(str(tmp_path), free + 1e12)
    check_output_folder("s3://bucket/prefix", 1e18)  # not ours to check


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0,
                    reason="needs root to check as an unprivileged user")
def test_a_folder_the_user_cannot_write_is_named():
    root = tempfile.mkdtemp(prefix="rsbatch-perm-")
    try:
        os.chmod(root, 0o755)  # readable, not writable, by others
        code = ("import sys; from qgis_rsbatch.core.outputfolder import check_output_folder\n"
                "try:\n    check_output_folder(sys.argv[1])\n"
                "except Exception as exc:\n    print(exc)")
        proc = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534",
                               "--clear-groups", "/usr/bin/python3", "-c", code, root],
                              capture_output=True, text=True, cwd="/", check=False,
                              env={"PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"]})
        if "ModuleNotFoundError" in proc.stderr or "PermissionError" in proc.stderr:
            pytest.skip("the unprivileged user cannot read this checkout")
        assert proc.stdout.strip() == (f"the output folder {root} is not writable "
                                       "(Permission denied): choose another folder")
    finally:
        shutil.rmtree(root)


def test_retry_elsewhere_takes_only_the_unfinished_cells(sample_catalog, tmp_path):
    from qgis_rsbatch.core.planning import find_scenes

    request = JobRequest(aoi=sample_catalog["aoi"], start=sample_catalog["start"],
                         end=sample_catalog["end"], output=str(tmp_path / "first"),
                         catalog=sample_catalog["catalog"], max_cloud=100)
    job = make_job(request, find_scenes(request).scenes)
    states = [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.SUCCEEDED]
    records = [Record.for_cell(cell, state) for cell, state in zip(job.cells, states)]
    again = retry_elsewhere(job, records, str(tmp_path / "second"))
    assert again.job_id != job.job_id and again.params["retry_of"] == job.job_id
    assert [c.cell_id for c in again.cells] == [job.cells[1].cell_id, job.cells[2].cell_id]
    assert {c.output for c in again.cells} == {f"file://{tmp_path / 'second'}"}
    assert {c.job_id for c in again.cells} == {again.job_id}
    assert again.cells[0].bands == job.cells[1].bands
    with pytest.raises(InvalidInput, match="no failed or cancelled cell"):
        retry_elsewhere(job, [records[0], records[3]], str(tmp_path / "third"))
