"""The layer tree of results: a group per job ("rsbatch <job id>"), in it the indices above "RGB",
in each one layer per date (the mosaic) or per cell, newest date on top; a job's composites
in a "Composites" group below, per-tile layers of a job with mosaics in a "Tiles" group at
the bottom. The dock, Processing and `render` all place layers through `place_layer`, so
they agree.

Every layer is time-aware: a fixed temporal range, its acquisition day (a composite: its
period), so QGIS's temporal controller steps through a job's dates. QGIS 3.22 gives a raster
layer one fixed range (a range per band came in 3.38), hence one layer per date.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qgis.core import (
    QgsDateTimeRange,
    QgsLayerTreeGroup,
    QgsProject,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QDate, QDateTime, Qt, QTime

from ..core import products
from ..core.errors import MissingInput
from .compat import FIXED_TEMPORAL_RANGE
from .styles import style_product

URI_PROPERTY = "rsbatch/uri"
JOB_PROPERTY = "rsbatch/job_id"
GROUP_PROPERTY = "rsbatch/job_group"
SECTION_PROPERTY = "rsbatch/section"
#: a job group's sections below its product groups, in this order: kind → title
SECTIONS = {"composite": "Composites", "tiles": "Tiles"}
DATE_PROPERTY = "rsbatch/date"
TILE_PROPERTY = "rsbatch/tile"


def product_title(product: str) -> str:
    """The product's group title (its registry title; the name for unknown products)."""
    spec = products.PRODUCTS.get(product)
    return spec.title if spec is not None else product


def job_group(project: QgsProject, job_id: str, *, create: bool = True
              ) -> QgsLayerTreeGroup | None:
    """The job's group ("rsbatch <job id>"), made at the top of the tree if absent."""
    root = project.layerTreeRoot()
    for child in root.children():
        if isinstance(child, QgsLayerTreeGroup) and \
                child.customProperty(GROUP_PROPERTY) == job_id:
            return child
    if not create:
        return None
    group = QgsLayerTreeGroup(f"rsbatch {job_id}")
    group.setCustomProperty(GROUP_PROPERTY, job_id)
    # below the area-and-tiles layer when it is first, so its outlines stay visible
    first = root.children()[0] if root.children() else None
    position = 1 if first is not None and first.name().startswith("rsbatch: area") else 0
    root.insertChildNode(position, group)
    return group


def job_tag(job_id: str) -> str:
    """The part of a job id that tells its layers from another job's: 'rsb-20240611-…-3f9a'
    → '3f9a' (the group's name shows it whole); other ids stay whole."""
    head, _, tail = job_id.rpartition("-")
    return tail if head.startswith("rsb-") and tail else job_id


def _child_group(group: QgsLayerTreeGroup, name: str) -> QgsLayerTreeGroup | None:
    """A direct child group by name (`findGroup` also searches the sections' groups)."""
    for child in group.children():
        if isinstance(child, QgsLayerTreeGroup) and child.name() == name \
                and not child.customProperty(SECTION_PROPERTY):
            return child
    return None


def section_group(group: QgsLayerTreeGroup, section: str) -> QgsLayerTreeGroup:
    """The job group's "Composites" or "Tiles" group, made below the product groups."""
    kinds = list(SECTIONS)
    for child in group.children():
        if isinstance(child, QgsLayerTreeGroup) and \
                child.customProperty(SECTION_PROPERTY) == section:
            return child
    position = len(group.children())
    for index, child in enumerate(group.children()):
        kind = child.customProperty(SECTION_PROPERTY) if isinstance(
            child, QgsLayerTreeGroup) else None
        if kind in kinds and kinds.index(kind) > kinds.index(section):
            position = index
            break
    created = group.insertGroup(position, SECTIONS[section])
    created.setCustomProperty(SECTION_PROPERTY, section)
    return created


def product_group(group: QgsLayerTreeGroup, product: str) -> QgsLayerTreeGroup:
    title = product_title(product)
    found = _child_group(group, title)
    if found is not None:
        return found
    order = [product_title(p) for p in products.LAYER_ORDER]
    rank = order.index(title) if title in order else len(order)
    position = sum(1 for child in group.children()
                   if isinstance(child, QgsLayerTreeGroup) and child.name() in order
                   and not child.customProperty(SECTION_PROPERTY)
                   and order.index(child.name()) < rank)
    first = not group.children()
    created = group.insertGroup(position, title)
    if first:
        _reveal(group)
    return created


