"""The worker end to end on generated scenes: values, grid, masks, clipping, offsets, retries."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from shapely.geometry import Point, shape

from qgis_rsbatch.core.contract import Cell, Status
from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog
from tests.cog_reference import assert_valid_cog
from tests.worker.test_compute import reference_ndvi
from worker.process import process_cell

#: an AOI inside the first 1000 px of 32TMT, with a diagonal edge so clipping shows
AOI = {"type": "Polygon", "coordinates": [[[7.705, 47.84], [7.76, 47.835], [7.745, 47.80],
                                           [7.70, 47.805], [7.705, 47.84]]]}


def make_cell(bands: dict, out, **fields) -> Cell:
    data = {"job_id": "job1", "tile": "32TMT", "date": "2024-06-01", "bands": bands,
            "products": ["rgb", "ndvi"], "output": str(out), "scale": 0.0001,
            "offset": -0.1, "offset_check": False, "cloud_mask": True, **fields}
    return Cell.from_dict(data)


def read_band(path, window=None):
    with rasterio.open(path) as ds:
        return ds.read(1, window=window), ds.profile


def scl_at_10m(path, shape):
    scl, _ = read_band(path)
    return np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1)[: shape[0], : shape[1]]


def fail_assembly(monkeypatch, needle: str, message: str) -> None:
    """Assembling a COG whose scratch name holds `needle` fails with OSError(message), as a
    disk filling up at the end would; every other COG is assembled as usual."""
    from worker import tiff

    assemble = tiff.assemble

    def failing(level_paths, dest, **kwargs):
        if needle in dest:
            raise OSError(message)
        return assemble(level_paths, dest, **kwargs)

    monkeypatch.setattr(tiff, "assemble", failing)


@pytest.fixture
def log(tmp_path):
    return SqliteTaskLog(str(tmp_path / "log.sqlite"))


def test_full_cell_values_grid_masks_and_record(scene, tmp_path, log):
    cell = make_cell(scene, tmp_path / "out")
    result = process_cell(cell, task_log=log)

    assert result.status is Status.SUCCEEDED and not result.skipped
    red, red_profile = read_band(scene["red"])
    nir, _ = read_band(scene["nir"])
    green, _ = read_band(scene["green"])
    blue, _ = read_band(scene["blue"])
    scl = scl_at_10m(scene["scl"], red.shape)
    ndvi_path = result.outputs["ndvi"].removeprefix("file://")
    rgb_path = result.outputs["rgb"].removeprefix("file://")
    assert ndvi_path == str(tmp_path / "out" / "job1" / "32TMT_2024-06-01_ndvi.tif")
    with rasterio.open(ndvi_path) as ds:
        ndvi = ds.read(1)
        assert ds.crs == red_profile["crs"] and ds.crs.to_epsg() == 32632
        assert ds.transform == red_profile["transform"]
        assert ds.dtypes == ("float32",) and np.isnan(ds.nodata)
    want = reference_ndvi(red, nir, 0.0001, -0.1, scl)
    np.testing.assert_array_equal(np.isnan(ndvi), np.isnan(want))
    np.testing.assert_allclose(ndvi[~np.isnan(ndvi)], want[~np.isnan(want)], atol=2e-6)
    cloudy = np.isin(scl, [3, 8, 9, 10]) & (red > 0)
    assert cloudy.sum() > 1000 and np.isnan(ndvi[cloudy]).all()   # the scene has clouds
    assert np.nanmean(ndvi[scl == 4]) > 0.6 and np.nanmean(ndvi[scl == 6]) < 0  # veg, water

    with rasterio.open(rgb_path) as ds:
        rgb = ds.read()
        assert ds.transform == red_profile["transform"] and ds.nodata == 0
        assert [c.name for c in ds.colorinterp] == ["red", "green", "blue"]
    for band, dn in zip(rgb, (red, green, blue)):
        valid = (red > 0) & (green > 0) & (blue > 0)
        np.testing.assert_array_equal(band[valid], np.maximum(dn[valid].astype(int) - 1000, 1))
        assert (band[~valid] == 0).all()

    for path in (ndvi_path, rgb_path):
        assert_valid_cog(path)
    item = json.loads((tmp_path / "out" / "job1" / "32TMT_2024-06-01.json").read_text())
    assert item["assets"]["ndvi"]["href"] == "./32TMT_2024-06-01_ndvi.tif"
    assert item["assets"]["ndvi"]["file:size"] == os.path.getsize(ndvi_path)
    assert item["properties"]["proj:epsg"] == 32632
    record = log.get("job1#32TMT_2024-06-01")
    assert record.status is Status.SUCCEEDED and record.attempts == 1
    assert record.outputs == result.outputs and record.error is None


def test_aoi_clip_keeps_the_tile_grid_and_blanks_outside(scene, tmp_path, log):
    cell = make_cell(scene, tmp_path / "out", aoi=AOI)
    result = process_cell(cell, task_log=log)
    with rasterio.open(result.outputs["ndvi"].removeprefix("file://")) as ds:
        ndvi, t = ds.read(1), ds.transform
    # aligned to the tile's 10 m grid
    assert (t.c - 399960) % 10 == 0 and (5300040 - t.f) % 10 == 0 and t.a == 10
    col0, row0 = int((t.c - 399960) / 10), int((5300040 - t.f) / 10)
    red, _ = read_band(scene["red"])
    nir, _ = read_band(scene["nir"])
    scl = scl_at_10m(scene["scl"], red.shape)
    window = (slice(row0, row0 + ndvi.shape[0]), slice(col0, col0 + ndvi.shape[1]))
    want = reference_ndvi(red[window], nir[window], 0.0001, -0.1, scl[window])
    # pixel centres inside the AOI polygon (computed independently with pyproj + shapely)
    to_lonlat = Transformer.from_crs(32632, 4326, always_xy=True)
    rows, cols = np.mgrid[0:ndvi.shape[0], 0:ndvi.shape[1]]
    xs, ys = t.c + (cols + 0.5) * 10, t.f - (rows + 0.5) * 10
    lon, lat = to_lonlat.transform(xs.ravel(), ys.ravel())
    polygon = shape(AOI)
    inside = np.array([polygon.contains(Point(x, y)) for x, y in zip(lon, lat)])
    inside = inside.reshape(ndvi.shape)
    assert inside.mean() > 0.5 and (~inside).sum() > 1000
    assert np.isnan(ndvi[~inside]).all()
    # the window is the AOI's bounding box snapped outward to the 10 m grid
    to_utm = Transformer.from_crs(4326, 32632, always_xy=True)
    ax, ay = to_utm.transform(*zip(*AOI["coordinates"][0]))
    left, top = t.c, t.f
    right, bottom = left + 10 * ndvi.shape[1], top - 10 * ndvi.shape[0]
    assert left <= min(ax) < left + 10 and right - 10 < max(ax) <= right
    assert bottom <= min(ay) < bottom + 10 and top - 10 < max(ay) <= top
    boundary = np.abs(inside.astype(int) - np.roll(inside, 1, 1)) > 0
    interior = inside & ~boundary & ~np.roll(boundary, -1, 1)
    np.testing.assert_array_equal(np.isnan(ndvi[interior]), np.isnan(want[interior]))
    np.testing.assert_allclose(ndvi[interior & ~np.isnan(want)],
                               want[interior & ~np.isnan(want)], atol=2e-6)


@pytest.mark.parametrize(("boa_offset", "catalog_offset", "truth"), [(0, -0.1, 0.0),
                                                                     (1000, 0.0, -0.1)])
def test_offset_check_corrects_a_wrong_catalog_offset(scene_factory, tmp_path, log,
                                                      boa_offset, catalog_offset, truth):
    bands = scene_factory(size=800, boa_offset=boa_offset, cloud=0.1, seed=11)
    cell = make_cell(bands, tmp_path / "out", offset=catalog_offset, offset_check=True,
                     products=["ndvi"])
    result = process_cell(cell, task_log=log)
    assert any("offset corrected" in w for w in result.warnings)
    red, _ = read_band(bands["red"])
    nir, _ = read_band(bands["nir"])
    scl = scl_at_10m(bands["scl"], red.shape)
    with rasterio.open(result.outputs["ndvi"].removeprefix("file://")) as ds:
        ndvi = ds.read(1)
        assert float(ds.tags()["REFLECTANCE_OFFSET_APPLIED"]) == truth
    np.testing.assert_allclose(ndvi, reference_ndvi(red, nir, 0.0001, truth, scl), atol=2e-6)
    record = log.get(cell.task_id)
    assert any("offset corrected" in w for w in record.warnings)
    item = json.loads((tmp_path / "out" / "job1" / "32TMT_2024-06-01.json").read_text())
    reflectance = item["properties"]["rsbatch:reflectance"]
    assert reflectance["verdict"] == "corrected"
    assert reflectance["offset"] == truth and reflectance["catalog_offset"] == catalog_offset


def test_offset_check_confirms_a_right_offset(scene, tmp_path, log):
    cell = make_cell(scene, tmp_path / "out", offset_check=True, products=["ndvi"])
    result = process_cell(cell, task_log=log)
    assert result.warnings == []
    item = json.loads((tmp_path / "out" / "job1" / "32TMT_2024-06-01.json").read_text())
    assert item["properties"]["rsbatch:reflectance"]["verdict"] == "verified"


@pytest.mark.parametrize("fmt", ["JP2", "GTiff"])
def test_jp2_and_plain_geotiff_inputs_give_the_same_products(scene_factory, tmp_path, fmt):
    spec = {"size": 600, "cloud": 0.2, "seed": 5}
    cog = process_cell(make_cell(scene_factory(**spec), tmp_path / "a"))
    other = process_cell(make_cell(scene_factory(fmt=fmt, **spec), tmp_path / "b"))
    for product in ("rgb", "ndvi"):
        a, _ = read_band(cog.outputs[product].removeprefix("file://"))
        b, _ = read_band(other.outputs[product].removeprefix("file://"))
        np.testing.assert_array_equal(a, b)


def test_rerun_skips_complete_outputs_and_redoes_missing_ones(scene, tmp_path, log):
    cell = make_cell(scene, tmp_path / "out")
    first = process_cell(cell, task_log=log)
    paths = {p: u.removeprefix("file://") for p, u in first.outputs.items()}
    stamps = {p: os.stat(path).st_mtime_ns for p, path in paths.items()}
    again = process_cell(cell, task_log=log)
    assert again.skipped and again.outputs == first.outputs
    assert {p: os.stat(path).st_mtime_ns for p, path in paths.items()} == stamps
    assert log.get(cell.task_id).attempts == 1           # nothing ran again
    os.remove(paths["ndvi"])
    third = process_cell(cell, task_log=log)
    assert not third.skipped and os.path.exists(paths["ndvi"])
    with open(paths["rgb"], "r+b") as fh:                # a damaged output is redone too
        fh.truncate(1000)
    assert not process_cell(cell, task_log=log).skipped
    assert_valid_cog(paths["rgb"])


@pytest.mark.parametrize("failing", ["rgb", "ndvi"])
def test_a_product_that_cannot_be_finished_takes_the_finished_ones_along(
        scene, tmp_path, log, monkeypatch, failing):
    """The products are finished side by side; when one cannot be (here its COG assembly
    fails), the cell fails with that reason and leaves no output, not even the product that
    was finished beside it, nor a scratch file."""
    fail_assembly(monkeypatch, f"_{failing}.tif", f"cannot assemble {failing}")
    cell = make_cell(scene, tmp_path / "out")
    with pytest.raises(OSError, match=f"cannot assemble {failing}"):
        process_cell(cell, task_log=log)
    assert log.get(cell.task_id).status is Status.FAILED
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


def test_a_cancelled_cell_does_not_run(scene, tmp_path, log):
    cell = make_cell(scene, tmp_path / "out")
    log.register([cell])
    log.transition(cell.task_id, Status.CANCELLED, error="cancelled by the user")
    result = process_cell(cell, task_log=log)
    assert result.status is Status.CANCELLED
    assert not (tmp_path / "out").exists()


def test_product_threads_keep_to_the_cores_the_local_backend_shares_out(monkeypatch):
    """Two workers side by side on two cores get one core each: one product thread each."""
    from worker.process import products_pool

    monkeypatch.setenv("RSBATCH_GDAL_THREADS", "1")
    with products_pool(2) as pool:
        assert pool._max_workers == 1
    monkeypatch.setenv("RSBATCH_GDAL_THREADS", "2")
    with products_pool(3) as pool:
        assert pool._max_workers == 2
    monkeypatch.delenv("RSBATCH_GDAL_THREADS")
    with products_pool(1) as pool:
        assert pool._max_workers == 1


def test_true_colour_keeps_its_clouds_and_writes_the_indices_mask_beside_it(scene, tmp_path):
    """RGB is not masked; beside it the cell writes the SCL mask its NDVI uses (0 clear,
    1 masked, 255 no RGB), listed in the STAC item; a cell missing it is made again."""
    from qgis_rsbatch.core.contract import cloud_mask_uri
    from qgis_rsbatch.core.products import MASKED_SCL

    cell = make_cell(scene, tmp_path / "out")
    assert process_cell(cell).status is Status.SUCCEEDED
    path = cloud_mask_uri(cell.output_uri("rgb")).removeprefix("file://")
    assert path.endswith("32TMT_2024-06-01_rgb_clouds.tif")
    assert_valid_cog(path)
    with rasterio.open(path) as ds:
        flags = ds.read(1)
    with rasterio.open(cell.output_uri("rgb").removeprefix("file://")) as ds:
        rgb = ds.read()
    shown = (rgb != 0).all(axis=0)
    masked = np.isin(scl_at_10m(scene["scl"], flags.shape), MASKED_SCL)
    assert (masked & shown).sum() > 1_000 and (~masked & shown).sum() > 1_000
    np.testing.assert_array_equal(flags, np.where(shown, masked.astype(np.uint8), 255))
    with open(cell.item_uri.removeprefix("file://")) as fh:
        item = json.load(fh)
    assert item["assets"]["rgb_clouds"]["file:size"] == os.path.getsize(path)
    os.remove(path)
    assert not process_cell(cell).skipped and os.path.exists(path)
    assert not os.path.exists(cloud_mask_uri(cell.output_uri("ndvi")).removeprefix("file://"))
