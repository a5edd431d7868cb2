"""Period composites: the per-pixel median and count of valid observations, against numpy.

Four dates of two overlapping 32T tiles with clouds in different places; monthly periods
from June to August: June holds three dates, July one, August none.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from qgis_rsbatch.core.contract import Job, ReduceUnit, Status, cloud_mask_uri
from qgis_rsbatch.core.reduce_plan import plan_reduce
from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog
from tests.cog_reference import assert_valid_cog
from tests.worker.test_mosaic import (
    aoi_from_utm,
    local,
    make_cells,
    tile_centre_in,
    valid_of,
    warped,
)
from worker.process import process_cell  # noqa: F401 - the cells are made by the real worker
from worker.reduce import process_unit
from worker.samples import SampleScene

TOP = 5300040.0 - 15000
DATES = (("2024-06-01", 3), ("2024-06-11", 7), ("2024-06-21", 12), ("2024-07-05", 19))
AOI = aoi_from_utm(32632, [(503000, TOP - 200), (507800, TOP - 400), (507600, TOP - 3700),
                           (503300, TOP - 3500)])


def relocated(unit: ReduceUnit, root: Path, tmp_path: Path, **changes) -> ReduceUnit:
    """The unit writing under `tmp_path`, reading the same inputs (linked from `root`'s
    output folder), so its result can be compared with the original's."""
    job_dir = tmp_path / "out" / unit.job_id
    job_dir.mkdir(parents=True)
    for entry in (root / "out" / unit.job_id).iterdir():
        if entry.is_file():
            (job_dir / entry.name).symlink_to(entry)
    if (root / "out" / unit.job_id / "mosaic").exists():
        (job_dir / "mosaic").mkdir()
        for entry in (root / "out" / unit.job_id / "mosaic").iterdir():
            (job_dir / "mosaic" / entry.name).symlink_to(entry)
    return ReduceUnit.from_dict({**unit.to_dict(), "output": str(tmp_path / "out"), **changes})


def stacked(paths: list[str]) -> np.ndarray:
    """(dates, bands, rows, cols) float64 with NaN where a date's pixel is not valid."""
    layers = []
    for path in paths:
        with rasterio.open(path) as ds:
            data = ds.read().astype(np.float64)
            valid = valid_of(ds.read())
        data[:, ~valid] = np.nan
        layers.append(data)
    return np.stack(layers)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("composite")
    scenes = []
    for day, seed in DATES:
        for tile, x0 in (("32TMT", 399960.0 + 10380 * 10), ("32TNT", 499980.0)):
            # a swath edge on one date: true colour, not cloud-masked, lacks a corner there
            edge = tile == "32TMT" and day == "2024-06-11"
            scenes.append((tile, SampleScene(tile=tile, origin=(x0, TOP), size=400, date=day,
                                             cloud=0.35, seed=seed, ground_seed=4,
                                             nodata_corner=edge)))
    cells = make_cells(tmp_path, scenes, AOI, job_id="comp")
    job = Job("comp", tuple(cells), params={"start": "2024-06-01", "end": "2024-08-31"})
    plan = plan_reduce(job, aoi=AOI, composite="median", composite_period="month")
    log = SqliteTaskLog(str(tmp_path / "log.sqlite"))
    results = {unit.unit_id: (unit, process_unit(unit, task_log=log)) for unit in plan.units}
    return tmp_path, job, plan, results, log


def test_plan_has_a_composite_per_month_with_dates_and_says_when_there_is_none(job):
    _tmp, _job, plan, results, _log = job
    composites = sorted(u for u in results if u.startswith("composite_"))
    assert composites == [
        "composite_2024-06-01_2024-06-30_ndvi_median", "composite_2024-06-01_2024-06-30_rgb_median",
        "composite_2024-07-01_2024-07-31_ndvi_median", "composite_2024-07-01_2024-07-31_rgb_median"]
    assert any("between 2024-08-01 and 2024-08-31" in note for note in plan.notes)
    june = results["composite_2024-06-01_2024-06-30_ndvi_median"][0]
    assert june.inputs == ("mosaic_2024-06-01_ndvi", "mosaic_2024-06-11_ndvi",
                           "mosaic_2024-06-21_ndvi")


def reference_clouds(cells, grid) -> np.ndarray:
    """Per pixel of the grid, whether the true colour a date's mosaic shows is cloudy: the
    tile it comes from (the nearest with valid RGB) masks that pixel in its NDVI (the cloud
    mask the indices use) although its RGB is valid."""
    transform, shape = Affine(*grid.transform), (grid.height, grid.width)
    rows, cols = np.mgrid[0:grid.height, 0:grid.width]
    xs, ys = transform * (cols + 0.5, rows + 0.5)
    distances, cloudy = [], []
    for cell in cells:
        rgb = warped(local(cell.output_uri("rgb")), grid.epsg, transform, shape)
        ndvi = warped(local(cell.output_uri("ndvi")), grid.epsg, transform, shape)
        cx, cy = tile_centre_in(cell.tile, grid.epsg)
        distance = np.hypot(xs - cx, ys - cy)
        distance[~valid_of(rgb)] = np.inf
        distances.append(distance)
        cloudy.append(valid_of(rgb) & np.isnan(ndvi[0]))
    winner = np.argmin(np.stack(distances), axis=0)
    return np.take_along_axis(np.stack(cloudy), winner[None], axis=0)[0]


