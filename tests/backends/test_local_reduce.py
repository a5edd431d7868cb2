"""The local backend runs a job's reduce units: per-date mosaics and median composites after
the cells, on the generated two-tile sample (32TMT and 32TNT overlap, one UTM zone, two
dates). Real worker processes throughout; pixels are held against the cells' own outputs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import from_bounds

from qgis_rsbatch.core import grid as tile_grid
from qgis_rsbatch.core.backends.local import LocalBackend
from qgis_rsbatch.core.contract import Job, Status
from qgis_rsbatch.core.planning import JobRequest, plan
from tests.backends.test_local import wrapper_python
from tests.cog_reference import assert_valid_cog
from tests.polling import wait_until


def local(uri: str) -> str:
    return uri.removeprefix("file://")


@pytest.fixture
def reduce_job(sample_catalog, tmp_path):
    request = JobRequest(aoi=sample_catalog["aoi"], start=sample_catalog["start"],
                         end=sample_catalog["end"], output=str(tmp_path / "out"),
                         catalog=sample_catalog["catalog"], composite="median")
    return plan(request).job


def backend_for(tmp_path, **options) -> LocalBackend:
    return LocalBackend(task_log_path=str(tmp_path / "log.sqlite"), workers=2, **options)


def on_grid(path: str, transform, shape) -> np.ndarray:
    """A cell's output (same CRS, same 10 m lattice) placed on the mosaic grid, NaN/0 outside."""
    height, width = shape
    with rasterio.open(path) as ds:
        window = from_bounds(transform.c, transform.f - 10 * height, transform.c + 10 * width,
                             transform.f, ds.transform)
        col, row = round(window.col_off), round(window.row_off)
        assert abs(window.col_off - col) < 1e-6 and abs(window.row_off - row) < 1e-6
        out = np.full((ds.count, height, width), ds.nodata if ds.nodata is not None else 0,
                      ds.dtypes[0])
        data = ds.read()
    # the part of the output inside the grid
    r0, c0 = max(0, -row), max(0, -col)
    r1, c1 = min(height, data.shape[1] - row), min(width, data.shape[2] - col)
    out[:, r0:r1, c0:c1] = data[:, r0 + row:r1 + row, c0 + col:c1 + col]
    return out


def valid(data: np.ndarray) -> np.ndarray:
    if np.issubdtype(data.dtype, np.floating):
        return ~np.isnan(data).any(axis=0)
    return (data != 0).all(axis=0)


def assert_remade(records, failing: str, remade: tuple[str, ...]) -> dict:
    """After a resume: `failing` succeeded, the `remade` units ran a second time with every
    input and no remake pending, nothing else ran again. Returns the records by id."""
    again = {r.cell_id: r for r in records}
    for unit_id in remade:
        assert again[unit_id].attempts == 2 and again[unit_id].extra["LackingInputs"] == []
        assert not again[unit_id].extra.get("RemakeReason")
    assert again[failing].status is Status.SUCCEEDED
    assert all(again[i].attempts == 1 for i in again if i not in remade)
    return again


def reference_mosaic(unit, outputs: dict[str, str]) -> np.ndarray:
    """Per pixel, the valid value of the tile whose centre is nearest (the issue's rule)."""
    grid = unit.grid
    transform = rasterio.Affine(*grid.transform)
    shape = (grid.height, grid.width)
    rows, cols = np.mgrid[0:grid.height, 0:grid.width]
    xs, ys = transform.c + 10 * (cols + 0.5), transform.f - 10 * (rows + 0.5)
    layers, distances = [], []
    for cell_id, path in outputs.items():
        x0, y0, x1, y1 = tile_grid.tile_info(cell_id.split("_")[0]).bounds()
        data = on_grid(path, transform, shape)
        layers.append(data)
        distance = np.hypot(xs - (x0 + x1) / 2, ys - (y0 + y1) / 2)
        distances.append(np.where(valid(data), distance, np.inf))
    nearest = np.argmin(np.stack(distances), axis=0)
    stacked = np.stack(layers)
    picked = np.take_along_axis(stacked, nearest[None, None], axis=0)[0]
    nowhere = ~np.isfinite(np.min(np.stack(distances), axis=0))
    picked[:, nowhere] = np.nan if np.issubdtype(picked.dtype, np.floating) else 0
    return picked


