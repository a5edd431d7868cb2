"""Results as layers: URIs to GDAL sources, S3 by streaming or download (through a moto
server), the styles on real outputs, and the group layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProject, QgsRasterLayer
from rasterio.transform import from_origin

from qgis_rsbatch.gui.layer_tree import add_output_layer, job_group, loaded_uris
from qgis_rsbatch.gui.results import LoadRequest, Output, ResultLoader, build_layers
from qgis_rsbatch.gui.sources import S3Access, gdal_source, s3_gdal_options
from qgis_rsbatch.gui.styles import (
    RGB_REFLECTANCE,
    reflectance_factor,
    rgb_limits,
    style_ndvi,
    style_rgb,
)
from tests.plugin.conftest import wait_until


def _rgb_file(path, scale: float | None = 0.0001) -> str:
    data = np.full((3, 64, 64), 1500, dtype="uint16")
    data[:, :8, :8] = 0
    data[0, 32:, :] = 3000
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 3, "dtype": "uint16",
               "crs": "EPSG:32632", "transform": from_origin(500000, 5200000, 10, 10),
               "nodata": 0}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if scale is not None:
            ds.scales = (scale,) * 3
            ds.offsets = (0.0,) * 3
    return str(path)


def _ndvi_file(path) -> str:
    data = np.linspace(-1, 1, 64 * 64, dtype="float32").reshape(1, 64, 64)
    data[0, 0, :] = np.nan
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 1, "dtype": "float32",
               "crs": "EPSG:32632", "transform": from_origin(500000, 5200000, 10, 10),
               "nodata": float("nan")}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return str(path)


def test_uris_become_gdal_sources():
    assert gdal_source("file:///data/a%20b/x.tif") == "/data/a b/x.tif"
    assert gdal_source("s3://bucket/job/x.tif") == "/vsis3/bucket/job/x.tif"
    assert gdal_source("https://host/x.tif") == "/vsicurl/https://host/x.tif"
    assert gdal_source("/plain/path.tif") == "/plain/path.tif"


def test_s3_options_name_a_profile_and_endpoint_never_a_key():
    options = s3_gdal_options(S3Access("analyst", "eu-central-1", "http://127.0.0.1:5000"))
    assert options == {"AWS_PROFILE": "analyst", "AWS_REGION": "eu-central-1",
                       "AWS_S3_ENDPOINT": "127.0.0.1:5000", "AWS_HTTPS": "NO",
                       "AWS_VIRTUAL_HOSTING": "FALSE"}
    assert not any("SECRET" in key or "ACCESS_KEY" in key for key in options)


def test_rgb_stretch_is_reflectance_whatever_units_qgis_reports(tmp_path):
    scaled = QgsRasterLayer(_rgb_file(tmp_path / "scaled.tif"), "scaled", "gdal")
    raw = QgsRasterLayer(_rgb_file(tmp_path / "raw.tif", scale=None), "raw", "gdal")
    # QGIS applies the band scale of the first, so its values are reflectance …
    assert reflectance_factor(scaled) == 1.0
    # … and the second holds reflectance × 10000
    assert reflectance_factor(raw) == 10000.0
    assert rgb_limits(scaled) == [RGB_REFLECTANCE] * 3
    assert rgb_limits(raw) == [(0.0, 3000.0)] * 3
    style_rgb(raw)
    assert raw.renderer().redContrastEnhancement().maximumValue() == 3000.0
    low, high = rgb_limits(scaled, "cumulative")[0]
    assert 0.14 <= low < high <= 0.31


def test_ndvi_ramp_and_transparent_nodata(tmp_path):
    layer = QgsRasterLayer(_ndvi_file(tmp_path / "ndvi.tif"), "ndvi", "gdal")
    renderer = style_ndvi(layer)
    function = renderer.shader().rasterShaderFunction()
    assert (function.minimumValue(), function.maximumValue()) == (-1.0, 1.0)
    assert renderer.nodataColor().alpha() == 0
    assert math.isnan(layer.dataProvider().sourceNoDataValue(1))
    # the ramp maps -1 to red, 0 to pale yellow, 1 to dark green
    colors = {}
    for value in (-1.0, 0.0, 1.0):
        ok, r, g, b, _a = function.shade(value)
        assert ok
        colors[value] = (r, g, b)
    assert colors[-1.0] == (165, 0, 38) and colors[0.0] == (255, 255, 191)
    assert colors[1.0] == (0, 104, 55)


def test_layers_go_into_product_groups_newest_first(tmp_path, qgis_new_project):
    project = QgsProject.instance()
    path = _ndvi_file(tmp_path / "n.tif")
    for date, tile in (("2024-06-01", "32TNT"), ("2024-06-11", "32TMT"),
                       ("2024-06-01", "32TMT")):
        add_output_layer(project, Output("job-1", f"{tile}_{date}", tile, date, "ndvi",
                                         f"file://{path}?{tile}{date}"), path)
    add_output_layer(project, Output("job-1", "32TMT_2024-06-01", "32TMT", "2024-06-01",
                                     "rgb", "file://x"), _rgb_file(tmp_path / "r.tif"))
    group = job_group(project, "job-1", create=False)
    assert [g.name() for g in group.children()] == ["NDVI", "RGB"]
    assert [n.name() for n in group.findGroup("NDVI").findLayers()] == [
        "32TMT 2024-06-11 NDVI · job-1", "32TMT 2024-06-01 NDVI · job-1",
        "32TNT 2024-06-01 NDVI · job-1"]


@pytest.mark.parametrize("mode", ["stream", "download"])
def test_s3_results_stream_or_download_through_the_profile_chain(aws_endpoint, tmp_path, mode):
    import boto3

    path = _ndvi_file(tmp_path / "32TMT_2024-06-01_ndvi.tif")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="results")
    s3.upload_file(path, "results", "out/job-s3/32TMT_2024-06-01_ndvi.tif")
    output = Output("job-s3", "32TMT_2024-06-01", "32TMT", "2024-06-01", "ndvi",
                    "s3://results/out/job-s3/32TMT_2024-06-01_ndvi.tif")
    request = LoadRequest("job-s3", [output], s3_mode=mode,
                          download_folder=str(tmp_path / "downloads"),
                          s3=S3Access(region="us-east-1", endpoint_url=aws_endpoint))
    built = build_layers(request)
    item = built.items[0]
    assert not item.error, item.error
    if mode == "stream":
        assert item.source == "/vsis3/results/out/job-s3/32TMT_2024-06-01_ndvi.tif"
    else:
        assert item.source.startswith(str(tmp_path / "downloads"))
    layer = built.store.mapLayer(item.layer_id)
    assert layer.isValid() and layer.renderer().type() == "singlebandpseudocolor"
    assert layer.width() == 64


def test_a_missing_file_is_reported_not_raised(tmp_path):
    output = Output("j", "c", "32TMT", "2024-06-01", "rgb", f"file://{tmp_path}/gone.tif")
    built = build_layers(LoadRequest("j", [output]))
    assert "does not exist" in built.items[0].error


def test_loader_adds_each_file_once(tmp_path, qgis_new_project):
    from qgis_rsbatch.tasks import TaskRegistry

    path = _rgb_file(tmp_path / "r.tif")
    output = Output("job-2", "32TMT_2024-06-01", "32TMT", "2024-06-01", "rgb", f"file://{path}")
    loader = ResultLoader(TaskRegistry())
    assert loader.load(LoadRequest("job-2", [output])) is not None
    assert loader.load(LoadRequest("job-2", [output])) is None  # already on its way
    wait_until(lambda: loaded_uris(QgsProject.instance()), 30, "the layer")
    assert loader.load(LoadRequest("job-2", [output])) is None  # already on the map
    assert len(QgsProject.instance().mapLayers()) == 1


def test_result_layers_get_their_acquisition_day_and_the_project_the_job_s_span(
        tmp_path, qgis_new_project):
    from qgis.PyQt.QtCore import QDateTime, Qt

    from qgis_rsbatch.gui.compat import FIXED_TEMPORAL_RANGE

    project = QgsProject.instance()
    path = _ndvi_file(tmp_path / "t.tif")
    layers = {}
    for date in ("2024-06-11", "2024-05-02", "2024-06-01"):
        layers[date] = add_output_layer(project, Output("job-t", f"32TMT_{date}", "32TMT", date,
                                                        "ndvi", f"file://{path}?{date}"), path)
    props = layers["2024-06-01"].temporalProperties()
    assert props.isActive()
    assert props.mode() == FIXED_TEMPORAL_RANGE
    day = props.fixedTemporalRange()
    utc = Qt.TimeSpec.UTC
    assert day.begin() == QDateTime.fromString("2024-06-01T00:00:00Z", Qt.DateFormat.ISODate)
    assert day.begin().timeSpec() == utc and day.end() == day.begin().addDays(1)
    assert day.includeBeginning() and not day.includeEnd()
    # the temporal controller: a frame on 2024-06-01 12:00 UTC shows that date's layer only
    noon = QDateTime.fromString("2024-06-01T12:00:00Z", Qt.DateFormat.ISODate)
    shown = [d for d, la in layers.items()
             if la.temporalProperties().fixedTemporalRange().contains(noon)]
    assert shown == ["2024-06-01"]
    span = project.timeSettings().temporalRange()
    assert span.begin() == QDateTime.fromString("2024-05-02T00:00:00Z", Qt.DateFormat.ISODate)
    assert span.end() == QDateTime.fromString("2024-06-12T00:00:00Z", Qt.DateFormat.ISODate)


def _finished(task, outputs: dict):
    """A cell's or unit's task-log record after a successful run (the worker's transitions)."""
    from qgis_rsbatch.core.contract import Status
    from qgis_rsbatch.core.tasklog import Record

    return Record.for_task(task).moved(Status.RUNNING).moved(Status.SUCCEEDED, outputs=outputs)


def test_a_job_with_mosaics_shows_them_its_composites_apart_and_its_tiles_on_request(
        tmp_path, qgis_new_project):
    from qgis.PyQt.QtCore import QDateTime, Qt

    from qgis_rsbatch.core.contract import Cell, ReduceUnit
    from qgis_rsbatch.gui.results import outputs_of

    job = "rsb-20240701-101500-3f9a"
    grid = {"epsg": 32632, "transform": [10, 0, 500000, 0, -10, 5290000], "width": 64,
            "height": 64}
    ndvi = _ndvi_file(tmp_path / "n.tif")
    bands = {k: f"{k}.tif" for k in ("blue", "green", "red", "nir", "scl")}
    records = []
    for date in ("2024-06-01", "2024-06-11"):
        for tile in ("32TMT", "32TNT"):
            cell = Cell.from_dict({"job_id": job, "tile": tile, "date": date, "bands": bands,
                                   "products": ["ndvi"], "output": str(tmp_path)})
            records.append(_finished(cell, {"ndvi": f"file://{ndvi}?{tile}{date}"}))
        mosaic = ReduceUnit.from_dict({"job_id": job, "kind": "mosaic", "product": "ndvi",
                                       "date": date, "grid": grid, "output": str(tmp_path),
                                       "inputs": [f"32TMT_{date}", f"32TNT_{date}"]})
        records.append(_finished(mosaic, {"ndvi": f"file://{ndvi}?mosaic{date}"}))
    composite = ReduceUnit.from_dict({
        "job_id": job, "kind": "composite", "product": "ndvi", "period": ["2024-06-01",
                                                                        "2024-06-30"],
        "grid": grid, "output": str(tmp_path),
        "inputs": ["mosaic_2024-06-01_ndvi", "mosaic_2024-06-11_ndvi"]})
    records.append(_finished(composite, {"ndvi": f"file://{ndvi}?composite"}))

    # the job's results are its mosaics and composite; its tiles come on request
    shown = outputs_of(records)
    assert sorted((o.kind, o.name) for o in shown) == [
        ("composite", "2024-06-01 – 2024-06-30 NDVI composite · 3f9a"),
        ("mosaic", "2024-06-01 NDVI · 3f9a"), ("mosaic", "2024-06-11 NDVI · 3f9a")]
    tiles = outputs_of(records, tiles=True)
    assert sorted(o.name for o in tiles) == [
        "32TMT 2024-06-01 NDVI · 3f9a", "32TMT 2024-06-11 NDVI · 3f9a",
        "32TNT 2024-06-01 NDVI · 3f9a", "32TNT 2024-06-11 NDVI · 3f9a"]
    # without mosaics, the cells are the results (and composites stay apart)
    no_mosaics = [r for r in records if r.kind != "mosaic"]
    assert sorted(o.kind for o in outputs_of(no_mosaics)) == ["cell"] * 4 + ["composite"]

    project = QgsProject.instance()
    layers = {o.name: add_output_layer(project, o, ndvi) for o in shown + tiles}
    group = job_group(project, job, create=False)
    assert [g.name() for g in group.children()] == ["NDVI", "Composites", "Tiles"]
    assert [n.name() for n in group.children()[0].findLayers()] == [
        "2024-06-11 NDVI · 3f9a", "2024-06-01 NDVI · 3f9a"]
    assert [n.name() for n in group.children()[1].findLayers()] == [
        "2024-06-01 – 2024-06-30 NDVI composite · 3f9a"]
    tile_group = group.children()[2]
    assert [g.name() for g in tile_group.children()] == ["NDVI"]
    assert [n.name() for n in tile_group.findLayers()] == [
        "32TMT 2024-06-11 NDVI · 3f9a", "32TNT 2024-06-11 NDVI · 3f9a",
        "32TMT 2024-06-01 NDVI · 3f9a", "32TNT 2024-06-01 NDVI · 3f9a"]

    # the composite spans its period; a mosaic its day
    def utc(text: str) -> QDateTime:
        return QDateTime.fromString(text, Qt.DateFormat.ISODate)

    period = layers["2024-06-01 – 2024-06-30 NDVI composite · 3f9a"].temporalProperties()
    assert period.isActive()
    assert period.fixedTemporalRange().begin() == utc("2024-06-01T00:00:00Z")
    assert period.fixedTemporalRange().end() == utc("2024-07-01T00:00:00Z")
    day = layers["2024-06-11 NDVI · 3f9a"].temporalProperties().fixedTemporalRange()
    assert (day.begin(), day.end()) == (utc("2024-06-11T00:00:00Z"), utc("2024-06-12T00:00:00Z"))
    span = project.timeSettings().temporalRange()
    assert (span.begin(), span.end()) == (utc("2024-06-01T00:00:00Z"),
                                          utc("2024-07-01T00:00:00Z"))
