"""rsbatch:searchscenes — Sentinel-2 scenes of the area's tiles in a date range."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsWkbTypes,
)

from ..core import catalog, grid
from ..core.errors import RsbatchError
from ..gui.compat import FIELD_DOUBLE, FIELD_STRING
from ..gui.geometry import from_geojson
from ..gui.proxy import proxies_for
from .common import FAST_INSERT, RsbatchAlgorithm, fail


def scene_fields() -> QgsFields:
    fields = QgsFields()
    for name, kind in (("tile", FIELD_STRING), ("date", FIELD_STRING),
                       ("cloud", FIELD_DOUBLE), ("item_id", FIELD_STRING),
                       ("collection", FIELD_STRING), ("datetime", FIELD_STRING),
                       ("platform", FIELD_STRING), ("baseline", FIELD_STRING),
                       ("offset", FIELD_DOUBLE)):
        fields.append(QgsField(name, kind))
    return fields


class SearchScenesAlgorithm(RsbatchAlgorithm):
    OUTPUT = "OUTPUT"
    COUNT = "COUNT"

    def name(self) -> str:
        return "searchscenes"

    def displayName(self) -> str:
        return self.tr("Search Sentinel-2 scenes")

    def shortHelpString(self) -> str:
        return self.tr(
            "Searches a STAC catalog (Earth Search v1 by default, or any STAC API, static "
            "catalog or ItemCollection) for Sentinel-2 L2A scenes of the tiles the area "
            "meets, from the first to the last date (inclusive). One row per tile and date "
            "(the newest processing run), at most the given cloud cover, with the tile's "
            "footprint. Uses QGIS's proxy settings.")

    def initAlgorithm(self, config: Any = None) -> None:
        self.add_aoi_parameters()
        self.add_search_parameters()
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Scenes")))
        self.addOutput(QgsProcessingOutputNumber(self.COUNT, self.tr("Number of scenes")))

    def prepareAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> bool:
        # QGIS's proxy is read on the main thread; processAlgorithm may run in another
        self._proxies = proxies_for(parameters.get(self.CATALOG) or catalog.EARTH_SEARCH_V1)
        return True

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:
        aoi = self.aoi(parameters, context)
        options = self.search_options(parameters, context)
        try:
            tiles = {t.tile: t for t in grid.tiles_for_aoi(aoi)}
            feedback.pushInfo(self.tr("Searching {} tile(s) from {} to {}…").format(
                len(tiles), options["start"], options["end"]))
            scenes = catalog.search(list(tiles), options["start"], options["end"],
                                    max_cloud=options["max_cloud"], catalog=options["catalog"],
                                    aoi=aoi, proxies=getattr(self, "_proxies", None))
        except RsbatchError as exc:
            raise fail(exc) from exc
        for warning in scenes.warnings:
            feedback.pushWarning(warning) if hasattr(feedback, "pushWarning") else \
                feedback.pushInfo(warning)
        sink, dest = self.parameterAsSink(parameters, self.OUTPUT, context, scene_fields(),
                                          QgsWkbTypes.Type.Polygon,
                                          QgsCoordinateReferenceSystem("EPSG:4326"))
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        for index, scene in enumerate(scenes):
            if feedback.isCanceled():
                break
            feature = QgsFeature(scene_fields())
            tile = tiles.get(scene.tile) or grid.tile_info(scene.tile)
            feature.setGeometry(from_geojson(tile.footprint))
            feature.setAttributes([scene.tile, scene.date, scene.cloud_cover, scene.item_id,
                                   scene.collection, scene.datetime, scene.platform,
                                   scene.processing_baseline, scene.offset])
            sink.addFeature(feature, FAST_INSERT)
            feedback.setProgress(100 * (index + 1) / max(1, len(scenes)))
        feedback.pushInfo(self.tr("{} scene(s) found").format(len(scenes)))
        return {self.OUTPUT: dest, self.COUNT: len(scenes)}