def test_a_local_job_makes_per_date_mosaics_and_median_composites(reduce_job, tmp_path):
    job = reduce_job
    assert [u.kind for u in job.units].count("mosaic") == 4      # 2 dates × rgb, ndvi
    assert [u.kind for u in job.units].count("composite") == 2   # 1 period × rgb, ndvi
    status = backend_for(tmp_path).submit(job, wait=True)
    assert status.succeeded, [(r.cell_id, r.status, r.error) for r in status.records]
    assert status.counts["SUCCEEDED"] == len(job.cells) + len(job.units) == 10
    by_id = {r.cell_id: r for r in status.records}
    # job.json carries the units: the job outlives its task log with them
    folder = Path(local(job.cells[0].output)) / job.job_id
    again = Job.from_dict(json.loads((folder / "job.json").read_text())["job"])
    assert again.units == job.units
    for unit in job.units:
        record = by_id[unit.unit_id]
        assert record.attempts == 1 and record.extra["Kind"] == unit.kind
        assert (folder / "logs" / f"{unit.unit_id}.log").is_file()
        path = local(record.outputs[unit.product])
        assert path == local(unit.output_uri())
        assert_valid_cog(path)
        with rasterio.open(path) as ds:
            got = ds.read()
            assert ds.crs.to_epsg() == unit.grid.epsg == 32632
            assert tuple(ds.transform)[:6] == unit.grid.transform
        if unit.kind == "mosaic":
            outputs = {i: local(by_id[i].outputs[unit.product]) for i in unit.inputs}
            want = reference_mosaic(unit, outputs)
            np.testing.assert_array_equal(got, want)
            both = np.stack([valid(on_grid(p, rasterio.Affine(*unit.grid.transform),
                                           got.shape[1:])) for p in outputs.values()])
            assert both.all(axis=0).any()  # the tiles overlap inside the AOI: the rule ran
            assert valid(got).sum() > 10_000  # the comparison is not of two empty rasters
        elif unit.product == "ndvi":
            mosaics = np.stack([rasterio.open(local(by_id[i].outputs["ndvi"])).read(1)
                                for i in unit.inputs])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                median = np.nanmedian(mosaics, axis=0)
            count = np.count_nonzero(~np.isnan(mosaics), axis=0)
            np.testing.assert_allclose(got[0], median, rtol=0, atol=1e-7)
            np.testing.assert_array_equal(got[1][count > 0], count[count > 0])
            assert {1, 2} <= set(np.unique(count))


def test_cancel_while_units_wait_and_resume_finishes_them(reduce_job, tmp_path, monkeypatch):
    """Cells held at a pause point: every unit waits PENDING for them. Cancel stops the cells
    and cancels the waiting units; resume runs the cells, then the units."""
    job = reduce_job
    pause = tmp_path / "pause"
    pause.mkdir()
    monkeypatch.setenv("RSBATCH_WORKER_PAUSE", f"running:{pause}")
    backend = backend_for(tmp_path)
    backend.submit(job)  # detached
    wait_until(lambda: len(list(pause.glob("*.paused"))) >= 2, 120,
               "the cells to reach their pause point")
    waiting = {r.cell_id: r.status for r in backend.status(job.job_id).records}
    assert all(waiting[u.unit_id] is Status.PENDING for u in job.units)
    cancelled = backend.cancel(job.job_id)
    by_id = {r.cell_id: r for r in cancelled.records}
    for unit in job.units:
        assert by_id[unit.unit_id].status is Status.CANCELLED
        assert by_id[unit.unit_id].error == "cancelled by the user"
    assert not (Path(local(job.cells[0].output)) / job.job_id / "mosaic").exists()

    monkeypatch.delenv("RSBATCH_WORKER_PAUSE")
    done = backend.resume(job.job_id, wait=True)
    assert done.succeeded and done.counts["SUCCEEDED"] == 10
    for unit in job.units:
        assert_valid_cog(local(unit.output_uri()))