@pytest.mark.parametrize("product", ["ndvi", "rgb"])
def test_median_and_count_match_numpy(job, product):
    """Three June dates with clouds in different places: the median and count of the clear
    observations, as numpy's nanmedian and count. True colour keeps its clouds per date
    (an analyst looks at them) but its composite leaves them out, as the indices do."""
    _tmp, the_job, plan, results, log = job
    unit, result = results[f"composite_2024-06-01_2024-06-30_{product}_median"]
    assert result.status is Status.SUCCEEDED
    path = local(result.outputs[product])
    assert path.endswith(f"/comp/composite/2024-06-01_2024-06-30_{product}_median.tif")
    assert_valid_cog(path)
    mosaics = [local(results[i][1].outputs[product]) for i in unit.inputs]
    obs = stacked(mosaics)
    if product == "rgb":
        for index, input_id in enumerate(unit.inputs):
            day = unit.input_date(input_id)
            cloudy = reference_clouds([c for c in the_job.cells if c.date == day], plan.grid)
            assert cloudy.sum() > 1_000  # the clouds are in the picture ...
            shown = ~np.isnan(obs[index, 0])
            assert (cloudy & shown).sum() == cloudy.sum()
            # ... and the mosaic carries their mask beside it
            with rasterio.open(cloud_mask_uri(mosaics[index])) as ds:
                flags = ds.read(1)
            np.testing.assert_array_equal(flags == 1, cloudy)
            np.testing.assert_array_equal(flags == 255, ~shown)
            obs[index][:, cloudy] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        want = np.nanmedian(obs, axis=0)
    count = np.count_nonzero(~np.isnan(obs[:, 0]), axis=0)
    with rasterio.open(path) as ds:
        got = ds.read()
        assert ds.count == obs.shape[1] + 1
        assert ds.descriptions[-1] == "valid observations (count)"
        assert ds.crs.to_epsg() == plan.grid.epsg == 32632
        assert tuple(ds.transform)[:6] == plan.grid.transform
        if product == "rgb":  # true colour stays true colour; the count is an extra band
            assert [c.name for c in ds.colorinterp] == ["red", "green", "blue", "undefined"]
    assert not list(Path(path).parent.glob("*.aux.xml"))  # everything inside the COG
    with rasterio.open(mosaics[0]) as ds:
        inside = valid_of(ds.read()) | ~np.isnan(obs).all(axis=(0, 1))
    # clouds and the swath edge differ between dates: some pixels have all three
    # observations, some fewer
    assert {1, 2, 3} <= set(np.unique(count[inside]))
    if product == "ndvi":
        np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-7)   # NaN where none
        np.testing.assert_array_equal(np.isnan(got[0]), count == 0)
        assert (got[1][count > 0] == count[count > 0]).all()
    else:
        np.testing.assert_array_equal(got[:3][:, count > 0], np.rint(want)[:, count > 0])
        assert (got[:3][:, count == 0] == 0).all()
        np.testing.assert_array_equal(got[3], count)
    # where all three dates see the ground, the median is not any one date's picture
    full = count == 3
    for index in range(obs.shape[0]):
        assert (got[0][full] != obs[index, 0][full]).any()
    record = log.get(unit.task_id)
    assert record.status is Status.SUCCEEDED and record.extra["Kind"] == "composite"
    item = json.loads(Path(local(unit.item_uri)).read_text())
    assert item["properties"]["start_datetime"].startswith("2024-06-01")
    assert item["properties"]["end_datetime"].startswith("2024-06-30")
    assert item["assets"][product]["raster:bands"][-1]["name"] == "count"


def test_a_period_with_one_date_is_that_dates_mosaic_with_count_one(job):
    _tmp, _job, _plan, results, _log = job
    unit, result = results["composite_2024-07-01_2024-07-31_ndvi_median"]
    assert unit.inputs == ("mosaic_2024-07-05_ndvi",)
    with rasterio.open(local(result.outputs["ndvi"])) as ds:
        got = ds.read()
    with rasterio.open(local(results["mosaic_2024-07-05_ndvi"][1].outputs["ndvi"])) as ds:
        mosaic = ds.read(1)
    np.testing.assert_array_equal(got[0], mosaic)
    np.testing.assert_array_equal(got[1][~np.isnan(mosaic)], 1)


