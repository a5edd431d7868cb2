"""`rsbatch logs JOB_ID CELL_ID` for a local job: the file at Cell.log_uri."""

from __future__ import annotations

from pathlib import Path

from qgis_rsbatch import cli
from qgis_rsbatch.core.cell_logs import local_log_path
from qgis_rsbatch.core.contract import Job
from qgis_rsbatch.core.tasklog import default_sqlite_path
from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog

BANDS = {key: f"/data/{key}.tif" for key in ("blue", "green", "red", "nir")}


def _job(out: Path) -> Job:
    return Job.from_dict({"job_id": "job-local-logs", "cells": [
        {"tile": "32TMT", "date": f"2024-06-0{day}", "bands": BANDS, "products": ["ndvi"],
         "cloud_mask": False, "output": out.as_uri()} for day in (1, 2)]})


def test_the_logs_command_prints_a_local_cells_log_file(tmp_path, capsys):
    job = _job(tmp_path / "out")
    SqliteTaskLog(default_sqlite_path()).save_job(job, "local", {"workers": 1})
    cell = job.cells[0]
    path = Path(local_log_path(cell))
    assert path == tmp_path / "out" / "job-local-logs" / "logs" / "32TMT_2024-06-01.log"
    path.parent.mkdir(parents=True)
    path.write_text("reading red\nwrote ndvi\n")

    assert cli.main(["logs", "job-local-logs", "32TMT_2024-06-01"]) == 0
    assert capsys.readouterr().out == "reading red\nwrote ndvi\n"

    # not started yet: one line naming the file, exit code 2
    assert cli.main(["logs", "job-local-logs", "32TMT_2024-06-02"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "32TMT_2024-06-02.log" in err and "has no log yet" in err
    # no such job
    assert cli.main(["logs", "no-such-job", "32TMT_2024-06-01"]) == 2
    assert "no job no-such-job" in capsys.readouterr().err
