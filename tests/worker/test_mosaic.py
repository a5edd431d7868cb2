"""Per-date mosaics on generated scenes, held against an independent reference.

Two set-ups: an AOI across the 31/32 UTM zone boundary (a crop of 31UGR and one of 32UKA,
each covering part of it) and a same-zone overlap (32TMT's eastern edge, 32TNT's western
edge, as in the demo). Cells are processed by the real worker; the reference puts each
cell's output on the planned grid by exact nearest neighbour (pyproj per pixel centre; also
held against rasterio.warp.reproject, which approximates), then picks per pixel the valid
value of the tile whose centre (pyproj) is nearest.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.features import geometry_mask
from rasterio.transform import Affine
from rasterio.warp import reproject, transform_geom

from qgis_rsbatch.core import grid as tile_grid
from qgis_rsbatch.core.contract import Cell, Job, Status
from qgis_rsbatch.core.geometry import densify_geometry
from qgis_rsbatch.core.reduce_plan import plan_reduce
from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog
from tests.cog_reference import assert_valid_cog
from worker.process import process_cell
from worker.reduce import process_unit
from worker.samples import SampleScene, write_scene

#: across the 31/32 boundary (6°E): 31UGR and 32UKA both reach it; more of it lies in 32
CROSS_AOI = {"type": "Polygon", "coordinates": [[
    [5.995, 50.405], [6.115, 50.40], [6.125, 50.445], [6.06, 50.462], [5.99, 50.45],
    [5.995, 50.405]]]}


def local(uri: str) -> str:
    return uri.removeprefix("file://")


def aoi_from_utm(epsg: int, ring: list[tuple[float, float]]) -> dict:
    to_lonlat = Transformer.from_crs(epsg, 4326, always_xy=True)
    coords = [list(to_lonlat.transform(x, y)) for x, y in ring]
    return {"type": "Polygon", "coordinates": [[*coords, coords[0]]]}


def crop_origin(tile: str, x: float, y: float) -> tuple[float, float]:
    """The upper-left corner of a crop of `tile` near (x, y), on the tile's own 10 m grid."""
    ox, oy = tile_grid.tile_info(tile).origin
    return ox + 10 * math.floor((x - ox) / 10), oy - 10 * math.floor((oy - y) / 10)


def make_cells(tmp_path, scenes: list[tuple[str, SampleScene]], aoi, job_id="mos") -> list[Cell]:
    """Write the scenes and process each as a cell of `job_id`, as the worker would."""
    cells = []
    for index, (tile, spec) in enumerate(scenes):
        bands = write_scene(str(tmp_path / "scenes" / f"{tile}_{spec.date}_{index}"), spec)
        cell = Cell.from_dict({
            "job_id": job_id, "tile": tile, "date": spec.date, "bands": bands,
            "products": ["rgb", "ndvi"], "output": str(tmp_path / "out"), "aoi": aoi,
            "offset": -0.1, "cloud_mask": True})
        assert process_cell(cell).status is Status.SUCCEEDED
        cells.append(cell)
    return cells


def tile_centre_in(tile: str, epsg: int) -> tuple[float, float]:
    info = tile_grid.tile_info(tile)
    x0, y0, x1, y1 = info.bounds()
    return Transformer.from_crs(info.epsg, epsg, always_xy=True).transform((x0 + x1) / 2,
                                                                          (y0 + y1) / 2)