def test_a_period_with_one_date_in_true_colour_is_its_mosaic_without_the_clouds(job):
    """The July RGB composite: that date's mosaic where its cloud mask says clear (count 1),
    nodata and count 0 where cloudy, although the mosaic itself shows the clouds."""
    _tmp, _job, _plan, results, _log = job
    unit, result = results["composite_2024-07-01_2024-07-31_rgb_median"]
    assert result.status is Status.SUCCEEDED and unit.inputs == ("mosaic_2024-07-05_rgb",)
    mosaic_path = local(results["mosaic_2024-07-05_rgb"][1].outputs["rgb"])
    with rasterio.open(local(result.outputs["rgb"])) as ds:
        got = ds.read()
    with rasterio.open(mosaic_path) as ds:
        mosaic = ds.read()
    with rasterio.open(cloud_mask_uri(mosaic_path)) as ds:
        flags = ds.read(1)
    clear = flags == 0
    cloudy = valid_of(mosaic) & (flags == 1)
    assert clear.sum() > 1_000 and cloudy.sum() > 1_000
    np.testing.assert_array_equal(got[:3][:, clear], mosaic[:, clear])
    assert (got[:3][:, ~clear] == 0).all()
    np.testing.assert_array_equal(got[3], clear.astype(got.dtype))


def test_a_composite_of_cells_equals_the_composite_of_their_mosaics(job, tmp_path):
    """With mosaics off, a composite reads the cells and merges each date itself."""
    root, the_job, _plan, results, _log = job
    plan = plan_reduce(the_job, aoi=AOI, mosaic=False, composite="median",
                       composite_period="month")
    unit = next(u for u in plan.units if u.unit_id.startswith("composite_2024-06-01_")
                and u.product == "rgb")
    assert all(not i.startswith("mosaic_") for i in unit.inputs) and len(unit.inputs) == 6
    moved = relocated(unit, root, tmp_path)
    result = process_unit(moved)
    assert result.outputs["rgb"] != results[unit.unit_id][1].outputs["rgb"]
    with rasterio.open(local(result.outputs["rgb"])) as ds:
        from_cells = ds.read()
    with rasterio.open(local(results[unit.unit_id][1].outputs["rgb"])) as ds:
        from_mosaics = ds.read()
    np.testing.assert_array_equal(from_cells, from_mosaics)


def test_a_unit_already_made_is_not_made_again(job):
    _tmp, _job, _plan, results, log = job
    unit, first = results["composite_2024-06-01_2024-06-30_ndvi_median"]
    path = Path(local(first.outputs["ndvi"]))
    stamp = path.stat().st_mtime_ns
    again = process_unit(unit, task_log=log)
    assert again.skipped and again.status is Status.SUCCEEDED
    assert again.outputs == first.outputs and path.stat().st_mtime_ns == stamp


def run_worker(*args):
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_reduce_command_exit_codes(job, tmp_path):
    """0 with a JSON line when made; 2 and one line for a bad unit; 4 and one line, recorded
    with the reason, when every input is lacking."""
    root, _job, _plan, results, _log = job
    unit = results["composite_2024-06-01_2024-06-30_ndvi_median"][0]
    log = f"sqlite://{tmp_path / 'log.sqlite'}"
    moved = relocated(unit, root, tmp_path).to_dict()
    proc = run_worker("--task-log", log, "reduce", json.dumps(moved))
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line["status"] == "SUCCEEDED" and line["lacking_inputs"] == []
    assert_valid_cog(local(line["outputs"]["ndvi"]))

    bad = {**unit.to_dict(), "method": "mean"}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    proc = run_worker("--task-log", log, "reduce", str(tmp_path / "bad.json"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "rsbatch-worker: error: reduce unit field 'method' must be one of median, got 'mean'")

    nowhere = {**unit.to_dict(), "unit_id": "nothing", "output": str(tmp_path / "empty")}
    proc = subprocess.run([sys.executable, "-m", "worker.cli", "--task-log", log, "reduce", "-"],
                          input=json.dumps(nowhere), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    errors = [x for x in proc.stderr.splitlines() if x.startswith("rsbatch-worker: error:")]
    assert len(errors) == 1 and "none of its 3 input(s) published" in errors[0]
    record = SqliteTaskLog(str(tmp_path / "log.sqlite")).get("comp#nothing")
    assert record.status is Status.SKIPPED and "nothing to composite" in record.error
    assert not (tmp_path / "empty").exists() or not any(
        p.is_file() for p in (tmp_path / "empty").rglob("*"))


def test_small_windows_give_the_same_pixels(job, tmp_path, monkeypatch):
    """Under a tiny memory budget the units run in strips of a few rows and windows of a few
    columns; mosaics and composites come out the same, pixel for pixel."""
    import worker.composite

    root, _job, _plan, results, _log = job
    monkeypatch.setattr(worker.composite, "DEFAULT_BUDGET", 40_000)
    for index, unit_id in enumerate(("mosaic_2024-06-11_rgb",
                                     "composite_2024-06-01_2024-06-30_ndvi_median")):
        unit, result = results[unit_id]
        moved = relocated(unit, root, tmp_path / str(index))
        again = process_unit(moved)
        assert again.outputs != result.outputs
        with rasterio.open(local(again.outputs[unit.product])) as ds:
            small = ds.read()
            assert ds.block_shapes[0] == (512, 512)
        with rasterio.open(local(result.outputs[unit.product])) as ds:
            np.testing.assert_array_equal(small, ds.read())
