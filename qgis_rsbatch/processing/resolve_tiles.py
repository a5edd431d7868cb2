"""rsbatch:resolvetiles — the Sentinel-2 tiles an area of interest meets, as footprints."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFeatureSink,
    QgsWkbTypes,
)

from ..core import grid
from ..core.errors import RsbatchError
from ..gui.compat import FIELD_DOUBLE, FIELD_INT, FIELD_STRING
from ..gui.geometry import from_geojson
from .common import FAST_INSERT, RsbatchAlgorithm, fail


def tile_fields() -> QgsFields:
    fields = QgsFields()
    fields.append(QgsField("tile", FIELD_STRING))
    fields.append(QgsField("epsg", FIELD_INT))
    fields.append(QgsField("origin_x", FIELD_DOUBLE))
    fields.append(QgsField("origin_y", FIELD_DOUBLE))
    return fields


class ResolveTilesAlgorithm(RsbatchAlgorithm):
    OUTPUT = "OUTPUT"
    TILES = "TILES"
    COUNT = "COUNT"

    def name(self) -> str:
        return "resolvetiles"

    def displayName(self) -> str:
        return self.tr("Resolve Sentinel-2 tiles")

    def shortHelpString(self) -> str:
        return self.tr(
            "Finds the Sentinel-2 (MGRS) tiles whose 109.8 km squares meet the area of "
            "interest, offline and exactly, across UTM zone edges. Outputs each tile's "
            "footprint (EPSG:4326) with its id, UTM EPSG code and 10 m grid origin, and the "
            "ids as a comma-separated list.")

    def initAlgorithm(self, config: Any = None) -> None:
        self.add_aoi_parameters()
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT,
                                                            self.tr("Tile footprints")))
        self.addOutput(QgsProcessingOutputString(self.TILES, self.tr("Tile ids")))
        self.addOutput(QgsProcessingOutputNumber(self.COUNT, self.tr("Number of tiles")))

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:
        aoi = self.aoi(parameters, context)
        try:
            tiles = grid.tiles_for_aoi(aoi)
        except RsbatchError as exc:
            raise fail(exc) from exc
        sink, dest = self.parameterAsSink(parameters, self.OUTPUT, context, tile_fields(),
                                          QgsWkbTypes.Type.Polygon,
                                          QgsCoordinateReferenceSystem("EPSG:4326"))
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for index, tile in enumerate(tiles):
            if feedback.isCanceled():
                break
            feature = QgsFeature(tile_fields())
            feature.setGeometry(from_geojson(tile.footprint))
            feature.setAttributes([tile.tile, tile.epsg, tile.origin[0], tile.origin[1]])
            sink.addFeature(feature, FAST_INSERT)
            feedback.setProgress(100 * (index + 1) / len(tiles))
        feedback.pushInfo(self.tr("{} tile(s): {}").format(len(tiles),
                                                           ", ".join(t.tile for t in tiles)))
        return {self.OUTPUT: dest, self.TILES: ",".join(t.tile for t in tiles),
                self.COUNT: len(tiles)}