def aoi_inside(aoi: dict, epsg: int, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    dense = densify_geometry({"type": "MultiPolygon", "coordinates": [aoi["coordinates"]]}, 0.005)
    projected = transform_geom("EPSG:4326", f"EPSG:{epsg}", dense)
    return geometry_mask([projected], out_shape=shape, transform=transform, invert=True)


def warped(path: str, epsg: int, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """An input on the target grid by exact nearest neighbour: every target pixel's centre
    transformed with pyproj into the input's CRS, and the input pixel holding it."""
    with rasterio.open(path) as ds:
        data, t, src_epsg, nodata = ds.read(), ds.transform, ds.crs.to_epsg(), ds.nodata
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    xs, ys = transform * (cols + 0.5, rows + 0.5)
    if src_epsg != epsg:
        xs, ys = Transformer.from_crs(epsg, src_epsg, always_xy=True).transform(xs, ys)
    col = np.floor((xs - t.c) / t.a).astype(int)
    row = np.floor((ys - t.f) / t.e).astype(int)
    inside = (col >= 0) & (col < data.shape[2]) & (row >= 0) & (row < data.shape[1])
    out = np.full((data.shape[0], *shape), nodata, dtype=data.dtype)
    out[:, inside] = data[:, row[inside], col[inside]]
    return out


def reprojected(path: str, epsg: int, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """The same with rasterio.warp.reproject (nearest): GDAL's warper approximates the
    transformation to 0.125 pixel by default, so a few pixels near input pixel edges differ."""
    with rasterio.open(path) as ds:
        out = np.full((ds.count, *shape), ds.nodata, dtype=ds.dtypes[0])
        reproject(rasterio.band(ds, list(range(1, ds.count + 1))), out, src_nodata=ds.nodata,
                  dst_transform=transform, dst_crs=f"EPSG:{epsg}", dst_nodata=ds.nodata,
                  resampling=Resampling.nearest)
    return out


def valid_of(data: np.ndarray) -> np.ndarray:
    if data.dtype.kind == "f":
        return ~np.isnan(data).any(axis=0)
    return (data != 0).all(axis=0)


def reference_mosaic(cells: list[Cell], product: str, unit) -> tuple[np.ndarray, dict]:
    """The reference: each tile warped, the nearest valid tile per pixel, outside the AOI none."""
    g = unit.grid
    transform, shape = Affine(*g.transform), (g.height, g.width)
    rows, cols = np.mgrid[0:g.height, 0:g.width]
    xs, ys = transform * (cols + 0.5, rows + 0.5)
    layers = [warped(local(c.output_uri(product)), g.epsg, transform, shape) for c in cells]
    distances = []
    for cell, layer in zip(cells, layers):
        cx, cy = tile_centre_in(cell.tile, g.epsg)
        d = np.hypot(xs - cx, ys - cy)
        d[~valid_of(layer)] = np.inf
        distances.append(d)
    stacked = np.stack(distances)
    winner = np.argmin(stacked, axis=0)
    none = np.isinf(stacked.min(axis=0))
    out = np.take_along_axis(np.stack(layers), winner[None, None], axis=0)[0]
    nodata = np.nan if out.dtype.kind == "f" else 0
    out[:, none] = nodata
    out[:, ~aoi_inside(unit.aoi, g.epsg, transform, shape)] = nodata
    wins = {cell.cell_id: int(((winner == i) & ~none).sum()) for i, cell in enumerate(cells)}
    return out, wins


def run_mosaics(tmp_path, cells, aoi, **options):
    log = SqliteTaskLog(str(tmp_path / "log.sqlite"))
    plan = plan_reduce(Job(cells[0].job_id, tuple(cells)), aoi=aoi, **options)
    results = {}
    for unit in plan.units:
        results[unit.unit_id] = (unit, process_unit(unit, task_log=log))
    return plan, results, log


@pytest.fixture(scope="module")
def cross_zone(tmp_path_factory):
    """Crops of 31UGR (west part of the AOI) and 32UKA (east part), overlapping in between."""
    tmp_path = tmp_path_factory.mktemp("cross")
    scenes = []
    for tile, (lon, lat) in (("31UGR", (5.985, 50.466)), ("32UKA", (6.03, 50.466))):
        info = tile_grid.tile_info(tile)
        x, y = Transformer.from_crs(4326, info.epsg, always_xy=True).transform(lon, lat)
        scenes.append((tile, SampleScene(tile=tile, epsg=info.epsg, origin=crop_origin(tile, x, y),
                                         date="2024-06-01", size=800, cloud=0.3, seed=5,
                                         ground_seed=2)))
    cells = make_cells(tmp_path, scenes, CROSS_AOI)
    return tmp_path, cells, *run_mosaics(tmp_path, cells, CROSS_AOI)


@pytest.mark.parametrize("product", ["ndvi", "rgb"])
def test_cross_zone_mosaic_matches_the_reference(cross_zone, product):
    _tmp, cells, plan, results, log = cross_zone
    unit, result = results[f"mosaic_2024-06-01_{product}"]
    assert result.status is Status.SUCCEEDED and result.lacking == []
    # the zone holding most of the AOI, a grid on multiples of 10 m covering it
    assert plan.grid.epsg == 32632
    path = local(result.outputs[product])
    assert path.endswith(f"/mos/mosaic/2024-06-01_{product}.tif")
    assert_valid_cog(path)
    with rasterio.open(path) as ds:
        mosaic = ds.read()
        assert ds.crs.to_epsg() == 32632
        assert ds.transform == Affine(*plan.grid.transform)
        assert ds.transform.c % 10 == 0 and ds.transform.f % 10 == 0 and ds.res == (10, 10)
        assert ds.dtypes[0] == ("float32" if product == "ndvi" else "uint16")
    want, wins = reference_mosaic(cells, product, unit)
    np.testing.assert_array_equal(mosaic, want)
    # GDAL's own warp (approximate to 0.125 pixel) agrees but for a few pixels near input
    # pixel edges: the reference's positions are right
    g = unit.grid
    for cell in cells:
        exact = warped(local(cell.output_uri(product)), g.epsg, Affine(*g.transform),
                       (g.height, g.width))
        gdal = reprojected(local(cell.output_uri(product)), g.epsg, Affine(*g.transform),
                           (g.height, g.width))
        same = (exact == gdal) | (np.isnan(exact) & np.isnan(gdal)) if product == "ndvi" \
            else exact == gdal
        assert same.mean() > 0.99
    # both tiles win somewhere, and the AOI is covered (its pixels hold values)
    assert min(wins.values()) > 1000, wins
    inside = aoi_inside(CROSS_AOI, 32632, Affine(*plan.grid.transform), mosaic.shape[1:])
    assert valid_of(mosaic)[inside].mean() > (0.5 if product == "ndvi" else 0.99)
    assert not valid_of(mosaic)[~inside].any()
    record = log.get(unit.task_id)
    assert record.status is Status.SUCCEEDED and record.outputs == {product: result.outputs[
        product]}


def test_cross_zone_mosaic_falls_back_where_the_nearest_tile_is_cloudy(cross_zone):
    """Where the nearest tile's NDVI is masked (clouds differ between the zones' scenes), the
    other tile's valid value is taken, exactly as warped."""
    _tmp, cells, plan, results, _log = cross_zone
    _unit, result = results["mosaic_2024-06-01_ndvi"]
    g = plan.grid
    transform, shape = Affine(*g.transform), (g.height, g.width)
    ndvi = np.stack([warped(local(c.output_uri("ndvi")), g.epsg, transform, shape)[0]
                     for c in cells])
    covered = np.stack([valid_of(warped(local(c.output_uri("rgb")), g.epsg, transform, shape))
                        for c in cells])
    with rasterio.open(local(result.outputs["ndvi"])) as ds:
        mosaic = ds.read(1)
    rows, cols = np.mgrid[0:g.height, 0:g.width]
    xs, ys = transform * (cols + 0.5, rows + 0.5)
    near = np.stack([np.hypot(xs - cx, ys - cy) for cx, cy in
                     (tile_centre_in(c.tile, g.epsg) for c in cells)])
    nearest = np.argmin(near, axis=0)
    other = 1 - nearest
    pick = lambda a, i: np.take_along_axis(a, i[None], axis=0)[0]  # noqa: E731
    # both tiles see the ground there, but the nearer one is cloudy
    cloudy = covered.all(axis=0) & np.isnan(pick(ndvi, nearest)) & ~np.isnan(pick(ndvi, other))
    assert cloudy.sum() > 100
    assert set(np.unique(nearest[cloudy])) == {0, 1}  # in both tiles' halves
    np.testing.assert_array_equal(mosaic[cloudy], pick(ndvi, other)[cloudy])


def test_same_zone_overlap_is_copied_exactly_and_counted_once(tmp_path):
    """32TMT and 32TNT (zone 32, like the demo) overlap by 9.8 km: no warping, each ground
    pixel once in the mosaic and its statistics; 32TNT's no-data corner falls back to 32TMT."""
    top = 5300040.0 - 15000
    scenes = [
        ("32TMT", SampleScene(tile="32TMT", origin=(399960.0 + 10380 * 10, top), size=600,
                              date="2024-06-11", cloud=0.2, seed=8, ground_seed=4)),
        ("32TNT", SampleScene(tile="32TNT", origin=(499980.0, top), size=600,
                              date="2024-06-11", cloud=0.2, seed=8, ground_seed=4,
                              nodata_corner=True)),
    ]
    aoi = aoi_from_utm(32632, [(500600, top - 300), (509400, top - 500), (509000, top - 5700),
                               (500900, top - 5500)])
    cells = make_cells(tmp_path, scenes, aoi, job_id="same")
    plan, results, _log = run_mosaics(tmp_path, cells, aoi, composite=None)
    assert plan.grid.epsg == 32632 and len(plan.units) == 2
    unit, result = results["mosaic_2024-06-11_ndvi"]
    with rasterio.open(local(result.outputs["ndvi"])) as ds:
        mosaic = ds.read()
        stats = ds.tags(1)
    want, wins = reference_mosaic(cells, "ndvi", unit)
    np.testing.assert_array_equal(mosaic, want)
    assert min(wins.values()) > 1000, wins

    # the overlap's pixels are counted once: the mosaic's valid pixels are the union of the
    # tiles' valid pixels inside the AOI, fewer than their sum
    g = unit.grid
    transform, shape = Affine(*g.transform), (g.height, g.width)
    inside = aoi_inside(aoi, 32632, transform, shape)
    per_tile = [valid_of(warped(local(c.output_uri("ndvi")), 32632, transform, shape)) & inside
                for c in cells]
    union = per_tile[0] | per_tile[1]
    assert (per_tile[0] & per_tile[1]).sum() > 5000
    assert valid_of(mosaic).sum() == union.sum() < per_tile[0].sum() + per_tile[1].sum()
    assert float(stats["STATISTICS_VALID_PERCENT"]) == pytest.approx(
        100 * union.sum() / union.size, abs=1e-3)
    item = json.loads(Path(local(unit.item_uri)).read_text())
    band = item["assets"]["ndvi"]["raster:bands"][0]
    assert band["statistics"]["valid_percent"] == pytest.approx(100 * union.sum() / union.size,
                                                                abs=1e-3)
    assert item["properties"]["proj:epsg"] == 32632
    assert item["properties"]["rsbatch:inputs"] == sorted(c.cell_id for c in cells)


def test_a_failed_input_is_lacking_and_none_left_is_nothing_to_reduce(cross_zone, tmp_path):
    """A mosaic whose one input published nothing runs on the other and says so; with no input
    left it ends with NothingToReduce (exit code 4), recorded SKIPPED with the reason."""
    import shutil

    from qgis_rsbatch.core.contract import ReduceUnit
    from qgis_rsbatch.core.errors import NothingToReduce

    root, cells, plan, results, _log = cross_zone
    unit, _ = results["mosaic_2024-06-01_ndvi"]
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    moved = ReduceUnit.from_dict({**unit.to_dict(), "output": str(out)})
    (out / "mos" / "mosaic").rename(out / "mos" / "old-mosaic")
    (out / "mos" / f"{cells[1].tile}_2024-06-01_ndvi.tif").unlink()
    log = SqliteTaskLog(str(tmp_path / "log.sqlite"))
    result = process_unit(moved, task_log=log)
    assert result.status is Status.SUCCEEDED and result.lacking == [cells[1].cell_id]
    record = log.get(moved.task_id)
    assert record.extra["LackingInputs"] == [cells[1].cell_id]
    assert cells[1].cell_id in record.warnings[0]
    item = json.loads(Path(local(moved.item_uri)).read_text())
    assert item["properties"]["rsbatch:lacking_inputs"] == [cells[1].cell_id]
    with rasterio.open(local(moved.output_uri())) as ds:
        mosaic = ds.read(1)
    g = plan.grid
    only = warped(local(cells[0].output_uri("ndvi")).replace(str(root / "out"), str(out)),
                  g.epsg, Affine(*g.transform), (g.height, g.width))[0]
    inside = aoi_inside(CROSS_AOI, g.epsg, Affine(*g.transform), only.shape)
    only[~inside] = np.nan
    np.testing.assert_array_equal(mosaic, only)

    (out / "mos" / f"{cells[0].tile}_2024-06-01_ndvi.tif").unlink()
    shutil.rmtree(out / "mos" / "mosaic")
    fresh = SqliteTaskLog(str(tmp_path / "fresh.sqlite"))
    with pytest.raises(NothingToReduce, match="none of its 2 input"):
        process_unit(moved, task_log=fresh)
    skipped = fresh.get(moved.task_id)
    assert skipped.status is Status.SKIPPED and "nothing to mosaic" in skipped.error
    assert skipped.extra["LackingInputs"] == list(moved.inputs)
    # run again: still SKIPPED (done), nothing made, no exception
    assert process_unit(moved, task_log=fresh).status is Status.SKIPPED
    assert not (out / "mos" / "mosaic").exists() or not any((out / "mos" / "mosaic").iterdir())


def test_a_true_colour_mosaic_of_one_input_keeps_its_values_and_cloud_flags(cross_zone,
                                                                            tmp_path):
    """With one input left (a composite reads each date so), the mosaic is that tile on the
    grid: its pixels where all three bands hold a value, and its cloud flags there; nodata
    and no flag elsewhere. The tile kept is 32UKA, of the grid's zone: no warp (GDAL's warp
    of 31UGR puts 3 pixels of 2 million on the other side of a pixel edge than pyproj)."""
    import shutil

    from qgis_rsbatch.core.contract import ReduceUnit, cloud_mask_uri
    from worker import cloudflags

    root, cells, plan, results, _log = cross_zone
    unit, _ = results["mosaic_2024-06-01_rgb"]
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    shutil.rmtree(out / "mos" / "mosaic")
    moved = ReduceUnit.from_dict({**unit.to_dict(), "output": str(out)})
    gone = Path(local(cells[0].output_uri("rgb")).replace(str(root / "out"), str(out)))
    gone.unlink()
    Path(cloud_mask_uri(str(gone))).unlink()
    assert process_unit(moved).status is Status.SUCCEEDED

    g = plan.grid
    transform, shape = Affine(*g.transform), (g.height, g.width)
    kept = local(cells[1].output_uri("rgb")).replace(str(root / "out"), str(out))
    want = warped(kept, g.epsg, transform, shape)
    valid = valid_of(want) & aoi_inside(CROSS_AOI, g.epsg, transform, shape)
    want[:, ~valid] = 0
    flags = warped(cloud_mask_uri(kept), g.epsg, transform, shape)[0]
    flags[~valid] = cloudflags.NONE
    with rasterio.open(local(moved.output_uri())) as ds:
        np.testing.assert_array_equal(ds.read(), want)
    with rasterio.open(cloud_mask_uri(local(moved.output_uri()))) as ds:
        np.testing.assert_array_equal(ds.read(1), flags)
    assert valid.sum() > 10_000 and (flags == cloudflags.MASKED).sum() > 100


def test_a_full_disk_fails_the_mosaic_saying_so_and_leaves_nothing(cross_zone, tmp_path,
                                                                    small_disk):
    """The real `rsbatch-worker reduce`, its inputs on a tmpfs with too little room left for
    the mosaic: "no space left", FAILED, no scratch; with room, the same unit succeeds."""
    import shutil
    import subprocess
    import sys

    _root, cells, _plan, results, _log = cross_zone
    unit, _ = results["mosaic_2024-06-01_rgb"]
    inputs = [Path(local(cell.output_uri("rgb"))) for cell in cells]
    room = sum(p.stat().st_size for p in inputs) + (640 << 10)
    disk = small_disk(f"{room // 4096 * 4096 + 4096}")
    for path in inputs:
        (disk / "mos").mkdir(exist_ok=True)
        shutil.copy(path, disk / "mos" / path.name)
    spec = tmp_path / "unit.json"
    spec.write_text(json.dumps({**unit.to_dict(), "output": str(disk)}))
    log = tmp_path / "log.sqlite"

    def reduce():
        return subprocess.run([sys.executable, "-m", "worker.cli", "--task-log",
                               f"sqlite://{log}", "reduce", str(spec)], capture_output=True,
                              text=True, timeout=300, check=False)

    proc = reduce()
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "rsbatch-worker: error:" in line]
    assert len(errors) == 1 and f"no space left on {disk} (tmpfs)" in errors[0], proc.stderr
    assert "MB needed" in errors[0] and "Traceback" not in proc.stderr
    record = SqliteTaskLog(str(log)).get(unit.task_id)
    assert record.status is Status.FAILED and "no space left" in record.error
    assert sorted(p.name for p in disk.rglob("*") if p.is_file()) == sorted(
        p.name for p in inputs)  # the inputs, nothing half-written, no scratch
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    proc = reduce()
    assert proc.returncode == 0, proc.stderr
    assert_valid_cog(str(disk / "mos" / "mosaic" / "2024-06-01_rgb.tif"))