def test_a_date_whose_cells_all_failed_gives_a_skipped_mosaic(reduce_job, tmp_path):
    """Both cells of 2024-06-11 crash: that date's mosaics end SKIPPED saying why, the other
    date's succeed, and the composites run on what is left, naming what they lacked."""
    job = reduce_job
    crash = ('if [ "$5" = run ] && [[ "$cell" == *\'"date": "2024-06-11"\'* ]]; then '
             'kill -9 $$; fi')
    backend = backend_for(tmp_path, worker_python=wrapper_python(tmp_path, crash))
    status = backend.submit(job, wait=True)
    by_id = {r.cell_id: r for r in status.records}
    assert not status.succeeded and status.finished
    for cell in job.cells:
        want = Status.FAILED if cell.date == "2024-06-11" else Status.SUCCEEDED
        assert by_id[cell.cell_id].status is want
    for product in ("rgb", "ndvi"):
        skipped = by_id[f"mosaic_2024-06-11_{product}"]
        assert skipped.status is Status.SKIPPED
        assert "none of its 2 input(s) published" in skipped.error
        assert not Path(local(job.units[0].output_uri()).replace(
            "2024-06-01_ndvi", f"2024-06-11_{product}")).exists()
        assert by_id[f"mosaic_2024-06-01_{product}"].status is Status.SUCCEEDED
        composite = by_id[f"composite_2024-06-01_2024-06-11_{product}_median"]
        assert composite.status is Status.SUCCEEDED
        assert composite.extra["LackingInputs"] == [f"mosaic_2024-06-11_{product}"]


def test_a_killed_unit_worker_is_failed_with_its_own_log_and_resume_runs_only_it(
        reduce_job, tmp_path):
    """The mosaic's worker dies by SIGKILL on its first attempt: the supervisor records it
    FAILED quoting the unit's own log; the composite still runs, on the other date, saying
    what it lacked; resume runs the mosaic again and remakes the composite that lacked it,
    nothing else."""
    job = reduce_job
    marker = tmp_path / "killed-once"
    crash = (f'if [ "$5" = reduce ] && [[ "$cell" == *\'"unit_id": "mosaic_2024-06-01_ndvi"\'* ]]'
             f' && [ ! -e {marker} ]; then touch {marker}; echo "warping 32TMT" >&2; '
             'kill -9 $$; fi')
    backend = backend_for(tmp_path, worker_python=wrapper_python(tmp_path, crash))
    status = backend.submit(job, wait=True)
    by_id = {r.cell_id: r for r in status.records}
    killed = by_id["mosaic_2024-06-01_ndvi"]
    log = Path(local(job.cells[0].output)) / job.job_id / "logs" / "mosaic_2024-06-01_ndvi.log"
    assert killed.status is Status.FAILED
    assert killed.error == ("the worker process was killed by SIGKILL (out of memory?); "
                            f"last lines of its log: warping 32TMT (log: {log})")
    composite = by_id["composite_2024-06-01_2024-06-11_ndvi_median"]
    assert composite.status is Status.SUCCEEDED
    assert composite.extra["LackingInputs"] == ["mosaic_2024-06-01_ndvi"]
    others = {i for i, r in by_id.items() if i not in (killed.cell_id, composite.cell_id)}
    assert all(by_id[i].status is Status.SUCCEEDED for i in others)

    done = backend.resume(job.job_id, wait=True)
    again = {r.cell_id: r for r in done.records}
    assert done.succeeded
    # two attempts in the unit's log (the first died before it could record RUNNING)
    assert log.read_text().count("attempt started by the rsbatch supervisor") == 2
    assert all(again[i].attempts == 1 for i in others)  # nothing else ran again
    assert again[composite.cell_id].attempts == 2
    assert again[composite.cell_id].extra["LackingInputs"] == []
    assert_valid_cog(local(again[killed.cell_id].outputs["ndvi"]))


