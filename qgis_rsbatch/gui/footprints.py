"""The "area and tiles" layer: the AOI and the Sentinel-2 tile footprints it meets, labelled.

A memory layer rather than rubber bands: it follows project CRS changes, can be styled,
identified and exported, and is removed cleanly. The plugin owns it: it is replaced when
the AOI changes and removed on unload; results never go in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFeature,
    QgsField,
    QgsFillSymbol,
    QgsPalLayerSettings,
    QgsProject,
    QgsRendererCategory,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QColor, QFont

from .compat import FIELD_INT, FIELD_STRING
from .geometry import from_geojson

AOI_COLOR = "#ff7f00"
TILE_COLOR = "#1f78b4"


def tr(text: str) -> str:
    return QCoreApplication.translate("rsbatch", text)


def _renderer() -> QgsCategorizedSymbolRenderer:
    # outlines only: results drawn below stay their true colours
    aoi = QgsFillSymbol.createSimple({
        "color": "0,0,0,0", "outline_color": AOI_COLOR, "outline_width": "0.8",
        "outline_style": "solid"})
    tile = QgsFillSymbol.createSimple({
        "color": "0,0,0,0", "outline_color": TILE_COLOR, "outline_width": "0.5",
        "outline_style": "dash"})
    return QgsCategorizedSymbolRenderer("kind", [
        QgsRendererCategory("aoi", aoi, tr("Area of interest")),
        QgsRendererCategory("tile", tile, tr("Sentinel-2 tile")),
    ])


def _labeling() -> QgsVectorLayerSimpleLabeling:
    settings = QgsPalLayerSettings()
    settings.fieldName = "tile"
    settings.enabled = True
    text = QgsTextFormat()
    font = QFont()
    font.setBold(True)
    text.setFont(font)
    text.setSize(10)
    text.setColor(QColor(TILE_COLOR))
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(1.2)
    buffer.setColor(QColor("white"))
    text.setBuffer(buffer)
    settings.setFormat(text)
    return QgsVectorLayerSimpleLabeling(settings)


class AreaLayer:
    """Creates, refills and removes the area-and-tiles memory layer of a project."""

    NAME = "rsbatch: area and tiles"

    def __init__(self, project: QgsProject | None = None) -> None:
        self.project = project or QgsProject.instance()
        self._layer_id: str | None = None

    @property
    def layer(self) -> QgsVectorLayer | None:
        if self._layer_id is None:
            return None
        return self.project.mapLayer(self._layer_id)

    def _create(self) -> QgsVectorLayer:
        layer = QgsVectorLayer("Polygon?crs=EPSG:4326", self.NAME, "memory")
        layer.dataProvider().addAttributes([
            QgsField("kind", FIELD_STRING), QgsField("tile", FIELD_STRING),
            QgsField("epsg", FIELD_INT)])
        layer.updateFields()
        layer.setRenderer(_renderer())
        layer.setLabeling(_labeling())
        layer.setLabelsEnabled(True)
        # a scratch layer: QGIS need not ask to save it when the project closes
        layer.setCustomProperty("skipMemoryLayersCheck", 1)
        self.project.addMapLayer(layer, False)
        self.project.layerTreeRoot().insertLayer(0, layer)
        self._layer_id = layer.id()
        return layer

    def show(self, aoi: dict[str, Any] | None, tiles: Sequence[Any] = ()) -> QgsVectorLayer:
        """Replace the layer's features: the AOI (GeoJSON) and `tiles` (core.grid.Tile)."""
        layer = self.layer or self._create()
        provider = layer.dataProvider()
        provider.truncate()
        features = []
        if aoi is not None:
            feature = QgsFeature(layer.fields())
            feature.setGeometry(from_geojson(aoi))
            feature.setAttributes(["aoi", None, None])
            features.append(feature)
        for tile in tiles:
            feature = QgsFeature(layer.fields())
            feature.setGeometry(from_geojson(tile.footprint))
            feature.setAttributes(["tile", tile.tile, tile.epsg])
            features.append(feature)
        provider.addFeatures(features)
        layer.updateExtents()
        layer.triggerRepaint()
        return layer

    def remove(self) -> None:
        layer = self.layer
        if layer is not None:
            self.project.removeMapLayer(layer.id())
        self._layer_id = None
