"""Drawing or choosing an area of interest in a project of another CRS gives the right
EPSG:4326 geometry and its Sentinel-2 tiles on the map."""

from __future__ import annotations

import pytest
from pyproj import Transformer
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, Qt
from qgis.PyQt.QtTest import QSignalSpy, QTest

from qgis_rsbatch.gui.aoi_tool import AoiMapTool
from qgis_rsbatch.gui.footprints import AreaLayer
from tests.plugin.conftest import wait_until


def _set_crs(canvas, epsg: int, extent: QgsRectangle) -> QgsCoordinateReferenceSystem:
    crs = QgsCoordinateReferenceSystem(f"EPSG:{epsg}")
    QgsProject.instance().setCrs(crs)
    canvas.setDestinationCrs(crs)
    canvas.setExtent(extent)
    canvas.refresh()
    return crs


def _map_point(canvas, x: int, y: int) -> QgsPointXY:
    return canvas.getCoordinateTransform().toMapCoordinates(QPoint(x, y))


def _event(canvas, kind, x, y, button=Qt.MouseButton.LeftButton):
    buttons = button if kind != QEvent.Type.MouseButtonRelease else Qt.MouseButton.NoButton
    return QgsMapMouseEvent(canvas, kind, QPoint(x, y), button, buttons)


def _ring(aoi: dict) -> list[list[float]]:
    assert aoi["type"] == "Polygon"
    return aoi["coordinates"][0]


def test_rectangle_drawn_in_a_utm_project_becomes_the_same_area_in_lonlat(dock, qgis_canvas):
    _set_crs(qgis_canvas, 32632, QgsRectangle(480000, 5255000, 520000, 5295000))
    tool = dock.aoi_panel.start_drawing("rectangle")
    assert qgis_canvas.mapTool() is tool
    spy = QSignalSpy(tool.aoiDrawn)
    corner_a, corner_b = _map_point(qgis_canvas, 120, 150), _map_point(qgis_canvas, 470, 430)
    tool.canvasPressEvent(_event(qgis_canvas, QEvent.Type.MouseButtonPress, 120, 150))
    tool.canvasMoveEvent(_event(qgis_canvas, QEvent.Type.MouseMove, 300, 300))
    tool.canvasMoveEvent(_event(qgis_canvas, QEvent.Type.MouseMove, 470, 430))
    tool.canvasReleaseEvent(_event(qgis_canvas, QEvent.Type.MouseButtonRelease, 470, 430))
    assert len(spy) == 1
    assert qgis_canvas.mapTool() is not tool  # one area per click on the button
    aoi = dock.aoi_panel.aoi
    ring = _ring(aoi)

    # every corner of the UTM rectangle is a vertex, transformed independently (PROJ)
    to_lonlat = Transformer.from_crs(32632, 4326, always_xy=True)
    xs = sorted([corner_a.x(), corner_b.x()])
    ys = sorted([corner_a.y(), corner_b.y()])
    for x in xs:
        for y in ys:
            lon, lat = to_lonlat.transform(x, y)
            assert min(abs(p[0] - lon) + abs(p[1] - lat) for p in ring) < 1e-7
    # and every vertex lies on the rectangle's edges: densified along UTM's straight lines
    to_utm = Transformer.from_crs(4326, 32632, always_xy=True)
    assert len(ring) > 20
    for lon, lat in ring:
        x, y = to_utm.transform(lon, lat)
        assert xs[0] - 0.01 <= x <= xs[1] + 0.01 and ys[0] - 0.01 <= y <= ys[1] + 0.01
        assert min(abs(x - xs[0]), abs(x - xs[1]), abs(y - ys[0]), abs(y - ys[1])) < 0.01

    wait_until(lambda: dock.aoi_panel.tiles, 30, "tiles")
    assert [t.tile for t in dock.aoi_panel.tiles] == ["32TMT", "32TNT"]
    assert "32TMT, 32TNT" in dock.aoi_panel.summary.text()


def test_polygon_clicked_with_the_mouse_in_web_mercator(dock, qgis_canvas):
    _set_crs(qgis_canvas, 3857, QgsRectangle(1000000, 6050000, 1030000, 6080000))
    tool = dock.aoi_panel.start_drawing("polygon")
    viewport = qgis_canvas.viewport()
    clicks = [(100, 100), (500, 140), (420, 480), (150, 400)]
    expected = [_map_point(qgis_canvas, x, y) for x, y in clicks]
    spy = QSignalSpy(tool.aoiDrawn)
    for x, y in clicks:
        QTest.mouseClick(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         QPoint(x, y))
    QTest.mouseClick(viewport, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(300, 300))
    assert len(spy) == 1
    ring = _ring(dock.aoi_panel.aoi)
    to_lonlat = Transformer.from_crs(3857, 4326, always_xy=True)
    for point in expected:
        lon, lat = to_lonlat.transform(point.x(), point.y())
        assert min(abs(p[0] - lon) + abs(p[1] - lat) for p in ring) < 1e-7
    assert 9.0 < ring[0][0] < 9.3 and 47.5 < ring[0][1] < 47.9


