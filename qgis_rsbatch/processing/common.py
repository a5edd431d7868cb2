"""What rsbatch's algorithms share: the area-of-interest and search parameters, and turning
them into core's inputs (GeoJSON in EPSG:4326, dates, cloud limit, catalog)."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsFeatureSink,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterDateTime,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QCoreApplication, QDate

from ..core.errors import RsbatchError
from ..gui.geometry import aoi_geojson

DATE_FORMAT = "yyyy-MM-dd"
FAST_INSERT = QgsFeatureSink.Flag.FastInsert


def tr(text: str) -> str:
    return QCoreApplication.translate("Processing", text)


class RsbatchAlgorithm(QgsProcessingAlgorithm):
    """Base of rsbatch's algorithms: the common parameters and their conversions."""

    INPUT = "INPUT"
    EXTENT = "EXTENT"
    START = "START"
    END = "END"
    MAX_CLOUD = "MAX_CLOUD"
    CATALOG = "CATALOG"

    def tr(self, text: str) -> str:
        return tr(text)

    def createInstance(self) -> QgsProcessingAlgorithm:
        return type(self)()

    def group(self) -> str:
        return self.tr("Sentinel-2")

    def groupId(self) -> str:
        return "sentinel2"

    # --- parameters --------------------------------------------------------------------------
    def add_aoi_parameters(self) -> None:
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.INPUT, self.tr("Area of interest (features, any CRS)"),
            [QgsProcessing.SourceType.TypeVectorAnyGeometry], optional=True))
        self.addParameter(QgsProcessingParameterExtent(
            self.EXTENT, self.tr("… or area of interest as an extent"), optional=True))

    def add_search_parameters(self) -> None:
        today = QDate.currentDate()
        start = QgsProcessingParameterDateTime(
            self.START, self.tr("First date"), QgsProcessingParameterDateTime.Type.Date,
            defaultValue=today.addDays(-30))
        end = QgsProcessingParameterDateTime(
            self.END, self.tr("Last date"), QgsProcessingParameterDateTime.Type.Date,
            defaultValue=today)
        self.addParameter(start)
        self.addParameter(end)
        self.addParameter(QgsProcessingParameterNumber(
            self.MAX_CLOUD, self.tr("Cloud cover at most (%)"),
            QgsProcessingParameterNumber.Type.Double, defaultValue=30.0, minValue=0.0,
            maxValue=100.0))
        self.addParameter(QgsProcessingParameterString(
            self.CATALOG, self.tr("STAC catalog (API URL, catalog.json or ItemCollection; "
                                  "empty: Earth Search v1)"), optional=True))

    # --- conversions -------------------------------------------------------------------------
    def aoi(self, parameters: dict, context: Any) -> dict:
        """The AOI parameters as GeoJSON (EPSG:4326); QgsProcessingException if none."""
        source = self.parameterAsSource(parameters, self.INPUT, context)
        if source is not None:
            parts = [f.geometry() for f in source.getFeatures()
                     if f.hasGeometry() and not f.geometry().isEmpty()]
            if not parts:
                raise QgsProcessingException(self.tr("The area-of-interest layer has no "
                                                     "feature with a geometry"))
            geometry = QgsGeometry.unaryUnion(parts)
            if geometry.isNull() or geometry.isEmpty():
                geometry = QgsGeometry.collectGeometry(parts)
            crs = source.sourceCrs()
        elif parameters.get(self.EXTENT) not in (None, ""):
            rect = self.parameterAsExtent(parameters, self.EXTENT, context)
            crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
            geometry = QgsGeometry.fromRect(rect)
        else:
            raise QgsProcessingException(self.tr("Give an area of interest: a layer or an "
                                                 "extent"))
        try:
            return aoi_geojson(geometry, crs, context=context.transformContext())
        except RsbatchError as exc:
            raise QgsProcessingException(str(exc)) from exc

    def dates(self, parameters: dict, context: Any) -> tuple[str, str]:
        values = []
        for name in (self.START, self.END):
            value = parameters.get(name)
            if isinstance(value, str) and value.strip():
                values.append(value.strip()[:10])
                continue
            date = self.parameterAsDateTime(parameters, name, context).date()
            if not date.isValid():
                raise QgsProcessingException(self.tr("{} is not a date").format(name))
            values.append(date.toString(DATE_FORMAT))
        return values[0], values[1]

    def search_options(self, parameters: dict, context: Any) -> dict[str, Any]:
        start, end = self.dates(parameters, context)
        catalog = self.parameterAsString(parameters, self.CATALOG, context).strip() or None
        return {"start": start, "end": end, "catalog": catalog,
                "max_cloud": self.parameterAsDouble(parameters, self.MAX_CLOUD, context)}


def fail(error: BaseException) -> QgsProcessingException:
    """Core's error as the exception Processing shows (its message is the sentence to read)."""
    if isinstance(error, QgsProcessingException):
        return error
    return QgsProcessingException(str(error) if isinstance(error, RsbatchError)
                                  else f"{type(error).__name__}: {error}")
