"""The map tool that draws an area of interest: a rectangle (press, drag, release) or a polygon
(click the vertices; right-click or double-click finishes, Backspace removes the last
vertex). Esc cancels either. The rubber band shows the shape while it is drawn.

The tool reports the shape in the canvas's CRS with that CRS; turning it into EPSG:4326 is
`geometry.aoi_geojson`'s job, so the tool stays a pure input device.
"""

from __future__ import annotations

from typing import Any

from qgis.core import QgsCoordinateReferenceSystem, QgsGeometry, QgsPointXY, QgsRectangle
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor, QKeyEvent

from .compat import POLYGON_GEOMETRY

RECTANGLE = "rectangle"
POLYGON = "polygon"
#: a press and release closer than this (pixels) is a click, not a rectangle
MIN_DRAG_PIXELS = 3


class AoiMapTool(QgsMapTool):
    """Draws one AOI, emits it, and is ready for the next."""

    #: the finished shape, in the canvas CRS, and that CRS
    aoiDrawn = pyqtSignal(QgsGeometry, QgsCoordinateReferenceSystem)
    #: Esc, or the tool was switched off while drawing
    drawingCancelled = pyqtSignal()

    def __init__(self, canvas: QgsMapCanvas, mode: str = RECTANGLE) -> None:
        super().__init__(canvas)
        self.mode = mode
        self._points: list[QgsPointXY] = []
        self._start: QgsPointXY | None = None
        self._start_pixel = None
        self._band: QgsRubberBand | None = QgsRubberBand(canvas, POLYGON_GEOMETRY)
        self._band.setStrokeColor(QColor(255, 127, 0, 230))
        self._band.setFillColor(QColor(255, 127, 0, 50))
        self._band.setWidth(2)
        self.setCursor(Qt.CursorShape.CrossCursor)

    # --- state ---------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        self.reset()
        self.mode = mode

    @property
    def drawing(self) -> bool:
        return bool(self._points) or self._start is not None

    def reset(self) -> None:
        self._points = []
        self._start = None
        self._start_pixel = None
        if self._band is not None:
            self._band.reset(POLYGON_GEOMETRY)

    def cancel(self) -> None:
        was_drawing = self.drawing
        self.reset()
        if was_drawing:
            self.drawingCancelled.emit()

    def cleanup(self) -> None:
        """Remove the rubber band from the canvas (unload): nothing of the tool stays."""
        self.reset()
        if self._band is not None:
            scene = self.canvas().scene()
            if scene is not None:
                scene.removeItem(self._band)
            self._band = None

    # --- events --------------------------------------------------------------------------
    def canvasPressEvent(self, event: QgsMapMouseEvent) -> None:
        point = event.mapPoint()
        if self.mode == RECTANGLE:
            if event.button() == Qt.MouseButton.LeftButton:
                self._start = point
                self._start_pixel = event.pos()
                self._show_rectangle(point)
            elif event.button() == Qt.MouseButton.RightButton:
                self.cancel()
            return
        if event.button() == Qt.MouseButton.LeftButton:
            self._points.append(point)
            self._show_polygon(point)
        elif event.button() == Qt.MouseButton.RightButton:
            self._finish_polygon()

    def canvasMoveEvent(self, event: QgsMapMouseEvent) -> None:
        if self.mode == RECTANGLE and self._start is not None:
            self._show_rectangle(event.mapPoint())
        elif self.mode == POLYGON and self._points:
            self._show_polygon(event.mapPoint())

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:
        if self.mode != RECTANGLE or self._start is None:
            return
        if event.button() != Qt.MouseButton.LeftButton:
            return
        moved = event.pos() - self._start_pixel
        if abs(moved.x()) < MIN_DRAG_PIXELS or abs(moved.y()) < MIN_DRAG_PIXELS:
            self.reset()  # a click: nothing drawn
            return
        rect = QgsRectangle(self._start, event.mapPoint())
        rect.normalize()
        self.reset()
        self._emit(QgsGeometry.fromRect(rect))

    def canvasDoubleClickEvent(self, event: QgsMapMouseEvent) -> None:
        if self.mode == POLYGON and self._points:
            # the double-click's first press already added its vertex
            self._finish_polygon()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.cancel()
            event.accept()
        elif event.key() in (Qt.Key.Key_Backspace, Qt.Key.Key_Delete) and self._points:
            self._points.pop()
            self._show_polygon(None)
            event.accept()
        else:
            event.ignore()

    def deactivate(self) -> None:
        self.cancel()
        super().deactivate()

    # --- drawing -------------------------------------------------------------------------
    def _show_rectangle(self, corner: QgsPointXY) -> None:
        if self._band is None or self._start is None:
            return
        rect = QgsRectangle(self._start, corner)
        self._band.setToGeometry(QgsGeometry.fromRect(rect))

    def _show_polygon(self, cursor: QgsPointXY | None) -> None:
        if self._band is None:
            return
        points = list(self._points) + ([cursor] if cursor is not None else [])
        self._band.reset(POLYGON_GEOMETRY)
        for index, point in enumerate(points):
            self._band.addPoint(point, index == len(points) - 1)

    def _finish_polygon(self) -> None:
        points: list[Any] = []
        for point in self._points:  # a double-click adds the same vertex twice
            if not points or point != points[-1]:
                points.append(point)
        self.reset()
        if len(points) < 3:
            self.drawingCancelled.emit()
            return
        geometry = QgsGeometry.fromPolygonXY([[*points, points[0]]])
        if not geometry.isGeosValid():
            geometry = geometry.makeValid()
        self._emit(geometry)

    def _emit(self, geometry: QgsGeometry) -> None:
        self.aoiDrawn.emit(geometry, self.canvas().mapSettings().destinationCrs())