def _reveal(node: Any) -> None:
    """Show a group open once it has children: the layer tree view cannot expand a group
    while it is empty, so a group made before its first child would stay closed."""
    node.setExpanded(False)
    node.setExpanded(True)


def acquisition_day(date: str, last: str | None = None) -> QgsDateTimeRange:
    """The UTC day of an acquisition, [00:00, next day 00:00); with `last`, the days from
    `date` to `last` (a composite's period), [first 00:00, day after last 00:00)."""
    start = QDateTime(QDate.fromString(date, "yyyy-MM-dd"), QTime(0, 0), Qt.TimeSpec.UTC)
    end = QDateTime(QDate.fromString(last or date, "yyyy-MM-dd"), QTime(0, 0), Qt.TimeSpec.UTC)
    return QgsDateTimeRange(start, end.addDays(1), True, False)


def make_temporal(project: QgsProject, layer: Any, date: str, last: str | None = None) -> None:
    """Give the layer its acquisition day (or period) as a fixed temporal range, and widen
    the project's time extent to cover it, so QGIS's temporal controller steps through a
    job's dates."""
    day = acquisition_day(date, last)
    properties = layer.temporalProperties()
    properties.setMode(FIXED_TEMPORAL_RANGE)
    properties.setFixedTemporalRange(day)
    properties.setIsActive(True)
    settings = project.timeSettings()
    extent = settings.temporalRange()
    if extent.isInfinite() or extent.isEmpty() or not extent.begin().isValid():
        settings.setTemporalRange(day)
    else:
        settings.setTemporalRange(QgsDateTimeRange(min(extent.begin(), day.begin()),
                                                   max(extent.end(), day.end()), True, False))


def place_layer(project: QgsProject, layer: Any, output: Any) -> None:
    """Put `layer` (already in `project` or not) in its job's product group (of its section,
    if any: `output.section`), newest date on top, then tiles in order; tags it so the
    plugin knows it later and gives it its day (a composite: its period)."""
    first, last = output.period
    make_temporal(project, layer, first, last)
    layer.setCustomProperty(URI_PROPERTY, output.uri)
    layer.setCustomProperty(JOB_PROPERTY, output.job_id)
    layer.setCustomProperty(DATE_PROPERTY, output.date)
    layer.setCustomProperty(TILE_PROPERTY, output.tile)
    parent = job_group(project, output.job_id)
    if output.section:
        parent = section_group(parent, output.section)
    group = product_group(parent, output.product)
    position = 0
    for child in group.findLayers():
        other = child.layer()
        if other is None or other is layer:
            continue
        date = other.customProperty(DATE_PROPERTY, "")
        tile = other.customProperty(TILE_PROPERTY, "")
        if date > output.date or (date == output.date and tile < output.tile):
            position += 1
    root = project.layerTreeRoot()
    node = root.findLayer(layer.id())
    first = not group.findLayers()
    if node is None:
        if project.mapLayer(layer.id()) is None:
            project.addMapLayer(layer, False)
        inserted = group.insertLayer(position, layer)
    elif node.parent() is group:
        return
    else:
        inserted = node.clone()
        group.insertChildNode(position, inserted)
        node.parent().removeChildNode(node)
    # one legend open per product (the NDVI ramp), the other layers' closed
    inserted.setExpanded(first)
    if first:
        _reveal(group)


def add_output_layer(project: QgsProject, output: Any, source: str,
                     limits: Sequence[tuple[float, float]] | None = None) -> QgsRasterLayer:
    """Create, style and insert one output's layer (main thread)."""
    layer = QgsRasterLayer(source, output.name, "gdal")
    if not layer.isValid():
        raise MissingInput(f"{output.uri} could not be opened as a raster")
    style_product(layer, output.product, limits)
    project.addMapLayer(layer, False)
    place_layer(project, layer, output)
    return layer


def loaded_uris(project: QgsProject) -> set[str]:
    return {layer.customProperty(URI_PROPERTY) for layer in project.mapLayers().values()
            if layer.customProperty(URI_PROPERTY)}
