"""A look at a scene before it is ticked: its footprint on the map and its thumbnail.

Selecting rows of the scene list draws the items' footprints (their STAC geometry) as a
rubber band on the canvas, and shows the first one's thumbnail where the item has one. A
thumbnail is fetched in a task (a URL through QGIS's proxy, or a local file) and kept in a
small cache, so going back and forth costs nothing. `cleanup()` removes the band (unload).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject
from qgis.gui import QgsRubberBand
from qgis.PyQt.QtCore import QObject, pyqtSignal
from qgis.PyQt.QtGui import QColor, QPixmap

from ..core.catalog import Scene
from ..tasks import FunctionTask
from .compat import POLYGON_GEOMETRY
from .geometry import from_geojson
from .proxy import proxies_for

FOOTPRINT_COLOR = "#e31a1c"
#: thumbnails kept in memory (a few kB each)
CACHE_SIZE = 64


def fetch_thumbnail(href: str, proxies: Any = None) -> bytes:
    """The thumbnail's bytes, from a URL (through the proxies) or a local path."""
    if "://" not in href or href.startswith("file://"):
        with open(href.removeprefix("file://"), "rb") as fh:
            return fh.read()
    from ..core.http import HttpClient

    return HttpClient(timeout=20, proxies=proxies).request("GET", href).check().body


class ScenePreview(QObject):
    """Footprints of the selected scenes on the canvas and the first one's thumbnail."""

    #: a thumbnail is ready (QPixmap) or there is none to show (a null QPixmap)
    thumbnailReady = pyqtSignal(QPixmap)

    def __init__(self, context: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.band: QgsRubberBand | None = None
        self.cache: OrderedDict[str, bytes] = OrderedDict()
        self.fetches = 0
        self._task: Any = None
        self._wanted: str | None = None

    def _band(self) -> QgsRubberBand | None:
        canvas = self.context.canvas
        if canvas is None:
            return None
        if self.band is None:
            self.band = QgsRubberBand(canvas, POLYGON_GEOMETRY)
            self.band.setStrokeColor(QColor(FOOTPRINT_COLOR))
            fill = QColor(FOOTPRINT_COLOR)
            fill.setAlpha(40)
            self.band.setFillColor(fill)
            self.band.setWidth(2)
        return self.band

    def show(self, scenes: Sequence[Scene]) -> None:
        """Draw the scenes' footprints; fetch (or reuse) the first one's thumbnail."""
        band = self._band()
        if band is not None:
            band.reset(POLYGON_GEOMETRY)
            canvas = self.context.canvas
            to_canvas = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"),
                                               canvas.mapSettings().destinationCrs(),
                                               QgsProject.instance())
            for scene in scenes:
                if scene.geometry:
                    geometry = from_geojson(dict(scene.geometry))
                    geometry.transform(to_canvas)
                    band.addGeometry(geometry, None)
        href = next((s.thumbnail for s in scenes if s.thumbnail), None)
        self._wanted = href
        if href is None:
            self.thumbnailReady.emit(QPixmap())
        elif href in self.cache:
            self.cache.move_to_end(href)
            self._emit(self.cache[href])
        elif self._task is None:
            self._fetch(href)

    def _fetch(self, href: str) -> None:
        proxies = proxies_for(href) if "://" in href and not href.startswith("file://") \
            else None
        self.fetches += 1

        def done(data: bytes) -> None:
            self._task = None
            self.cache[href] = data
            while len(self.cache) > CACHE_SIZE:
                self.cache.popitem(last=False)
            if self._wanted == href:
                self._emit(data)
            elif self._wanted and self._wanted not in self.cache:
                self._fetch(self._wanted)  # the selection moved on while this one loaded

        def failed(_error: BaseException) -> None:
            self._task = None
            if self._wanted == href:
                self.thumbnailReady.emit(QPixmap())

        self._task = self.context.tasks.start(FunctionTask(
            self.tr("rsbatch: fetching a scene thumbnail"),
            lambda task: fetch_thumbnail(href, proxies), on_success=done, on_error=failed))

    def _emit(self, data: bytes) -> None:
        pixmap = QPixmap()
        pixmap.loadFromData(data)
        self.thumbnailReady.emit(pixmap)

    def clear(self) -> None:
        if self.band is not None:
            self.band.reset(POLYGON_GEOMETRY)
        self._wanted = None

    def cleanup(self) -> None:
        """Unload: nothing of the preview stays on the canvas."""
        if self._task is not None:
            self._task.detach()
            self._task = None
        if self.band is not None:
            scene = self.band.scene()
            if scene is not None:
                scene.removeItem(self.band)
            self.band = None
