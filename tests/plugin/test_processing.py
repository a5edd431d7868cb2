"""The Processing algorithms, called by their public ids through processing.run, as the
toolbox, the modeler, batch mode and qgis_process call them."""

from __future__ import annotations

import os
import threading

import pytest
from qgis.core import (
    QgsFeature,
    QgsLayerTreeGroup,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsVectorLayer,
)

from qgis_rsbatch.gui.geometry import from_geojson
from qgis_rsbatch.plugin import RsbatchPlugin
from tests.plugin.conftest import process_events

SAMPLE_EXTENT = "9.02,9.11,47.67,47.72 [EPSG:4326]"


@pytest.fixture
def provider(qgis_processing, qgis_new_project):
    plugin = RsbatchPlugin(None)
    plugin.initProcessing()
    yield plugin.provider
    plugin.unload()


@pytest.fixture
def aoi_layer(sample) -> QgsVectorLayer:
    """The sample AOI as a polygon layer in Web Mercator (not the CRS core works in)."""
    from qgis.core import (
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
    )

    layer = QgsVectorLayer("Polygon?crs=EPSG:3857", "aoi", "memory")
    geometry = from_geojson(sample["aoi"])
    geometry.transform(QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"),
                                              QgsCoordinateReferenceSystem("EPSG:3857"),
                                              QgsProject.instance()))
    feature = QgsFeature()
    feature.setGeometry(geometry)
    layer.dataProvider().addFeatures([feature])
    return layer


def test_resolve_tiles_from_an_extent(provider):
    import processing

    result = processing.run("rsbatch:resolvetiles", {"EXTENT": SAMPLE_EXTENT,
                                                     "OUTPUT": "memory:"})
    assert result["TILES"] == "32TMT,32TNT" and result["COUNT"] == 2
    layer = result["OUTPUT"]
    rows = sorted((f["tile"], f["epsg"], f["origin_x"], f["origin_y"])
                  for f in layer.getFeatures())
    assert rows == [("32TMT", 32632, 399960.0, 5300040.0),
                    ("32TNT", 32632, 499980.0, 5300040.0)]
    assert layer.crs().authid() == "EPSG:4326"


def test_search_scenes_from_a_layer_in_another_crs(provider, aoi_layer, sample):
    import processing

    result = processing.run("rsbatch:searchscenes", {
        "INPUT": aoi_layer, "START": sample["start"], "END": sample["end"], "MAX_CLOUD": 100,
        "CATALOG": sample["catalog"], "OUTPUT": "memory:"})
    assert result["COUNT"] == 4
    rows = sorted((f["tile"], f["date"]) for f in result["OUTPUT"].getFeatures())
    assert rows == [("32TMT", "2024-06-01"), ("32TMT", "2024-06-11"),
                    ("32TNT", "2024-06-01"), ("32TNT", "2024-06-11")]
    clear = processing.run("rsbatch:searchscenes", {
        "INPUT": aoi_layer, "START": sample["start"], "END": sample["end"], "MAX_CLOUD": 10,
        "CATALOG": sample["catalog"], "OUTPUT": "memory:"})
    assert clear["COUNT"] == 2  # the cloudy second date is left out


def test_run_job_writes_every_cell_and_returns_the_layers(provider, sample, tmp_path):
    import processing

    folder = str(tmp_path / "out")
    feedback = QgsProcessingFeedback()
    progress = []
    feedback.progressChanged.connect(progress.append)
    result = processing.run("rsbatch:runjob", {
        "EXTENT": SAMPLE_EXTENT, "START": sample["start"], "END": sample["end"],
        "MAX_CLOUD": 100, "CATALOG": sample["catalog"], "PRODUCTS": [0, 1],
        "OUTPUT_FOLDER": folder, "LOAD": False, "EXCLUDE": "32TNT_2024-06-11",
        "MOSAIC": False},
        feedback=feedback)
    assert result["SUCCEEDED"] == 3 and result["FAILED"] == 0
    assert result["JOB_ID"].startswith("rsb-")
    layers = result["OUTPUT_LAYERS"]
    assert len(layers) == 6 and all(os.path.exists(p) for p in layers)
    assert all(p.startswith(os.path.join(folder, result["JOB_ID"])) for p in layers)
    assert progress and max(progress) == 100