def test_a_unit_worker_killed_with_its_scratch_on_disk_leaves_none_and_resume_makes_it(
        reduce_job, tmp_path, monkeypatch):
    """The mosaic's worker is held with its whole COG written under a scratch name in
    <job>/mosaic/, then killed (SIGKILL: it cannot clean up). The supervisor records it
    FAILED and sweeps that folder too; nothing half-made stays; resume makes the mosaic."""
    import os
    import signal

    job = reduce_job
    target = "mosaic_2024-06-01_ndvi"
    pause = tmp_path / "pause"
    pause.mkdir()
    for task in job.tasks:  # every other cell and unit goes straight on
        key = getattr(task, "unit_id", None) or task.cell_id
        if key != target:
            (pause / f"{key}.go").touch()
    monkeypatch.setenv("RSBATCH_WORKER_PAUSE", f"written:{pause}")
    backend = backend_for(tmp_path)
    backend.submit(job)  # detached
    announced = pause / f"{target}.paused"
    wait_until(lambda: announced.exists() and announced.read_text(), 180,
               "the mosaic to reach its pause point")
    mosaics = Path(local(job.cells[0].output)) / job.job_id / "mosaic"
    assert [p.name for p in mosaics.iterdir() if p.name.startswith(".2024-06-01_ndvi.tif.")]
    os.kill(int(announced.read_text()), signal.SIGKILL)
    status = backend.wait(job.job_id, interval=0.2, timeout=180)
    record = {r.cell_id: r for r in status.records}[target]
    assert record.status is Status.FAILED and "killed by SIGKILL" in record.error
    assert sorted(p.name for p in mosaics.iterdir() if p.name.startswith(".")) == []
    assert not (mosaics / "2024-06-01_ndvi.tif").exists()

    monkeypatch.delenv("RSBATCH_WORKER_PAUSE")
    done = backend.resume(job.job_id, wait=True)
    assert done.succeeded
    assert_valid_cog(str(mosaics / "2024-06-01_ndvi.tif"))


def aoi_inside(unit) -> np.ndarray:
    """The mosaic grid's pixels whose centre lies inside the unit's AOI (rasterio's own
    rasterization of the AOI projected with pyproj, not the worker's clip)."""
    from pyproj import Transformer
    from rasterio.features import geometry_mask

    from qgis_rsbatch.core.geometry import densify_geometry

    project = Transformer.from_crs("EPSG:4326", f"EPSG:{unit.grid.epsg}", always_xy=True)
    dense = densify_geometry(unit.aoi, 0.005)  # edges straight in lon/lat bend in UTM
    polygons = [dense["coordinates"]] if dense["type"] == "Polygon" else dense["coordinates"]
    shapes = [{"type": "Polygon", "coordinates": [[project.transform(*p[:2]) for p in ring]
                                                  for ring in polygon]} for polygon in polygons]
    return geometry_mask(shapes, out_shape=(unit.grid.height, unit.grid.width),
                         transform=rasterio.Affine(*unit.grid.transform), invert=True)


def test_a_dates_statistics_come_from_its_mosaic_counting_overlapping_pixels_once(
        sample_catalog, tmp_path):
    """32TMT and 32TNT overlap inside the AOI: the NDVI mosaic's record holds the AOI's
    statistics over the mosaic (count and mean as numpy's over the independent reference
    mosaic within the AOI), fewer valid pixels than the two cells' sum, and the time series
    (rsbatch stats, CSV) shows that one row per date instead of a row per tile."""
    from qgis_rsbatch.core import timeseries

    request = JobRequest(aoi=sample_catalog["aoi"], start=sample_catalog["start"],
                         end=sample_catalog["end"], output=str(tmp_path / "out"),
                         catalog=sample_catalog["catalog"], products=("ndvi",))
    job = plan(request).job
    status = backend_for(tmp_path).submit(job, wait=True)
    assert status.succeeded, [(r.cell_id, r.status, r.error) for r in status.records]
    by_id = {r.cell_id: r for r in status.records}
    mosaics = [u for u in job.units if u.kind == "mosaic"]
    assert len(mosaics) == 2
    for unit in mosaics:
        outputs = {i: local(by_id[i].outputs["ndvi"]) for i in unit.inputs}
        assert len(outputs) == 2
        reference = reference_mosaic(unit, outputs)[0]
        inside = aoi_inside(unit)
        values = reference[inside & ~np.isnan(reference)].astype(np.float64)
        stats = by_id[unit.unit_id].stats["ndvi"]
        assert stats["valid_pixels"] == values.size > 10_000
        assert stats["aoi_pixels"] == int(inside.sum())
        assert stats["mean"] == pytest.approx(values.mean(), abs=1e-9)
        assert stats["std"] == pytest.approx(values.std(), abs=1e-9)
        assert stats["median"] == pytest.approx(np.median(values), abs=1.1e-5)
        # the cells count the overlap twice
        cells = sum(by_id[i].stats["ndvi"]["valid_pixels"] for i in unit.inputs)
        grid = rasterio.Affine(*unit.grid.transform)
        shape = (unit.grid.height, unit.grid.width)
        both = np.stack([valid(on_grid(p, grid, shape)) for p in outputs.values()])
        overlap = int((both.all(axis=0) & inside).sum())
        assert overlap > 1_000 and cells == stats["valid_pixels"] + overlap
        item = json.loads(Path(local(unit.item_uri)).read_text())
        assert item["properties"]["rsbatch:aoi_stats"]["ndvi"] == stats

    rows = timeseries.stats_rows(status.records)
    assert [(r["date"], r["tile"], r["product"]) for r in rows] == [
        (u.date, "mosaic", "ndvi") for u in sorted(mosaics, key=lambda u: u.date)]
    assert rows[0]["valid_pixels"] == by_id[mosaics[0].unit_id].stats["ndvi"]["valid_pixels"]
    # a job without mosaics keeps one row per tile
    cells_only = [r for r in status.records if r.extra.get("Kind") is None]
    assert [r["tile"] for r in timeseries.stats_rows(cells_only)] == ["32TMT", "32TNT"] * 2


