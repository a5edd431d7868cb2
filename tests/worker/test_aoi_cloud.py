"""The AOI cloud filter: the worker reads SCL inside the AOI only and skips the cell, with no
output, when more of the AOI than the cell's limit is masked, whatever the rest of the tile."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from pyproj import Transformer

from qgis_rsbatch.core.contract import Status
from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog
from tests.worker.test_process import make_cell, read_band
from worker.process import process_cell

MASKED = [0, 1, 3, 8, 9, 10]
BLOCK = 40  # 20 m pixels a side of the AOI square (800 m)


@pytest.fixture(scope="module")
def clear_scene(scene_factory):
    """A mostly clear 1000 px scene (about 10 % masked) with a few clouds."""
    return scene_factory(size=1000, cloud=0.08, boa_offset=1000, seed=9)


def _block_shares(scl):
    """Masked share of every BLOCK × BLOCK window of the 20 m SCL (summed-area table)."""
    masked = np.isin(scl, MASKED).astype(np.int64)
    table = np.pad(masked.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (table[BLOCK:, BLOCK:] - table[:-BLOCK, BLOCK:] - table[BLOCK:, :-BLOCK]
            + table[:-BLOCK, :-BLOCK])
    return sums / BLOCK**2


def _square_aoi(row20, col20):
    """An AOI (EPSG:4326) whose 10 m pixel centres are exactly the 20 m block's pixels."""
    to_lonlat = Transformer.from_crs(32632, 4326, always_xy=True)
    x0, y0 = 399960 + col20 * 20 + 2, 5300040 - row20 * 20 - 2
    x1, y1 = x0 + BLOCK * 20 - 4, y0 - BLOCK * 20 + 4
    ring = [to_lonlat.transform(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
    return {"type": "Polygon", "coordinates": [[list(p) for p in [*ring, ring[0]]]]}


@pytest.fixture(scope="module")
def areas(clear_scene):
    scl, _ = read_band(clear_scene["scl"])
    shares = _block_shares(scl)
    # a square mostly under a cloud (87 %, like the example), not wholly
    cloudy = np.unravel_index(np.argmin(np.abs(shares - 0.87)), shares.shape)
    clear = np.unravel_index(np.argmin(shares), shares.shape)
    return {"tile_share": float(np.isin(scl, MASKED).mean()),
            "cloudy": (_square_aoi(*cloudy), 100 * float(shares[cloudy])),
            "clear": (_square_aoi(*clear), 100 * float(shares[clear]))}


@pytest.fixture
def log(tmp_path):
    return SqliteTaskLog(str(tmp_path / "log.sqlite"))


def test_cloud_over_the_aoi_only_skips_the_cell_with_no_output(clear_scene, areas, tmp_path,
                                                                log):
    aoi, expected = areas["cloudy"]
    assert areas["tile_share"] < 0.15 and 85 < expected < 90  # a clear tile, a cloudy AOI
    out = tmp_path / "out"
    cell = make_cell(clear_scene, out, aoi=aoi, max_aoi_cloud=60)
    result = process_cell(cell, task_log=log)

    assert result.status is Status.SKIPPED and result.outputs == {}
    assert result.aoi_masked_pct == pytest.approx(expected, abs=1e-9)
    assert result.error == f"AOI {expected:.0f} % masked > 60 %"
    assert not list(out.rglob("*.tif")) and not list(out.rglob("*.json"))  # nothing written
    record = log.get(cell.task_id)
    assert record.status is Status.SKIPPED and record.error == result.error
    assert record.aoi_masked_pct == pytest.approx(expected, abs=1e-3)
    # a second run of the same cell (a retry, a resume) leaves it SKIPPED, doing nothing
    again = process_cell(cell, task_log=log)
    assert again.status is Status.SKIPPED and again.error == result.error
    assert log.get(cell.task_id).attempts == 1


def test_a_clear_aoi_of_the_same_scene_succeeds_and_records_its_share(clear_scene, areas,
                                                                      tmp_path, log):
    aoi, expected = areas["clear"]
    cell = make_cell(clear_scene, tmp_path / "out", aoi=aoi, max_aoi_cloud=60,
                     products=["ndvi"])
    result = process_cell(cell, task_log=log)
    assert result.status is Status.SUCCEEDED and expected < 5
    assert log.get(cell.task_id).aoi_masked_pct == pytest.approx(expected, abs=1e-3)
    item = json.loads((tmp_path / "out" / "job1" / f"{cell.cell_id}.json").read_text())
    assert item["properties"]["rsbatch:aoi_masked_pct"] == pytest.approx(expected, abs=1e-3)
    assert item["properties"]["rsbatch:max_aoi_cloud"] == 60


def test_a_cell_just_under_the_limit_succeeds_and_just_over_is_skipped(clear_scene, areas,
                                                                       tmp_path, log):
    aoi, expected = areas["cloudy"]
    under = make_cell(clear_scene, tmp_path / "a", aoi=aoi, max_aoi_cloud=expected + 0.01,
                      products=["ndvi"])
    result = process_cell(under, task_log=log)
    assert result.status is Status.SUCCEEDED and (tmp_path / "a" / "job1").exists()
    over = make_cell(clear_scene, tmp_path / "b", aoi=aoi, max_aoi_cloud=expected - 0.01,
                     job_id="job2", products=["ndvi"])
    skipped = process_cell(over, task_log=log)
    assert skipped.status is Status.SKIPPED
    shown, limit = re.fullmatch(r"AOI ([\d.]+) % masked > ([\d.]+) %", skipped.error).groups()
    assert float(limit) == pytest.approx(expected - 0.01) and float(shown) > float(limit)


def test_without_a_limit_every_record_still_carries_the_aoi_share(clear_scene, areas,
                                                                   tmp_path, log):
    aoi, expected = areas["cloudy"]
    cell = make_cell(clear_scene, tmp_path / "out", aoi=aoi, products=["rgb"])
    assert cell.max_aoi_cloud is None and "scl" not in cell.needed_bands()
    assert process_cell(cell, task_log=log).status is Status.SUCCEEDED
    assert log.get(cell.task_id).aoi_masked_pct == pytest.approx(expected, abs=1e-3)
