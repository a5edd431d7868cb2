"""Each index's AOI statistics, gathered strip by strip, against numpy on the same pixels:
count, valid fraction, mean and std exact (float64), median/p10/p90 within 1e-5."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from shapely.geometry import shape

from qgis_rsbatch.core.contract import Status
from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog
from tests.worker.test_process import AOI, make_cell
from worker import process
from worker.aoistats import BIN_WIDTH, IndexStats

#: the bound on a percentile: half a bin, plus float64 rounding at a bin's edge
BOUND = BIN_WIDTH / 2 + 1e-12


def reference(values: np.ndarray, aoi_pixels: int) -> dict:
    valid = values[~np.isnan(values)].astype(np.float64)
    return {"valid_pixels": valid.size, "aoi_pixels": aoi_pixels,
            "valid_fraction": valid.size / aoi_pixels, "mean": valid.mean(),
            "std": valid.std(), "median": np.percentile(valid, 50),
            "p10": np.percentile(valid, 10), "p90": np.percentile(valid, 90)}


def assert_stats(got: dict, want: dict) -> None:
    assert got["valid_pixels"] == want["valid_pixels"]
    assert got["aoi_pixels"] == want["aoi_pixels"]
    assert got["valid_fraction"] == pytest.approx(want["valid_fraction"], rel=1e-12)
    assert got["mean"] == pytest.approx(want["mean"], rel=1e-9, abs=1e-12)
    assert got["std"] == pytest.approx(want["std"], rel=1e-9, abs=1e-12)
    for name in ("median", "p10", "p90"):
        assert abs(got[name] - want[name]) <= BOUND, name


@pytest.mark.parametrize("product", ["ndvi", "savi", "evi"])
def test_strip_by_strip_statistics_match_numpy(product):
    rng = np.random.default_rng(3)
    values = rng.normal(0.3, 0.35, (700, 300)).astype(np.float32)
    values = np.clip(values, -1, 1) if product == "ndvi" else values
    values[rng.random(values.shape) < 0.3] = np.nan   # masked and outside-AOI pixels
    values[5, :10] = [-1, 1, -1, 1, 0, 0.5, -0.5, 1, 1, -1]  # the range's very edges
    if product == "evi":  # EVI is unbounded: values beyond [-1, 1] are kept exactly
        values[100:140, :50] = rng.uniform(-40, 40, (40, 50)).astype(np.float32)
    stats = IndexStats(product)
    for row in range(0, 700, 97):  # strips of uneven height, as an AOI window gives
        stats.add(values[row:row + 97])
    assert_stats(stats.result(210_000), reference(values, 210_000))


def test_statistics_of_nothing_valid_are_empty():
    stats = IndexStats("ndmi")
    stats.add(np.full((10, 10), np.nan, np.float32))
    got = stats.result(100)
    assert (got["valid_pixels"], got["valid_fraction"]) == (0, 0.0)
    assert all(got[k] is None for k in ("mean", "median", "std", "p10", "p90"))


def test_the_bound_holds_for_the_worst_case_values():
    """Values in the middle of a bin's far edge: each order statistic off by half a bin."""
    values = (np.arange(-1, 1, BIN_WIDTH * 7) + BIN_WIDTH * 0.999).astype(np.float32)[None]
    stats = IndexStats("ndvi")
    stats.add(values)
    assert_stats(stats.result(values.size), reference(values, values.size))


def _inside_aoi(transform, shape_):
    """Pixel centres inside the AOI, independently of the worker (pyproj + shapely)."""
    rows, cols = np.mgrid[0:shape_[0], 0:shape_[1]]
    xs, ys = transform.c + (cols + 0.5) * 10, transform.f - (rows + 0.5) * 10
    lon, lat = Transformer.from_crs(32632, 4326, always_xy=True).transform(xs, ys)
    return shapely.contains_xy(shape(AOI), lon, lat)


def test_a_cell_records_each_index_s_aoi_statistics(scene_factory, tmp_path, monkeypatch):
    monkeypatch.setattr(process, "STRIP_ROWS", 128)  # many strips: the merge is exercised
    bands = scene_factory(size=1000, cloud=0.25, boa_offset=1000, seed=3, nodata_corner=True)
    log = SqliteTaskLog(str(tmp_path / "log.sqlite"))
    cell = make_cell(bands, tmp_path / "out", aoi=AOI, products=["rgb", "ndvi", "ndmi", "evi"])
    result = process.process_cell(cell, task_log=log)
    assert result.status is Status.SUCCEEDED
    record = log.get(cell.task_id)
    item = json.loads((tmp_path / "out" / "job1" / f"{cell.cell_id}.json").read_text())
    assert set(record.stats) == {"ndvi", "ndmi", "evi"}  # indices only, not RGB
    assert item["properties"]["rsbatch:aoi_stats"] == record.stats
    for product in ("ndvi", "ndmi", "evi"):
        with rasterio.open(result.outputs[product].removeprefix("file://")) as ds:
            values, transform = ds.read(1), ds.transform
        inside = _inside_aoi(transform, values.shape)
        assert np.isnan(values[~inside]).all()
        want = reference(values[inside], int(inside.sum()))
        assert 0.2 < want["valid_fraction"] < 0.95  # clouds masked some of the AOI
        assert_stats(record.stats[product], want)
