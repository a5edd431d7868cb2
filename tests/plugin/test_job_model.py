"""The job list stays cheap for big jobs: a poll touches only the rows that changed."""

from __future__ import annotations

import time

from qgis_rsbatch.core.backends import JobStatus
from qgis_rsbatch.core.contract import Status
from qgis_rsbatch.core.tasklog.schema import Record
from qgis_rsbatch.gui.job_model import PROGRESS_ROLE, JobModel, job_summary


def _records(count: int) -> list[Record]:
    return [Record(task_id=f"job#{i}", job_id="job", cell_id=f"c{i:05d}", tile="32TMT",
                   date="2024-06-01", status=Status.PENDING) for i in range(count)]


def test_a_poll_of_a_ten_thousand_cell_job_is_quick_on_the_gui_thread(qgis_app):
    model = JobModel()
    records = _records(10_000)
    model.update_job("job", JobStatus("job", tuple(records), "aws"), backend="AWS")
    records[5] = records[5].moved(Status.RUNNING)
    records[7] = records[7].moved(Status.RUNNING).moved(Status.FAILED, error="Spot")
    start = time.perf_counter()
    model.update_job("job", JobStatus("job", tuple(records), "aws"), backend="AWS")
    elapsed = time.perf_counter() - start
    assert elapsed < 0.1, f"{elapsed * 1000:.0f} ms"
    assert model.cell_item("job", "c00007", 3).text() == "Spot"
    assert model.cell_item("job", "c00005", 1).text() == "running"
    assert model.item(0, 2).data(PROGRESS_ROLE) == 1 / 10_000


def test_job_summaries():
    records = _records(3)
    assert job_summary(JobStatus("job", tuple(records))) == "pending"
    done = [records[0].moved(Status.RUNNING).moved(Status.SUCCEEDED),
            records[1].moved(Status.RUNNING).moved(Status.FAILED, error="x"),
            records[2].moved(Status.CANCELLED, error="by you")]
    assert job_summary(JobStatus("job", tuple(done))) == "1 failed, 1 cancelled"