def test_run_job_loads_styled_layers_into_the_job_group(provider, sample, tmp_path):
    import processing

    result = processing.runAndLoadResults("rsbatch:runjob", {
        "EXTENT": SAMPLE_EXTENT, "START": sample["start"], "END": sample["start"],
        "MAX_CLOUD": 100, "CATALOG": sample["catalog"], "PRODUCTS": [1],
        "OUTPUT_FOLDER": str(tmp_path / "out"), "LOAD": True, "MOSAIC": False})
    process_events(0.1)
    job_id = result["JOB_ID"]
    root = QgsProject.instance().layerTreeRoot()
    group = next(g for g in root.children() if isinstance(g, QgsLayerTreeGroup)
                 and g.name() == f"rsbatch {job_id}")
    layers = [node.layer() for node in group.findGroup("NDVI").findLayers()]
    tag = job_id.rsplit("-", 1)[1]
    assert sorted(la.name() for la in layers) == [f"32TMT 2024-06-01 NDVI · {tag}",
                                                  f"32TNT 2024-06-01 NDVI · {tag}"]
    assert all(la.renderer().type() == "singlebandpseudocolor" for la in layers)
    # nothing of them stays at the root
    assert not [n for n in root.children() if not isinstance(n, QgsLayerTreeGroup)]


def test_run_job_makes_mosaics_in_the_chosen_crs_and_composites_per_period(provider, sample,
                                                                          tmp_path):
    import processing
    import rasterio

    result = processing.runAndLoadResults("rsbatch:runjob", {
        "EXTENT": SAMPLE_EXTENT, "START": sample["start"], "END": sample["end"],
        "MAX_CLOUD": 100, "CATALOG": sample["catalog"], "PRODUCTS": [1],
        "OUTPUT_FOLDER": str(tmp_path / "out"), "LOAD": True, "MOSAIC": True,
        "MOSAIC_CRS": "EPSG:32633", "COMPOSITE": 1, "COMPOSITE_PERIOD": "10d"})
    process_events(0.1)
    job_id = result["JOB_ID"]
    assert result["SUCCEEDED"] == 4 and result["FAILED"] == 0
    folder = os.path.join(str(tmp_path / "out"), job_id)
    assert sorted(result["MOSAICS"]) == [os.path.join(folder, "mosaic", f"{d}_ndvi.tif")
                                         for d in ("2024-06-01", "2024-06-11")]
    # 10-day periods from the first day: 06-01…06-10 (one date) and 06-11…06-11
    assert sorted(result["COMPOSITES"]) == [
        os.path.join(folder, "composite", "2024-06-01_2024-06-10_ndvi_median.tif"),
        os.path.join(folder, "composite", "2024-06-11_2024-06-11_ndvi_median.tif")]
    assert sorted(result["OUTPUT_LAYERS"]) == sorted(result["MOSAICS"] + result["COMPOSITES"])
    for path in result["MOSAICS"] + result["COMPOSITES"]:
        with rasterio.open(path) as ds:
            assert ds.crs.to_epsg() == 32633 and ds.res == (10.0, 10.0)
            assert ds.transform.c % 10 == 0 and ds.transform.f % 10 == 0

    root = QgsProject.instance().layerTreeRoot()
    group = next(g for g in root.children() if isinstance(g, QgsLayerTreeGroup)
                 and g.name() == f"rsbatch {job_id}")
    tag = job_id.rsplit("-", 1)[1]
    assert [g.name() for g in group.children()] == ["NDVI", "Composites"]
    mosaics = [n.layer() for n in group.children()[0].findLayers()]
    assert [la.name() for la in mosaics] == [f"2024-06-11 NDVI · {tag}",
                                             f"2024-06-01 NDVI · {tag}"]
    composites = [n.layer() for n in group.children()[1].findLayers()]
    assert [la.name() for la in composites] == [
        f"2024-06-11 – 2024-06-11 NDVI composite · {tag}",
        f"2024-06-01 – 2024-06-10 NDVI composite · {tag}"]
    assert {la.crs().authid() for la in mosaics + composites} == {"EPSG:32633"}
    assert {la.renderer().type() for la in mosaics + composites} == {"singlebandpseudocolor"}
    first = composites[1].temporalProperties().fixedTemporalRange()
    assert first.end().toString("yyyy-MM-dd") == "2024-06-11"  # the day after the period


