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
        "OUTPUT_FOLDER": folder, "LOAD": False, "EXCLUDE": "32TNT_2024-06-11"},
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
        "OUTPUT_FOLDER": str(tmp_path / "out"), "LOAD": True})
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
