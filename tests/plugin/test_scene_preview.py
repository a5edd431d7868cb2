"""Selecting scenes in the list shows their footprints on the map and a thumbnail, fetched
in a task once and then cached; unloading leaves nothing on the canvas."""

from __future__ import annotations

import json
import os

from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject
from qgis.gui import QgsRubberBand
from qgis.PyQt.QtCore import QItemSelectionModel

from qgis_rsbatch.gui.geometry import from_geojson
from tests.plugin.conftest import wait_until


def _select(panel, rows):
    selection = panel.table.selectionModel()
    selection.clearSelection()
    for row in rows:
        selection.select(panel.proxy.index(row, 0), QItemSelectionModel.SelectionFlag.Select
                         | QItemSelectionModel.SelectionFlag.Rows)


def test_selected_scenes_show_their_footprint_and_thumbnail(dock, sample):
    from tests.plugin.test_job_flow import plan_job

    plan_job(dock, sample)
    panel = dock.search_panel
    canvas = dock.context.canvas
    _select(panel, [0])
    scene = panel.selected_rows()[0]
    assert scene.thumbnail and os.path.exists(scene.thumbnail)
    with open(os.path.join(os.path.dirname(scene.thumbnail), "item.json")) as fh:
        assert scene.geometry == json.load(fh)["geometry"]
    band = panel.preview.band
    footprint = from_geojson(dict(scene.geometry))
    footprint.transform(QgsCoordinateTransform(
        QgsCoordinateReferenceSystem("EPSG:4326"), canvas.mapSettings().destinationCrs(),
        QgsProject.instance()))
    assert band.numberOfVertices() >= 5
    assert band.asGeometry().boundingBox().toString(2) == footprint.boundingBox().toString(2)
    wait_until(panel.thumbnail_label.isVisible, 30, "the thumbnail")
    pixmap = panel.thumbnail_label.pixmap()
    assert (pixmap.width(), pixmap.height()) == (128, 128) and panel.preview.fetches == 1

    _select(panel, [0, 1, 2])  # three footprints; the first thumbnail comes from the cache
    assert band.asGeometry().constGet().numGeometries() == 3
    assert panel.preview.fetches == 1
    _select(panel, [])
    assert band.numberOfVertices() == 0 and not panel.thumbnail_label.isVisible()


def test_the_preview_leaves_the_canvas_on_unload(plugin, sample):
    from tests.plugin.test_job_flow import plan_job

    plugin.toggle_dock(True)
    dock = plugin.dock
    plan_job(dock, sample)
    _select(dock.search_panel, [0])
    canvas = dock.context.canvas
    ours = dock.search_panel.preview.band
    assert ours in [i for i in canvas.scene().items() if isinstance(i, QgsRubberBand)]
    plugin.unload()
    assert dock.search_panel.preview.band is None and ours.scene() is None
    assert ours not in canvas.scene().items()
