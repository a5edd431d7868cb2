"""A job's records as statistics rows: by date, SKIPPED cells as gaps, CSV written whole."""

from __future__ import annotations

import csv

import pytest

from qgis_rsbatch.core import timeseries
from qgis_rsbatch.core.contract import Cell, Status
from qgis_rsbatch.core.errors import OutputFailed
from qgis_rsbatch.core.tasklog.schema import AOI_MASKED_ATTRIBUTE, STATS_ATTRIBUTE, Record


def _record(tile, date, status, stats=None, masked=None):
    cell = Cell.from_dict({"job_id": "j", "tile": tile, "date": date, "products": ["ndvi"],
                           "bands": {"red": "/r.tif", "nir": "/n.tif", "scl": "/s.tif"},
                           "output": "/tmp/o"})
    record = Record.for_cell(cell).moved(Status.RUNNING)
    extra = {AOI_MASKED_ATTRIBUTE: masked}
    if stats:
        extra[STATS_ATTRIBUTE] = stats
    return record.moved(status, extra=extra, error="AOI 90 % masked > 60 %"
                        if status is Status.SKIPPED else "x")


def _stats(mean):
    return {"valid_pixels": 10, "aoi_pixels": 20, "valid_fraction": 0.5, "mean": mean,
            "median": mean, "std": 0.1, "p10": mean - 0.1, "p90": mean + 0.1}


def test_rows_are_by_date_with_skipped_cells_as_gaps_and_failures_left_out(tmp_path):
    records = [
        _record("32TNT", "2024-06-11", Status.SUCCEEDED,
                {"ndmi": _stats(0.2), "ndvi": _stats(0.6)}, 4.0),
        _record("32TMT", "2024-06-11", Status.SKIPPED, masked=91.5),
        _record("32TMT", "2024-06-01", Status.SUCCEEDED, {"ndvi": _stats(0.7)}, 1.25),
        _record("32TMT", "2024-06-21", Status.FAILED),
    ]
    rows = timeseries.stats_rows(records, {"32TMT_2024-06-11": ("rgb", "ndvi", "ndmi")})
    assert [(r["date"], r["tile"], r["product"], r["status"]) for r in rows] == [
        ("2024-06-01", "32TMT", "ndvi", "SUCCEEDED"),
        ("2024-06-11", "32TMT", "ndvi", "SKIPPED"), ("2024-06-11", "32TMT", "ndmi", "SKIPPED"),
        ("2024-06-11", "32TNT", "ndvi", "SUCCEEDED"), ("2024-06-11", "32TNT", "ndmi", "SUCCEEDED")]
    assert rows[0]["mean"] == 0.7 and rows[0]["aoi_masked_pct"] == 1.25
    assert rows[1]["mean"] is None and rows[1]["aoi_masked_pct"] == 91.5
    text = timeseries.table(rows).splitlines()
    assert text[0].split()[:3] == ["DATE", "TILE", "PRODUCT"]
    assert text[2].split() == ["2024-06-11", "32TMT", "ndvi", "SKIPPED", "91.5", "%"]
    path = tmp_path / "stats.csv"
    timeseries.write_csv(rows, str(path))
    with open(path, newline="") as fh:
        read = list(csv.DictReader(fh))
    assert list(read[0]) == list(timeseries.COLUMNS)
    assert float(read[3]["mean"]) == 0.6 and read[1]["mean"] == ""
    assert [p.name for p in tmp_path.iterdir()] == ["stats.csv"]  # no temporary left


def test_an_unwritable_csv_is_a_clear_error_and_leaves_nothing(tmp_path):
    with pytest.raises(OutputFailed, match=r"cannot write .*/missing/stats\.csv"):
        timeseries.write_csv([], str(tmp_path / "missing" / "stats.csv"))
    assert list(tmp_path.iterdir()) == []
