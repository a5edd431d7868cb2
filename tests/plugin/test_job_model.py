"""The job list stays cheap for big jobs: a poll touches only the rows that changed."""

from __future__ import annotations

from qgis_rsbatch.core.backends import JobStatus
from qgis_rsbatch.core.contract import Status
from qgis_rsbatch.core.tasklog.schema import Record
from qgis_rsbatch.gui.job_model import PROGRESS_ROLE, JobModel, job_summary


def _records(count: int) -> list[Record]:
    return [Record(task_id=f"job#{i}", job_id="job", cell_id=f"c{i:05d}", tile="32TMT",
                   date="2024-06-01", status=Status.PENDING) for i in range(count)]


def test_a_poll_of_a_ten_thousand_cell_job_touches_only_the_rows_that_changed(qgis_app,
                                                                              monkeypatch):
    from qgis_rsbatch.gui import job_model

    model = JobModel()
    records = _records(10_000)
    model.update_job("job", JobStatus("job", tuple(records), "aws"), backend="AWS")
    records[5] = records[5].moved(Status.RUNNING)
    records[7] = records[7].moved(Status.RUNNING).moved(Status.FAILED, error="Spot")
    changed = []
    model.dataChanged.connect(lambda first, last, *_: changed.append(
        (first.parent().row(), first.row(), last.row())))
    drawn = []  # the cell rows whose texts are rebuilt
    monkeypatch.setattr(job_model, "status_text",
                        lambda status: drawn.append(status) or status.value.lower())
    model.update_job("job", JobStatus("job", tuple(records), "aws"), backend="AWS")
    assert set(drawn) == {Status.RUNNING, Status.FAILED} and len(drawn) <= 4  # two rows
    # the job's own row (parent -1) and the two cells that moved, nothing else; how long a
    # poll takes depends on the machine: `make bench` measures it (bench/results/gui.md)
    assert {(parent, first) for parent, first, last in changed if parent >= 0} == {(0, 5),
                                                                                 (0, 7)}
    assert all(first == last for _, first, last in changed)
    assert {first for parent, first, _ in changed if parent < 0} == {0}
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


def test_skipped_cells_are_done_and_shown_apart_from_failures():
    from qgis.core import QgsApplication

    from qgis_rsbatch.gui.job_model import STATUS_COLORS, STATUS_ICONS, status_text

    records = _records(3)
    done = [records[0].moved(Status.RUNNING).moved(Status.SUCCEEDED),
            records[1].moved(Status.RUNNING).moved(Status.SKIPPED, error="AOI 87 % masked > 60 %"),
            records[2].moved(Status.RUNNING).moved(Status.SKIPPED, error="AOI 91 % masked > 60 %")]
    status = JobStatus("job", tuple(done))
    assert status.finished and status.succeeded  # the CLI exits 0, the dock says so
    assert job_summary(status) == "succeeded, 2 skipped"
    failed = JobStatus("job", (*done[1:], records[0].moved(Status.RUNNING).moved(
        Status.FAILED, error="x")))
    assert not failed.succeeded and job_summary(failed) == "1 failed, 2 skipped"
    assert status_text(Status.SKIPPED) == "skipped"
    assert STATUS_COLORS[Status.SKIPPED] not in (STATUS_COLORS[Status.FAILED],
                                                 STATUS_COLORS[Status.SUCCEEDED])
    assert all(not QgsApplication.getThemeIcon(icon).isNull() for icon in STATUS_ICONS.values())


def _job_records(sample_catalog, tmp_path) -> tuple[str, list[Record]]:
    """The sample's job with mosaics and a median composite, its records as a task log
    lists them (by id: composites before mosaics)."""
    from qgis_rsbatch.core.planning import JobRequest, plan

    job = plan(JobRequest(aoi=sample_catalog["aoi"], start=sample_catalog["start"],
                          end=sample_catalog["end"], output=str(tmp_path),
                          catalog=sample_catalog["catalog"], composite="median")).job
    return job.job_id, sorted((Record.for_task(t) for t in job.tasks), key=lambda r: r.cell_id)


def test_a_jobs_rows_list_cells_then_mosaics_by_date_and_product_then_composites(
        qgis_app, sample_catalog, tmp_path):
    job_id, records = _job_records(sample_catalog, tmp_path)
    model = JobModel()
    model.update_job(job_id, JobStatus(job_id, tuple(records), "local"))
    records[0] = records[0].moved(Status.RUNNING)
    model.update_job(job_id, JobStatus(job_id, tuple(records), "local"))  # rows stay put
    head = model.item(0, 0)
    assert [head.child(row, 0).text() for row in range(head.rowCount())] == [
        "32TMT 2024-06-01", "32TMT 2024-06-11", "32TNT 2024-06-01", "32TNT 2024-06-11",
        "Mosaic 2024-06-01 NDVI", "Mosaic 2024-06-01 RGB",
        "Mosaic 2024-06-11 NDVI", "Mosaic 2024-06-11 RGB",
        "Composite 2024-06-01 – 2024-06-11 NDVI", "Composite 2024-06-01 – 2024-06-11 RGB"]
    assert model.cell_item(job_id, records[0].cell_id, 1).text() == "running"


def test_a_finished_job_is_told_in_one_short_line_counting_cells_and_units(
        sample_catalog, tmp_path):
    from qgis_rsbatch.gui.job_model import finished_text

    job_id, records = _job_records(sample_catalog, tmp_path)
    done = [r.moved(Status.RUNNING).moved(Status.SUCCEEDED) for r in records]
    assert finished_text(job_id, JobStatus(job_id, tuple(done))) == (
        f"Job {job_id} finished: 4 cell(s), 4 mosaic(s) and 2 composite(s) succeeded")
    by_id = {r.cell_id: i for i, r in enumerate(records)}
    partly = list(done)
    partly[by_id["32TNT_2024-06-11"]] = records[by_id["32TNT_2024-06-11"]].moved(
        Status.RUNNING).moved(Status.FAILED, error="band red is missing")
    partly[by_id["mosaic_2024-06-11_rgb"]] = records[by_id["mosaic_2024-06-11_rgb"]].moved(
        Status.RUNNING).moved(Status.SKIPPED, error="nothing to mosaic")
    text = finished_text(job_id, JobStatus(job_id, tuple(partly)))
    assert text == (f"Job {job_id} finished: 3/4 cell(s), 3/4 mosaic(s) and 2/2 composite(s) "
                    "succeeded, 1 failed, 1 skipped")
    cells = [r for r in done if r.kind == "cell"]
    assert finished_text(job_id, JobStatus(job_id, tuple(cells))) == (
        f"Job {job_id} finished: 4 cell(s) succeeded")