def test_escape_cancels_a_drawing_and_backspace_removes_a_vertex(dock, qgis_canvas):
    _set_crs(qgis_canvas, 32632, QgsRectangle(480000, 5255000, 520000, 5295000))
    tool = dock.aoi_panel.start_drawing("polygon")
    drawn, cancelled = QSignalSpy(tool.aoiDrawn), QSignalSpy(tool.drawingCancelled)
    viewport = qgis_canvas.viewport()
    for x, y in ((100, 100), (400, 100), (400, 400)):
        QTest.mouseClick(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         QPoint(x, y))
    QTest.keyClick(qgis_canvas, Qt.Key.Key_Backspace)
    assert len(tool._points) == 2
    QTest.keyClick(qgis_canvas, Qt.Key.Key_Escape)
    assert len(cancelled) == 1 and len(drawn) == 0
    assert not tool.drawing and tool._band.numberOfVertices() == 0
    assert dock.aoi_panel.aoi is None


def test_a_click_without_a_drag_draws_nothing(dock, qgis_canvas):
    _set_crs(qgis_canvas, 32632, QgsRectangle(480000, 5255000, 520000, 5295000))
    tool = dock.aoi_panel.start_drawing("rectangle")
    spy = QSignalSpy(tool.aoiDrawn)
    tool.canvasPressEvent(_event(qgis_canvas, QEvent.Type.MouseButtonPress, 200, 200))
    tool.canvasReleaseEvent(_event(qgis_canvas, QEvent.Type.MouseButtonRelease, 201, 200))
    assert len(spy) == 0 and isinstance(qgis_canvas.mapTool(), AoiMapTool)


def test_selected_features_of_a_layer_in_another_crs(dock, qgis_iface):
    layer = QgsVectorLayer("Polygon?crs=EPSG:3857", "fields", "memory")
    features = []
    for wkt in ("POLYGON((1005000 6060000, 1010000 6060000, 1010000 6065000, 1005000 6060000))",
                "POLYGON((1020000 6060000, 1025000 6060000, 1025000 6065000, 1020000 6060000))",
                "POLYGON((0 0, 10 0, 10 10, 0 0))"):
        feature = QgsFeature()
        feature.setGeometry(QgsGeometry.fromWkt(wkt))
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    QgsProject.instance().addMapLayer(layer)
    layer.selectByIds([f.id() for f in layer.getFeatures()][:2])
    qgis_iface.setActiveLayer(layer)
    dock.aoi_panel.use_active_layer(True)
    aoi = dock.aoi_panel.aoi
    assert aoi["type"] == "MultiPolygon" and len(aoi["coordinates"]) == 2
    lon, lat = Transformer.from_crs(3857, 4326, always_xy=True).transform(1005000, 6060000)
    first = aoi["coordinates"][0][0]
    assert min(abs(p[0] - lon) + abs(p[1] - lat) for p in first) < 1e-7
    wait_until(lambda: dock.aoi_panel.tiles, 30, "tiles")


def test_no_selection_says_what_to_do(dock, qgis_iface):
    from qgis.core import Qgis

    layer = QgsVectorLayer("Polygon?crs=EPSG:3857", "empty", "memory")
    QgsProject.instance().addMapLayer(layer)
    qgis_iface.setActiveLayer(layer)
    dock.aoi_panel.use_active_layer(True)
    assert dock.aoi_panel.aoi is None
    warnings = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Warning)
    assert any("no feature with a geometry is selected" in m for m in warnings)


def test_canvas_extent_and_the_tiles_layer(dock, qgis_canvas):
    _set_crs(qgis_canvas, 32632, QgsRectangle(485000, 5260000, 515000, 5290000))
    dock.aoi_panel.canvas_button.click()
    wait_until(lambda: dock.aoi_panel.tiles, 30, "tiles")
    layer = QgsProject.instance().mapLayersByName(AreaLayer.NAME)[0]
    kinds = sorted((f["kind"], f["tile"] or "") for f in layer.getFeatures())
    assert kinds == [("aoi", ""), ("tile", "32TMT"), ("tile", "32TNT")]
    assert layer.labelsEnabled() and layer.labeling().settings().fieldName == "tile"
    assert layer.renderer().type() == "categorizedSymbol"
    dock.aoi_panel.clear_button.click()
    assert not QgsProject.instance().mapLayersByName(AreaLayer.NAME)
    assert dock.aoi_panel.aoi is None


@pytest.mark.parametrize("epsg", [4326, 2056])
def test_any_project_crs(dock, qgis_canvas, epsg):
    extent = {4326: QgsRectangle(8.9, 47.5, 9.2, 47.8),
              2056: QgsRectangle(2690000, 1270000, 2710000, 1290000)}[epsg]
    _set_crs(qgis_canvas, epsg, extent)
    dock.aoi_panel.use_canvas_extent()
    ring = _ring(dock.aoi_panel.aoi)
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    assert 8.5 < min(lons) < max(lons) < 9.5 and 47.2 < min(lats) < max(lats) < 48.0
