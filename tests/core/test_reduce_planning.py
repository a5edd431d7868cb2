"""Reduce units in the core: the contract's ReduceUnit, its task-log record, and the planner
(per-date mosaics, period composites, the grid in the AOI's majority UTM zone)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pyproj import Transformer

from qgis_rsbatch.core.contract import Cell, Job, ReduceUnit, Status
from qgis_rsbatch.core.errors import InvalidInput
from qgis_rsbatch.core.reduce_plan import majority_zone, mosaic_grid, periods, plan_reduce
from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog

BANDS = {"blue": "b.tif", "green": "g.tif", "red": "r.tif", "nir": "n.tif", "scl": "s.tif"}


def box(west: float, south: float, east: float, north: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north],
                                                [west, north], [west, south]]]}


#: 5.90°-6.03°E: 0.10° in zone 31, 0.03° in zone 32
MOSTLY_31 = box(5.90, 50.40, 6.03, 50.46)
#: 5.97°-6.10°E: 0.03° in zone 31, 0.10° in zone 32
MOSTLY_32 = box(5.97, 50.40, 6.10, 50.46)


def cell(tile: str, date: str, aoi=None, products=("rgb", "ndvi"), job_id="j") -> Cell:
    return Cell.from_dict({"job_id": job_id, "tile": tile, "date": date, "bands": BANDS,
                           "products": list(products), "output": "/data/out", "aoi": aoi})


def job_of(*cells: Cell, **params) -> Job:
    return Job(cells[0].job_id, tuple(cells), params=params)


# --- the grid ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("aoi", "epsg"), [
    (MOSTLY_31, 32631), (MOSTLY_32, 32632),
    (box(-47.10, -23.60, -46.95, -23.50), 32723),   # São Paulo: zone 23 south
    (box(179.90, 65.0, 180.3, 65.1), 32601),         # across the antimeridian: mostly zone 1
])
def test_the_mosaic_crs_is_the_zone_holding_most_of_the_aoi(aoi, epsg):
    assert majority_zone(aoi) == epsg
    assert mosaic_grid(aoi).epsg == epsg


@pytest.mark.parametrize(("aoi", "epsg"), [(MOSTLY_31, None), (MOSTLY_32, None),
                                           (MOSTLY_32, 32631), (MOSTLY_32, 3035)])
def test_the_grid_covers_the_aoi_on_multiples_of_10_m(aoi, epsg):
    grid = mosaic_grid(aoi, epsg)
    if epsg is not None:
        assert grid.epsg == epsg
    res, _, x0, _, minus_res, y0 = grid.transform
    assert (res, minus_res) == (10, -10) and x0 % 10 == 0 and y0 % 10 == 0
    west, south, east, north = grid.bounds()
    to_grid = Transformer.from_crs(4326, grid.epsg, always_xy=True)
    ring = aoi["coordinates"][0]
    # every point of every edge (straight in lon/lat) inside the grid, within a few pixels
    points = [(x1 + (x2 - x1) * k / 50, y1 + (y2 - y1) * k / 50)
              for (x1, y1), (x2, y2) in zip(ring, ring[1:]) for k in range(50)]
    xs, ys = zip(*(to_grid.transform(lon, lat) for lon, lat in points))
    assert west < min(xs) and east > max(xs) and south < min(ys) and north > max(ys)
    assert min(xs) - west < 30 and east - max(xs) < 30
    assert min(ys) - south < 30 and north - max(ys) < 30


def test_a_crs_not_in_metres_is_refused():
    with pytest.raises(InvalidInput, match=r"EPSG:4326 .* not a projected CRS in metres"):
        mosaic_grid(MOSTLY_32, 4326)


def test_without_a_polygon_aoi_the_grid_covers_the_tiles():
    job = job_of(cell("32TMT", "2024-06-01"), cell("32TNT", "2024-06-01"),
                 aoi={"type": "Point", "coordinates": [9.0, 47.5]})
    plan = plan_reduce(job)
    west, south, east, north = plan.grid.bounds()
    assert plan.grid.epsg == 32632
    # 32TMT starts at x 399960, 32TNT ends at 499980 + 109800; both from y 5300040 down
    assert west <= 399960 and east >= 609780 and north >= 5300040 and south <= 5190240
    assert plan.units[0].aoi is None


# --- periods ----------------------------------------------------------------------------------
def test_periods_all_month_and_days_are_cut_to_the_range():
    assert periods("2024-06-05", "2024-08-10", "all") == [("2024-06-05", "2024-08-10")]
    assert periods("2024-06-05", "2024-08-10", "month") == [
        ("2024-06-05", "2024-06-30"), ("2024-07-01", "2024-07-31"), ("2024-08-01", "2024-08-10")]
    assert periods("2024-02-01", "2024-02-29", "month") == [("2024-02-01", "2024-02-29")]
    assert periods("2024-06-01", "2024-06-20", "8d") == [
        ("2024-06-01", "2024-06-08"), ("2024-06-09", "2024-06-16"), ("2024-06-17", "2024-06-20")]
    with pytest.raises(InvalidInput, match="'weekly' must be 'all', 'month' or a number"):
        periods("2024-06-01", "2024-06-20", "weekly")
    with pytest.raises(InvalidInput):
        periods("2024-06-01", "2024-06-20", "0d")


# --- units --------------------------------------------------------------------------------------
def test_one_mosaic_per_date_and_product_reading_that_dates_cells():
    cells = [cell("31UGR", "2024-06-01", MOSTLY_32), cell("32UKA", "2024-06-01", MOSTLY_32),
             cell("32UKA", "2024-06-04", MOSTLY_32, products=("ndvi",))]
    plan = plan_reduce(job_of(*cells), aoi=MOSTLY_32)
    ids = [u.unit_id for u in plan.units]
    assert ids == ["mosaic_2024-06-01_ndvi", "mosaic_2024-06-01_rgb", "mosaic_2024-06-04_ndvi"]
    first = plan.units[0]
    assert first.inputs == ("31UGR_2024-06-01", "32UKA_2024-06-01")
    assert first.grid == plan.grid and first.grid.epsg == 32632
    assert first.aoi == MOSTLY_32 and first.kind == "mosaic" and first.date == "2024-06-01"
    assert first.output_uri() == "file:///data/out/j/mosaic/2024-06-01_ndvi.tif"
    assert first.item_uri == "file:///data/out/j/mosaic/2024-06-01_ndvi.json"
    assert first.task_id == "j#mosaic_2024-06-01_ndvi"
    assert first.input_uri("31UGR_2024-06-01") == "file:///data/out/j/31UGR_2024-06-01_ndvi.tif"
    assert plan.notes == ()


def test_composites_per_period_read_mosaics_and_a_period_without_dates_gets_a_note():
    cells = [cell("32TMT", d, products=("ndvi",)) for d in
             ("2024-06-01", "2024-06-11", "2024-06-21", "2024-07-05")]
    job = job_of(*cells, start="2024-06-01", end="2024-08-31")
    plan = plan_reduce(job, composite="median", composite_period="month")
    composites = [u for u in plan.units if u.kind == "composite"]
    assert [(u.period, u.inputs) for u in composites] == [
        (("2024-06-01", "2024-06-30"), ("mosaic_2024-06-01_ndvi", "mosaic_2024-06-11_ndvi",
                                        "mosaic_2024-06-21_ndvi")),
        (("2024-07-01", "2024-07-31"), ("mosaic_2024-07-05_ndvi",)),   # a composite of one
    ]
    assert composites[0].output_uri() == \
        "file:///data/out/j/composite/2024-06-01_2024-06-30_ndvi_median.tif"
    assert composites[0].unit_id == "composite_2024-06-01_2024-06-30_ndvi_median"
    assert composites[0].input_uri("mosaic_2024-06-11_ndvi") == \
        "file:///data/out/j/mosaic/2024-06-11_ndvi.tif"
    assert plan.notes == ("no acquisition of ndvi between 2024-08-01 and 2024-08-31: no "
                          "composite for that period",)
    everything = plan_reduce(job, composite="median")
    assert [u.period for u in everything.units if u.kind == "composite"] == [
        ("2024-06-01", "2024-08-31")]
    tens = plan_reduce(job, composite="median", composite_period="10d", mosaic=False)
    assert [(u.period, u.inputs) for u in tens.units] == [
        (("2024-06-01", "2024-06-10"), ("32TMT_2024-06-01",)),
        (("2024-06-11", "2024-06-20"), ("32TMT_2024-06-11",)),
        (("2024-06-21", "2024-06-30"), ("32TMT_2024-06-21",)),
        (("2024-07-01", "2024-07-10"), ("32TMT_2024-07-05",)),
    ]
    assert len(tens.notes) == 6   # 07-11 … 08-31 in five windows of ten days, and a last one


def test_nothing_planned_without_mosaic_or_composite_and_bad_options_refused():
    job = job_of(cell("32TMT", "2024-06-01"))
    assert plan_reduce(job, mosaic=False).units == ()
    with pytest.raises(InvalidInput, match="composite must be one of median"):
        plan_reduce(job, composite="mean")
    with pytest.raises(InvalidInput, match="composite period"):
        plan_reduce(job, composite="median", composite_period="fortnight")


# --- the contract ------------------------------------------------------------------------------
def unit_dict(**changes) -> dict:
    data = {"job_id": "j", "kind": "mosaic", "product": "ndvi", "date": "2024-06-01",
            "inputs": ["32TMT_2024-06-01", "32TNT_2024-06-01"], "output": "/data/out",
            "grid": {"epsg": 32632, "transform": [10, 0, 500000, 0, -10, 5290000],
                     "width": 800, "height": 600}}
    data.update(changes)
    return data


def test_a_unit_round_trips_through_json():
    import json

    unit = ReduceUnit.from_dict(unit_dict())
    assert ReduceUnit.from_dict(json.loads(json.dumps(unit.to_dict()))) == unit
    composite = ReduceUnit.from_dict(unit_dict(
        kind="composite", date=None, period=["2024-06-01", "2024-06-30"],
        inputs=["mosaic_2024-06-01_ndvi", "mosaic_2024-06-11_ndvi"]))
    assert ReduceUnit.from_dict(composite.to_dict()) == composite
    assert composite.method == "median" and composite.dates == ("2024-06-01", "2024-06-30")


@pytest.mark.parametrize(("changes", "message"), [
    ({"kind": "stack"}, "field 'kind' must be one of mosaic, composite, got 'stack'"),
    ({"product": "evi2"}, "unknown product 'evi2'"),
    ({"inputs": []}, "field 'inputs' must be a non-empty list"),
    ({"inputs": ["32TMT_2024-06-02"]}, "'32TMT_2024-06-02' of 2024-06-02 lies outside"),
    ({"inputs": ["somewhere"]}, "is neither a cell id <tile>_<date> nor a mosaic unit id"),
    ({"inputs": ["mosaic_2024-06-01_ndvi"]}, "a mosaic reads cells"),
    ({"grid": {"epsg": 32632, "transform": [10, 0, 500005, 0, -10, 5290000], "width": 8,
               "height": 6}}, "is not on a multiple of 10 m"),
    ({"grid": {"epsg": 32632, "transform": [20, 0, 500000, 0, -20, 5290000], "width": 8,
               "height": 6}}, "must be (10, 0, x0, 0, -10, y0)"),
    ({"grid": {"epsg": 32632, "transform": [10, 0, 500000, 0, -10, 5290000], "width": 0,
               "height": 6}}, "grid is empty"),
    ({"colour": "red"}, "reduce unit has unknown field(s): colour"),
    ({"grid": None}, "reduce unit field 'grid' is missing"),
    ({"unit_id": "a b"}, "reduce unit field 'unit_id' 'a b' may only hold letters"),
    ({"aoi": {"type": "Point", "coordinates": [8, 47]}},
     "reduce unit field 'aoi' must be a GeoJSON Polygon"),
    ({"kind": "composite", "date": None, "period": ["2024-06-30", "2024-06-01"]},
     "period 2024-06-30 … 2024-06-01 is empty"),
])
def test_bad_units_are_refused_naming_the_field(changes, message):
    with pytest.raises(InvalidInput) as caught:
        ReduceUnit.from_dict(unit_dict(**changes))
    assert message in str(caught.value)


def test_a_unit_has_a_task_log_record_of_its_own(tmp_path):
    log = SqliteTaskLog(str(tmp_path / "log.sqlite"))
    unit = ReduceUnit.from_dict(unit_dict())
    assert log.register([unit]) == 1 and log.register([unit]) == 0
    record = log.get("j#mosaic_2024-06-01_ndvi")
    assert (record.cell_id, record.tile, record.date, record.status) == (
        "mosaic_2024-06-01_ndvi", "mosaic", "2024-06-01", Status.PENDING)
    assert record.extra["Inputs"] == ["32TMT_2024-06-01", "32TNT_2024-06-01"]
    assert (record.kind, record.period) == ("mosaic", ("2024-06-01", "2024-06-01"))
    assert [r.task_id for r in log.job_records("j")] == ["j#mosaic_2024-06-01_ndvi"]
    # a composite's record knows its whole period (its layer's time range in QGIS)
    composite = ReduceUnit.from_dict(unit_dict(kind="composite", date=None,
                                               period=["2024-06-01", "2024-06-30"]))
    log.register([composite])
    record = log.get(composite.task_id)
    assert (record.kind, record.date, record.period) == ("composite", "2024-06-01",
                                                        ("2024-06-01", "2024-06-30"))


def test_reduce_planning_needs_only_the_standard_library():
    code = (
        "import sys\n"
        "for name in ('qgis', 'PyQt5', 'PyQt6', 'rasterio', 'pyproj', 'shapely', 'numpy'):\n"
        "    sys.modules[name] = None\n"
        "from qgis_rsbatch.core.contract import Cell, Job\n"
        "from qgis_rsbatch.core.reduce_plan import plan_reduce\n"
        "bands = {k: k + '.tif' for k in ('blue', 'green', 'red', 'nir', 'scl')}\n"
        "c = Cell.from_dict({'job_id': 'j', 'tile': '32TMT', 'date': '2024-06-01',\n"
        "                    'bands': bands, 'output': '/o'})\n"
        "plan = plan_reduce(Job('j', (c,)), composite='median')\n"
        "assert plan.grid.epsg == 32632 and len(plan.units) == 4\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# --- the job carries its units --------------------------------------------------------------
def test_a_job_carries_its_units_through_json_and_refuses_strange_inputs():
    cells = (cell("32TMT", "2024-06-01", MOSTLY_32), cell("32TNT", "2024-06-01", MOSTLY_32))
    job = job_of(*cells, aoi=MOSTLY_32)
    units = plan_reduce(job, composite="median").units
    full = Job(job.job_id, job.cells, params=job.params, created=job.created, units=units)
    assert full.tasks == (*cells, *units)
    data = full.to_dict()
    assert [u["unit_id"] for u in data["units"]] == [u.unit_id for u in units]
    assert Job.from_dict(data) == full
    assert "units" not in job.to_dict()  # a job without units keeps the cells-only shape
    assert Job.from_dict(job.to_dict()).units == ()

    mosaic = data["units"][0]
    stranger = {**data, "units": [{**mosaic, "inputs": ["32TMT_2024-06-01", "33UXP_2024-06-01"]}]}
    with pytest.raises(InvalidInput, match="reads 33UXP_2024-06-01: not a cell or an earlier "
                                           "unit of the job"):
        Job.from_dict(stranger)
    later = {**data, "units": list(reversed(data["units"]))}  # a composite before its mosaic
    with pytest.raises(InvalidInput, match="not a cell or an earlier unit"):
        Job.from_dict(later)
    twice = {**data, "units": [mosaic, mosaic]}
    with pytest.raises(InvalidInput, match="already a cell or unit of the job"):
        Job.from_dict(twice)
    other = {**data, "units": [{**mosaic, "job_id": "another"}]}
    with pytest.raises(InvalidInput, match="is not the job's"):
        Job.from_dict(other)


def test_the_planner_makes_mosaics_by_default_and_composites_when_asked():
    from qgis_rsbatch.core import catalog
    from qgis_rsbatch.core.planning import JobRequest, make_job

    scenes = [catalog.Scene(tile=t, date=d, datetime=f"{d}T10:20:00Z", item_id=f"{t}_{d}",
                            collection="c", cloud_cover=0.0, bands=BANDS, scale=0.0001,
                            offset=-0.1, offset_check=False)
              for t in ("32TMT", "32TNT") for d in ("2024-06-01", "2024-06-11")]
    aoi = box(8.98, 47.60, 9.10, 47.70)
    base = {"aoi": aoi, "start": "2024-06-01", "end": "2024-06-30", "output": "/data/out"}
    job = make_job(JobRequest(**base), scenes)
    assert {u.kind for u in job.units} == {"mosaic"} and len(job.units) == 4
    assert job.units[0].grid.epsg == 32632 and job.params["mosaic"] is True
    assert make_job(JobRequest(**base, mosaic=False), scenes).units == ()
    monthly = make_job(JobRequest(**base, composite="median", composite_period="month",
                                  mosaic_crs="EPSG:32633"), scenes)
    composites = [u for u in monthly.units if u.kind == "composite"]
    assert {u.unit_id for u in composites} == {"composite_2024-06-01_2024-06-30_rgb_median",
                                               "composite_2024-06-01_2024-06-30_ndvi_median"}
    assert {u.grid.epsg for u in monthly.units} == {32633}
    assert JobRequest.from_dict(JobRequest(**base, composite="median").to_dict()).composite \
        == "median"
    for bad, message in [({"mosaic_crs": "UTM32"}, "must be an EPSG code"),
                         ({"composite": "mean"}, "composite must be none or median"),
                         ({"composite_period": "0d"}, "composite period '0d'")]:
        with pytest.raises(InvalidInput, match=message):
            JobRequest(**base, **bad)
