"""Areas of interest from QGIS geometries, in any CRS, as the GeoJSON (EPSG:4326) core expects.

Edges are densified before the transform: a straight edge in the project's CRS (UTM, Web
Mercator, a national grid) is a curve in longitude/latitude, and the tiles an AOI meets
depend on where its edges really run. The transform uses the project's transform context,
so datum transformations the user chose apply.
"""

from __future__ import annotations

import json
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsDistanceArea,
    QgsGeometry,
    QgsMapLayer,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)

from ..core import aoi as core_aoi
from ..core.errors import InvalidInput
from .compat import METRES

#: points per edge (at least) after densifying, before the transform to EPSG:4326
DENSIFY_STEPS = 64


def mosaic_epsg(crs: QgsCoordinateReferenceSystem) -> int | None:
    """The EPSG code of a CRS chosen for the mosaic grid (None: not set, the planner's
    automatic UTM zone); InvalidInput when it cannot hold a grid of 10 m pixels."""
    if not crs.isValid():
        return None
    authid = crs.authid().upper()
    if not authid.startswith("EPSG:") or not authid[5:].isdigit():
        raise InvalidInput(f"the mosaic CRS {crs.description() or authid} has no EPSG code; "
                           "choose one from the EPSG list")
    if crs.isGeographic() or crs.mapUnits() != METRES:
        raise InvalidInput(f"the mosaic CRS {authid} ({crs.description()}) is not projected in "
                           "metres; mosaics have 10 m pixels: choose a projected CRS such as "
                           "a UTM zone")
    return int(authid[5:])


def wgs84() -> QgsCoordinateReferenceSystem:
    return QgsCoordinateReferenceSystem("EPSG:4326")


def to_wgs84(geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem,
             project: QgsProject | None = None,
             context: QgsCoordinateTransformContext | None = None) -> QgsGeometry:
    """`geometry` (in `crs`) densified and transformed to EPSG:4326 (x = lon, y = lat), with
    `context` (else the project's transform context)."""
    if geometry is None or geometry.isNull() or geometry.isEmpty():
        raise InvalidInput("the area of interest is empty")
    geom = QgsGeometry(geometry)
    target = wgs84()
    if not crs.isValid():
        raise InvalidInput("the area of interest has no valid coordinate reference system")
    if crs != target:
        box = geom.boundingBox()
        step = max(box.width(), box.height()) / DENSIFY_STEPS
        if step > 0:
            geom = geom.densifyByDistance(step)
        if context is None:
            context = (project or QgsProject.instance()).transformContext()
        transform = QgsCoordinateTransform(crs, target, context)
        try:
            geom.transform(transform)
        except Exception as exc:  # QgsCsException: outside the CRS's area of use
            raise InvalidInput(f"the area of interest cannot be transformed from "
                               f"{crs.authid() or crs.description()} to EPSG:4326: {exc}"
                               ) from exc
    return geom


def geojson(geometry: QgsGeometry) -> dict[str, Any]:
    """A QgsGeometry in EPSG:4326 as a validated GeoJSON geometry (core.aoi's rules)."""
    data = json.loads(geometry.asJson(8))
    return core_aoi.parse_aoi(data)


def aoi_geojson(geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem,
                project: QgsProject | None = None,
                context: QgsCoordinateTransformContext | None = None) -> dict[str, Any]:
    """Any QGIS geometry in any CRS → GeoJSON geometry in EPSG:4326."""
    return geojson(to_wgs84(geometry, crs, project, context))


def from_geojson(data: dict[str, Any]) -> QgsGeometry:
    """A GeoJSON geometry (EPSG:4326) as a QgsGeometry in EPSG:4326."""
    from qgis.core import QgsJsonUtils

    fields = QgsJsonUtils.stringToFields(json.dumps({"type": "Feature", "properties": {},
                                                    "geometry": data}))
    features = QgsJsonUtils.stringToFeatureList(
        json.dumps({"type": "Feature", "properties": {}, "geometry": data}), fields)
    if not features:
        raise InvalidInput("not a GeoJSON geometry")
    return QgsGeometry(features[0].geometry())


def rectangle_geometry(rect: QgsRectangle) -> QgsGeometry:
    return QgsGeometry.fromRect(rect)


def layer_geometry(layer: QgsMapLayer, *, selected_only: bool) -> QgsGeometry:
    """The union of a vector layer's selected features, or any layer's extent, in its CRS."""
    if layer is None or not layer.isValid():
        raise InvalidInput("choose a valid layer first")
    if not selected_only:
        extent = layer.extent()
        if extent.isEmpty() or extent.isNull():
            raise InvalidInput(f"layer '{layer.name()}' has an empty extent")
        return QgsGeometry.fromRect(extent)
    if not isinstance(layer, QgsVectorLayer):
        raise InvalidInput(f"'{layer.name()}' is not a vector layer: it has no features to "
                           "select")
    parts = [f.geometry() for f in layer.getSelectedFeatures()
             if f.hasGeometry() and not f.geometry().isEmpty()]
    if not parts:
        raise InvalidInput(f"no feature with a geometry is selected in '{layer.name()}'")
    geom = QgsGeometry.unaryUnion(parts)
    if geom.isNull() or geom.isEmpty():
        geom = QgsGeometry.collectGeometry(parts)
    return geom


def area_km2(aoi: dict[str, Any]) -> float:
    """Ellipsoidal area of a GeoJSON (EPSG:4326) AOI in km² (0 for points and lines)."""
    measure = QgsDistanceArea()
    measure.setSourceCrs(wgs84(), QgsProject.instance().transformContext())
    measure.setEllipsoid("EPSG:7030")
    return measure.measureArea(from_geojson(aoi)) / 1e6
