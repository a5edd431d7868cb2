"""The dock's first step: the area of interest and the Sentinel-2 tiles it meets.

Draw a rectangle or polygon, take the active layer's selected features or extent, or the
canvas extent. The AOI becomes GeoJSON in EPSG:4326 (`geometry.aoi_geojson`); resolving its
tiles (core.grid, pure Python, seconds for a country) runs in a task; the tiles are then
drawn by the area-and-tiles layer and listed here.
"""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication, QgsCoordinateReferenceSystem, QgsGeometry
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMenu,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core import grid
from ..core.errors import RsbatchError
from ..tasks import FunctionTask
from .aoi_tool import POLYGON, RECTANGLE, AoiMapTool
from .context import Context
from .footprints import AreaLayer
from .geometry import aoi_geojson, area_km2, layer_geometry, rectangle_geometry


def _icon(name: str) -> Any:
    return QgsApplication.getThemeIcon(name)


class AoiPanel(QWidget):
    """AOI buttons, the tool that draws, and the tile summary."""

    #: GeoJSON geometry (EPSG:4326) and its core.grid Tiles; (None, []) when cleared
    tilesChanged = pyqtSignal(object, list)

    def __init__(self, context: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.aoi: dict | None = None
        self.tiles: list[grid.Tile] = []
        self.area_layer = AreaLayer()
        self.tool: AoiMapTool | None = None
        self._previous_tool: Any = None
        self._tiles_task: Any = None
        self._build()

    # --- widgets ---------------------------------------------------------------------------
    def _button(self, text: str, icon: str, tip: str, checkable: bool = False) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setIcon(_icon(icon))
        button.setToolTip(tip)
        button.setCheckable(checkable)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        return button

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.rectangle_button = self._button(
            self.tr("Rectangle"), "/mActionRectangleExtent.svg",
            self.tr("Drag a rectangle on the map (Esc cancels)"), checkable=True)
        self.polygon_button = self._button(
            self.tr("Polygon"), "/mActionCapturePolygon.svg",
            self.tr("Click the vertices; right-click or double-click finishes, Backspace "
                    "removes the last vertex, Esc cancels"), checkable=True)
        self.layer_button = self._button(
            self.tr("Layer"), "/mIconPolygonLayer.svg",
            self.tr("Use the active layer's selected features or its extent"))
        self.layer_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.layer_button)
        self.selection_action = menu.addAction(self.tr("Selected features of the active layer"))
        self.extent_action = menu.addAction(self.tr("Extent of the active layer"))
        self.layer_button.setMenu(menu)
        self.canvas_button = self._button(
            self.tr("Map view"), "/mActionSetToCanvasExtent.svg",
            self.tr("Use the current map view's extent"))
        self.clear_button = self._button(self.tr("Clear"), "/mIconClearText.svg",
                                         self.tr("Forget the area and remove its tiles"))
        for button in (self.rectangle_button, self.polygon_button, self.layer_button,
                       self.canvas_button, self.clear_button):
            row.addWidget(button)
        layout.addLayout(row)
        self.summary = QLabel(self.tr("Draw an area of interest, or take one from a layer "
                                      "or the map view."), self)
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)

        self.rectangle_button.toggled.connect(lambda on: self._toggle_tool(RECTANGLE, on))
        self.polygon_button.toggled.connect(lambda on: self._toggle_tool(POLYGON, on))
        self.selection_action.triggered.connect(lambda: self.use_active_layer(True))
        self.extent_action.triggered.connect(lambda: self.use_active_layer(False))
        self.canvas_button.clicked.connect(self.use_canvas_extent)
        self.clear_button.clicked.connect(self.clear)

    # --- drawing ---------------------------------------------------------------------------
    def _toggle_tool(self, mode: str, on: bool) -> None:
        if on:
            self.start_drawing(mode)
        elif self.tool is not None and self.tool.mode == mode:
            self.stop_drawing()

    def start_drawing(self, mode: str) -> AoiMapTool:
        canvas = self.context.canvas
        if self.tool is None:
            self.tool = AoiMapTool(canvas, mode)
            self.tool.aoiDrawn.connect(self._drawn)
            self.tool.deactivated.connect(self._tool_deactivated)
        self.tool.set_mode(mode)
        for button, its_mode in ((self.rectangle_button, RECTANGLE),
                                 (self.polygon_button, POLYGON)):
            button.blockSignals(True)
            button.setChecked(its_mode == mode)
            button.blockSignals(False)
        if canvas.mapTool() is not self.tool:
            self._previous_tool = canvas.mapTool()
            canvas.setMapTool(self.tool)
        return self.tool

    def stop_drawing(self) -> None:
        canvas = self.context.canvas
        if self.tool is not None and canvas is not None and canvas.mapTool() is self.tool:
            previous = self._previous_tool
            self._previous_tool = None
            if previous is not None:
                canvas.setMapTool(previous)
            else:
                canvas.unsetMapTool(self.tool)
        self._uncheck()

    def _uncheck(self) -> None:
        for button in (self.rectangle_button, self.polygon_button):
            button.blockSignals(True)
            button.setChecked(False)
            button.blockSignals(False)

    def _tool_deactivated(self) -> None:
        # another tool took over the canvas (pan, identify …)
        self._uncheck()

    def _drawn(self, geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem) -> None:
        self.stop_drawing()
        self.set_geometry(geometry, crs)

    # --- other sources -----------------------------------------------------------------------
    def use_active_layer(self, selected_only: bool) -> None:
        layer = self.context.iface.activeLayer() if self.context.iface is not None else None
        try:
            geometry = layer_geometry(layer, selected_only=selected_only)
        except RsbatchError as exc:
            self.context.notifier.warning(str(exc))
            return
        if layer is not None:  # layer_geometry has refused a missing layer already
            self.set_geometry(geometry, layer.crs())

    def use_canvas_extent(self) -> None:
        canvas = self.context.canvas
        self.set_geometry(rectangle_geometry(canvas.extent()),
                          canvas.mapSettings().destinationCrs())

    def set_geometry(self, geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem) -> None:
        """An AOI in any CRS: transformed to EPSG:4326, then its tiles resolved."""
        try:
            aoi = aoi_geojson(geometry, crs, self.context.project)
        except RsbatchError as exc:
            self.context.notifier.warning(str(exc), self.tr("Area of interest"))
            return
        self.set_aoi(aoi)

    def set_aoi(self, aoi: dict) -> None:
        """An AOI as GeoJSON (EPSG:4326): shown at once, its tiles resolved in a task."""
        self.aoi = aoi
        self.tiles = []
        self.area_layer.show(aoi, [])
        self.summary.setText(self.tr("Area of {:,.1f} km²: finding its Sentinel-2 tiles…")
                             .format(area_km2(aoi)))
        if self._tiles_task is not None:
            self._tiles_task.detach()
            self._tiles_task.cancel()
        self._tiles_task = self.context.tasks.start(FunctionTask(
            self.tr("rsbatch: Sentinel-2 tiles of the area"),
            lambda task: grid.tiles_for_aoi(aoi),
            on_success=lambda tiles: self._tiles_found(aoi, tiles),
            on_error=self._tiles_failed))

    def _tiles_found(self, aoi: dict, tiles: list[grid.Tile]) -> None:
        self._tiles_task = None
        if aoi is not self.aoi:
            return
        self.tiles = list(tiles)
        self.area_layer.show(aoi, self.tiles)
        names = ", ".join(t.tile for t in self.tiles[:12])
        if len(self.tiles) > 12:
            names += self.tr(" and {} more").format(len(self.tiles) - 12)
        self.summary.setText(self.tr("Area of {:,.1f} km² on {} Sentinel-2 tile(s): {}")
                             .format(area_km2(aoi), len(self.tiles), names))
        self.tilesChanged.emit(aoi, self.tiles)

    def _tiles_failed(self, error: BaseException) -> None:
        self._tiles_task = None
        self.context.notifier.error(error, self.tr("Area of interest"))
        self.summary.setText(str(error))
        self.tiles = []
        self.tilesChanged.emit(None, [])

    def clear(self) -> None:
        self.aoi = None
        self.tiles = []
        self.area_layer.remove()
        self.summary.setText(self.tr("Draw an area of interest, or take one from a layer or "
                                     "the map view."))
        self.tilesChanged.emit(None, [])

    def cleanup(self) -> None:
        """Unload: give the canvas back, remove the rubber band and the tiles layer."""
        if self._tiles_task is not None:
            self._tiles_task.detach()
        self.stop_drawing()
        if self.tool is not None:
            self.tool.cleanup()
            self.tool.deleteLater()
            self.tool = None
        self.area_layer.remove()