def test_run_job_refuses_a_mosaic_crs_that_cannot_hold_its_grid(provider, sample, tmp_path):
    import processing

    with pytest.raises(QgsProcessingException, match=r"EPSG:4326 .*not projected in metres"):
        processing.run("rsbatch:runjob", {
            "EXTENT": SAMPLE_EXTENT, "START": sample["start"], "END": sample["end"],
            "CATALOG": sample["catalog"], "OUTPUT_FOLDER": str(tmp_path / "o"), "LOAD": False,
            "MOSAIC_CRS": "EPSG:4326"})
    with pytest.raises(QgsProcessingException, match="composite period 'weekly'"):
        processing.run("rsbatch:runjob", {
            "EXTENT": SAMPLE_EXTENT, "START": sample["start"], "END": sample["end"],
            "CATALOG": sample["catalog"], "OUTPUT_FOLDER": str(tmp_path / "o"), "LOAD": False,
            "COMPOSITE": 1, "COMPOSITE_PERIOD": "weekly"})
    assert not os.path.exists(tmp_path / "o")  # refused before anything was written


def test_errors_are_processing_exceptions_with_the_reason(provider, sample, tmp_path):
    import processing

    with pytest.raises(QgsProcessingException, match="area of interest"):
        processing.run("rsbatch:resolvetiles", {"OUTPUT": "memory:"})
    with pytest.raises(QgsProcessingException, match="does-not-exist"):
        processing.run("rsbatch:searchscenes", {
            "EXTENT": SAMPLE_EXTENT, "START": sample["start"], "END": sample["end"],
            "CATALOG": str(tmp_path / "does-not-exist.json"), "OUTPUT": "memory:"})
    with pytest.raises(QgsProcessingException, match="no Sentinel-2 scene"):
        processing.run("rsbatch:runjob", {
            "EXTENT": SAMPLE_EXTENT, "START": "2020-01-01", "END": "2020-01-02",
            "CATALOG": sample["catalog"], "OUTPUT_FOLDER": str(tmp_path / "o"), "LOAD": False})


def test_cancelling_the_algorithm_cancels_the_job(provider, sample, tmp_path):
    import processing

    feedback = QgsProcessingFeedback()
    timer = threading.Timer(0.3, feedback.cancel)
    timer.start()
    try:
        with pytest.raises(QgsProcessingException, match="cancelled"):
            processing.run("rsbatch:runjob", {
                "EXTENT": SAMPLE_EXTENT, "START": sample["start"], "END": sample["end"],
                "MAX_CLOUD": 100, "CATALOG": sample["catalog"], "WORKERS": 1,
                "OUTPUT_FOLDER": str(tmp_path / "o"), "LOAD": False}, feedback=feedback)
    finally:
        timer.cancel()
    from qgis_rsbatch.core.backends import get_backend

    backend = get_backend("local")
    job_id = backend.jobs()[0]["job_id"]
    status = backend.status(job_id)
    assert status.finished and status.counts["CANCELLED"] >= 1
