"""The dock's Time series view: a job's index over the AOI, date by date, one line per tile,
skipped dates marked; exported as CSV and PNG; and a dock job with an area cloud limit."""

from __future__ import annotations

import csv

import pytest
from qgis.core import Qgis
from qgis.PyQt.QtGui import QColor, QImage

from qgis_rsbatch.core.contract import Cell, Status
from qgis_rsbatch.core.tasklog.schema import AOI_MASKED_ATTRIBUTE, STATS_ATTRIBUTE, Record
from qgis_rsbatch.gui.timeseries_view import (
    SKIPPED_COLOR,
    TILE_COLORS,
    TimeSeriesDialog,
    render_image,
)
from tests.plugin.conftest import messages, wait_until


def _record(tile, date, mean, skipped=False):
    cell = Cell.from_dict({"job_id": "job-ts", "tile": tile, "date": date,
                           "products": ["ndvi", "ndmi"], "output": "/tmp/o",
                           "bands": {k: f"/{k}.tif" for k in ("red", "nir", "swir16", "scl")}})
    record = Record.for_cell(cell).moved(Status.RUNNING)
    if skipped:
        return record.moved(Status.SKIPPED, error="AOI 93 % masked > 60 %",
                            extra={AOI_MASKED_ATTRIBUTE: 93.0})
    stats = {p: {"valid_pixels": 900, "aoi_pixels": 1000, "valid_fraction": 0.9,
                 "mean": mean + shift, "median": mean + shift, "std": 0.08,
                 "p10": mean + shift - 0.12, "p90": mean + shift + 0.1}
             for p, shift in (("ndvi", 0.0), ("ndmi", -0.3))}
    return record.moved(Status.SUCCEEDED, outputs={"ndvi": "x"},
                        extra={AOI_MASKED_ATTRIBUTE: 5.0, STATS_ATTRIBUTE: stats})


RECORDS = [
    *(_record("32TMT", d, m) for d, m in (("2024-05-02", 0.35), ("2024-05-12", 0.48),
                                          ("2024-06-01", 0.66), ("2024-06-21", 0.71))),
    *(_record("32TNT", d, m) for d, m in (("2024-05-02", 0.30), ("2024-05-22", 0.52),
                                          ("2024-06-21", 0.62))),
    _record("32TMT", "2024-05-22", 0, skipped=True), _record("32TNT", "2024-06-11", 0, True),
]


def _has_color(image: QImage, color: str, tolerance: int = 12) -> int:
    want = QColor(color)
    found = 0
    for y in range(0, image.height(), 2):
        for x in range(0, image.width(), 2):
            got = image.pixelColor(x, y)
            if (abs(got.red() - want.red()) + abs(got.green() - want.green())
                    + abs(got.blue() - want.blue())) <= tolerance:
                found += 1
    return found


def test_the_plot_draws_a_line_per_tile_and_marks_skipped_dates(tmp_path):
    image = render_image(TimeSeriesDialog("job-ts", RECORDS).rows, "ndvi")
    assert (image.width(), image.height()) == (800, 420)
    assert _has_color(image, TILE_COLORS[0]) > 50 and _has_color(image, TILE_COLORS[1]) > 50
    assert _has_color(image, SKIPPED_COLOR) > 20
    assert image.save(str(tmp_path / "series.png"))


def test_the_dialog_offers_the_job_s_indices_and_exports_csv_and_png(tmp_path):
    dialog = TimeSeriesDialog("job-ts", RECORDS)
    combo = dialog.product_combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["ndvi", "ndmi"]
    assert [combo.itemText(i) for i in range(combo.count())] == ["NDVI", "NDMI"]
    dialog.export_csv(str(tmp_path / "s.csv"))
    with open(tmp_path / "s.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * len(RECORDS)  # both indices of every cell, skipped ones empty
    skipped = [r for r in rows if r["status"] == "SKIPPED"]
    assert len(skipped) == 4 and all(r["mean"] == "" for r in skipped)
    assert [r["date"] for r in rows] == sorted(r["date"] for r in rows)
    combo.setCurrentIndex(1)
    assert dialog.export_png(str(tmp_path / "ndmi.png"))
    image = QImage(str(tmp_path / "ndmi.png"))
    assert image.width() == 800 and _has_color(image, TILE_COLORS[0]) > 50


@pytest.mark.slow
def test_a_dock_job_with_an_area_cloud_limit_skips_and_charts(dock, sample, qgis_iface,
                                                              tmp_path):
    from tests.plugin.test_job_flow import plan_job, submit, wait_finished

    panel = dock.search_panel
    for name, box in panel.product_checks.items():
        box.setChecked(name in ("ndvi", "ndmi"))
    panel.aoi_cloud_spin.setValue(50)  # the sample's second date is ~95 % cloud over the AOI
    plan_job(dock, sample)
    job_id = submit(dock)
    status = wait_finished(dock, job_id)
    assert (status.counts["SUCCEEDED"], status.counts["SKIPPED"]) == (2, 2)
    skipped = [r for r in status.records if r.status is Status.SKIPPED]
    assert {r.date for r in skipped} == {"2024-06-11"}
    assert all(r.error.startswith("AOI ") and r.error.endswith("% masked > 50 %")
               for r in skipped)
    jobs = dock.jobs_panel
    row = jobs.model.job_row(job_id)
    assert jobs.model.item(row, 1).text() == "succeeded, 2 skipped"
    assert jobs.cell_text(job_id, skipped[0].cell_id, 1) == "skipped"
    wait_until(lambda: any("2 skipped" in m for m in
                           messages(qgis_iface, Qgis.MessageLevel.Success)), 10, "the notice")
    jobs.select_job(job_id)
    assert jobs._actions["series"].isEnabled()
    dialog = jobs.time_series(job_id)
    try:
        assert [r["status"] for r in dialog.rows] == ["SUCCEEDED"] * 4 + ["SKIPPED"] * 4
        assert dialog.export_png(str(tmp_path / "dock.png"))
        assert _has_color(QImage(str(tmp_path / "dock.png")), SKIPPED_COLOR) > 5
    finally:
        dialog.close()
