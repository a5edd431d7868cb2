"""Enum and API names that moved between QGIS 3.22 and QGIS 4, looked up once.

QGIS 3.22 knows only the old homes (`QgsWkbTypes.GeometryType`, `QgsColorRampShader.Type`);
QGIS 4 keeps only the new ones (`Qgis.GeometryType`, `Qgis.ShaderInterpolationMethod`).
"""

from __future__ import annotations

from qgis.core import (
    Qgis,
    QgsColorRampShader,
    QgsRasterLayerTemporalProperties,
    QgsUnitTypes,
    QgsWkbTypes,
)


def _pick(new_owner: object, new: str, old_owner: object, old: str) -> object:
    """`new_owner.new` when this QGIS has it, else `old_owner.old`."""
    owner = getattr(new_owner, new.split(".", maxsplit=1)[0], None)
    if owner is not None:
        value = new_owner
        for part in new.split("."):
            value = getattr(value, part)
        return value
    value = old_owner
    for part in old.split("."):
        value = getattr(value, part)
    return value


POLYGON_GEOMETRY = _pick(Qgis, "GeometryType.Polygon", QgsWkbTypes,
                         "GeometryType.PolygonGeometry")
LINE_GEOMETRY = _pick(Qgis, "GeometryType.Line", QgsWkbTypes, "GeometryType.LineGeometry")
SHADER_INTERPOLATED = _pick(Qgis, "ShaderInterpolationMethod.Linear", QgsColorRampShader,
                            "Type.Interpolated")
#: a raster layer's fixed temporal range mode
FIXED_TEMPORAL_RANGE = _pick(Qgis, "RasterTemporalMode.FixedTemporalRange",
                             QgsRasterLayerTemporalProperties, "ModeFixedTemporalRange")
#: a CRS's map units when they are metres
METRES = _pick(Qgis, "DistanceUnit.Meters", QgsUnitTypes, "DistanceUnit.DistanceMeters")
SHADER_CONTINUOUS = _pick(Qgis, "ShaderClassificationMethod.Continuous", QgsColorRampShader,
                          "ClassificationMode.Continuous")


def _field_types() -> tuple[object, object, object]:
    """QgsField types: QVariant.Type in QGIS 3 (Qt5), QMetaType.Type in QGIS 4 (Qt6)."""
    from qgis.PyQt import QtCore

    variant = getattr(QtCore, "QVariant", None)
    if variant is not None and hasattr(variant, "String"):
        return variant.String, variant.Int, variant.Double
    meta = QtCore.QMetaType.Type
    return meta.QString, meta.Int, meta.Double


FIELD_STRING, FIELD_INT, FIELD_DOUBLE = _field_types()


def enum_int(value: object) -> int:
    """An enum member as an int: PyQt5's are ints already, PyQt6's carry `.value`."""
    return int(getattr(value, "value", value))  # type: ignore[call-overload]


def user_role(offset: int) -> int:
    """Qt.ItemDataRole.UserRole + offset, in both PyQt5 and PyQt6."""
    from qgis.PyQt.QtCore import Qt

    return enum_int(Qt.ItemDataRole.UserRole) + offset