def test_resume_remakes_a_unit_made_without_an_input_that_later_succeeds(
        sample_catalog, tmp_path):
    """32TMT's cell of 2024-06-01 dies on its first attempt: that date's mosaic is made from
    32TNT alone and says it lacked 32TMT. Once the cause is gone, resume reruns the cell,
    sends the mosaic (and the composite reading it) back to PENDING and remakes them with
    every input: the mosaic's pixels become the two-tile reference; nothing else reruns."""
    request = JobRequest(aoi=sample_catalog["aoi"], start=sample_catalog["start"],
                         end=sample_catalog["end"], output=str(tmp_path / "out"),
                         catalog=sample_catalog["catalog"], products=("ndvi",),
                         composite="median")
    job = plan(request).job
    failing, mosaic_id = "32TMT_2024-06-01", "mosaic_2024-06-01_ndvi"
    composite_id = "composite_2024-06-01_2024-06-11_ndvi_median"
    fixed = tmp_path / "fixed"
    crash = (f'if [ "$5" = run ] && [[ "$cell" == *\'"cell_id": "{failing}"\'* ]] '
             f'&& [ ! -e {fixed} ]; then kill -9 $$; fi')
    backend = backend_for(tmp_path, worker_python=wrapper_python(tmp_path, crash))
    first = {r.cell_id: r for r in backend.submit(job, wait=True).records}
    assert first[failing].status is Status.FAILED
    assert first[mosaic_id].status is Status.SUCCEEDED
    assert first[mosaic_id].extra["LackingInputs"] == [failing]
    assert first[composite_id].status is Status.SUCCEEDED
    unit = next(u for u in job.units if u.unit_id == mosaic_id)
    path = local(unit.output_uri())
    with rasterio.open(path) as ds:
        before = ds.read(1)
    partial = first[mosaic_id].stats["ndvi"]["valid_pixels"]

    fixed.touch()
    done = backend.resume(job.job_id, wait=True)
    assert done.succeeded, [(r.cell_id, r.status, r.error) for r in done.records]
    # the cell's first attempt died before it could record RUNNING: one attempt recorded
    again = assert_remade(done.records, failing, (mosaic_id, composite_id))
    assert_valid_cog(path)
    with rasterio.open(path) as ds:
        after = ds.read()
    outputs = {i: local(again[i].outputs["ndvi"]) for i in unit.inputs}
    np.testing.assert_array_equal(after, reference_mosaic(unit, outputs))
    gained = np.isnan(before) & ~np.isnan(after[0])
    assert gained.sum() > 10_000  # 32TMT's part of the AOI arrived
    assert again[mosaic_id].stats["ndvi"]["valid_pixels"] == partial + int(gained.sum())
    item = json.loads(Path(local(unit.item_uri)).read_text())
    assert item["properties"]["rsbatch:lacking_inputs"] == []
    composite = next(u for u in job.units if u.unit_id == composite_id)
    mosaics = np.stack([rasterio.open(local(again[i].outputs["ndvi"])).read(1)
                        for i in composite.inputs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(mosaics, axis=0)
    with rasterio.open(local(composite.output_uri())) as ds:
        np.testing.assert_allclose(ds.read(1), median, rtol=0, atol=1e-7)
