"""Finished cells' outputs as styled layers, in one layer group per job.

Split by thread. `build_layers()` (a task) does all that may block: resolve each output URI
to a GDAL source (a local path, /vsis3/ for streaming, or a download), open it as a layer
(QGIS reads statistics for a default renderer while opening: ~50 ms for a small local COG,
much more over the network), compute the RGB stretch and style it. The layers travel to the
main thread in a QgsMapLayerStore moved there, QGIS's own way (Processing's); only then,
on the main thread, `ResultLoader` adds them to the project and the job's group. No layer
is ever added to the project from a worker thread.

Where the bytes are is `sources`' business, where the layers go `layer_tree`'s; `render.py`
and Processing use the same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from qgis.core import QgsMapLayerStore, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QCoreApplication, QObject, pyqtSignal

from ..core import products
from ..core.contract import Status
from ..core.errors import MissingInput
from ..tasks import FunctionTask
from .layer_tree import job_tag, loaded_uris, place_layer, product_title
from .messages import describe
from .sources import S3Access, download_s3, resolve
from .styles import rgb_limits, style_product


def tr(text: str) -> str:
    return QCoreApplication.translate("rsbatch", text)


@dataclass(frozen=True)
class Output:
    """One product file of one finished cell, mosaic or composite."""

    job_id: str
    cell_id: str                  # a cell's id, or a reduce unit's
    tile: str                     # a cell's tile; a unit's kind
    date: str                     # the acquisition day; a composite's first day
    product: str
    uri: str
    kind: str = "cell"            # "cell", "mosaic" or "composite" (Record.kind)
    last: str = ""                # a composite's last day
    section: str = ""             # the job group's section it goes in (layer_tree.SECTIONS)

    @property
    def period(self) -> tuple[str, str]:
        return self.date, self.last or self.date

    @property
    def name(self) -> str:
        """Says what and when, and which job (so repeated jobs' layers differ by name)."""
        title, tag = product_title(self.product), job_tag(self.job_id)
        if self.kind == "mosaic":
            return f"{self.date} {title} · {tag}"
        if self.kind == "composite":
            first, last = self.period
            return f"{first} – {last} {title} composite · {tag}"
        return f"{self.tile} {self.date} {title} · {tag}"


@dataclass
class Prepared:
    output: Output
    source: str = ""
    limits: list[tuple[float, float]] | None = None
    error: str = ""
    layer_id: str = ""


@dataclass
class LoadRequest:
    job_id: str
    outputs: list[Output]
    s3_mode: str = "stream"
    download_folder: str = ""
    rgb_stretch: str = "fixed"
    s3: S3Access = field(default_factory=S3Access)


def has_mosaics(records: Iterable[Any]) -> bool:
    """Whether a job makes per-date mosaics (its records, of any status, say so)."""
    return any(record.kind == "mosaic" for record in records)


def outputs_of(records: Iterable[Any], *, mosaics: bool | None = None,
               tiles: bool = False) -> list[Output]:
    """The outputs of the SUCCEEDED records (core.tasklog Record) that stand for the job.

    A job with per-date mosaics (`mosaics`; default: whether `records` hold any) is its
    mosaics and composites; its per-tile outputs only when asked (`tiles=True`: those
    alone, for a "Tiles" group). A job without mosaics is its cells and composites.
    """
    records = list(records)
    if mosaics is None:
        mosaics = has_mosaics(records)
    found = []
    for record in records:
        kind = record.kind
        if record.status is not Status.SUCCEEDED or \
                (tiles and kind != "cell") or (mosaics and kind == "cell" and not tiles):
            continue
        section = "composite" if kind == "composite" else ("tiles" if tiles and mosaics
                                                           else "")
        first, last = record.period
        for product, uri in sorted(dict(record.outputs).items()):
            found.append(Output(record.job_id, record.cell_id, record.tile, first, product,
                                uri, kind=kind, last=last if last != first else "",
                                section=section))
    return found


def _open(output: Output, request: LoadRequest,
          downloader: Callable[[str, str, S3Access], str]) -> tuple[Prepared, Any]:
    """One output: its source, opened as a layer (checked), and its RGB limits."""
    item = Prepared(output)
    layer = None
    try:
        item.source = resolve(output.uri, s3_mode=request.s3_mode,
                              download_folder=request.download_folder, access=request.s3,
                              downloader=downloader)
        layer = QgsRasterLayer(item.source, output.name, "gdal")
        if not layer.isValid():
            raise MissingInput(f"{output.uri} could not be opened as a raster")
        if products.get(output.product).style.kind == "rgb-stretch":
            item.limits = rgb_limits(layer, request.rgb_stretch)
    except Exception as exc:  # one bad file must not hide the others
        item.error = describe(exc)
        layer = None
    return item, layer


def prepare(request: LoadRequest, task: Any = None,
            downloader: Callable[[str, str, S3Access], str] = download_s3) -> list[Prepared]:
    """Blocking: sources, a check that each opens, RGB limits (for Processing's loader)."""
    prepared = []
    total = max(1, len(request.outputs))
    for index, output in enumerate(request.outputs):
        if task is not None:
            task.report(index / total)
        item, _layer = _open(output, request, downloader)
        prepared.append(item)
    return prepared


@dataclass
class Built:
    """Styled layers made in a task, in a store already moved to the main thread."""

    store: Any
    items: list[Prepared]


def build_layers(request: LoadRequest, task: Any = None,
                 downloader: Callable[[str, str, S3Access], str] = download_s3) -> Built:
    """Blocking (a task): open and style every output's layer, then hand them to the main
    thread. Opening is the slow part (QGIS reads statistics for a default renderer, GDAL
    may reach S3), so it happens here; the main thread only moves the layers into the
    project. The store is QGIS's own way to pass layers between threads (Processing does
    the same): the layers are its children and move with it."""
    store = QgsMapLayerStore()
    items = []
    total = max(1, len(request.outputs))
    for index, output in enumerate(request.outputs):
        if task is not None:
            task.report(index / total)
        item, layer = _open(output, request, downloader)
        if layer is not None:
            style_product(layer, output.product, item.limits)
            store.addMapLayer(layer)
            item.layer_id = layer.id()
        items.append(item)
    store.moveToThread(QCoreApplication.instance().thread())
    return Built(store, items)


class ResultLoader(QObject):
    """Adds finished outputs to the project as they arrive; never the same file twice."""

    #: job id, ids of the layers just added
    layersAdded = pyqtSignal(str, list)
    #: job id, one sentence per output that could not be loaded
    loadFailed = pyqtSignal(str, list)

    def __init__(self, tasks: Any, project: QgsProject | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.tasks = tasks
        self.project = project or QgsProject.instance()
        self._pending: set[str] = set()
        self.downloader: Callable[[str, str, S3Access], str] = download_s3

    def load(self, request: LoadRequest) -> Any:
        """Start loading the outputs not already on the map or on their way; the task or None."""
        present = loaded_uris(self.project) | self._pending
        outputs = [o for o in request.outputs if o.uri not in present]
        if not outputs:
            return None
        request.outputs = outputs
        self._pending.update(o.uri for o in outputs)
        task = FunctionTask(
            tr("rsbatch: loading {} result(s) of {}").format(len(outputs), request.job_id),
            lambda t: build_layers(request, t, self.downloader),
            on_success=lambda built: self._add(request, built),
            on_error=lambda error: self._failed(request, [describe(error)]),
            on_cancel=lambda: self._forget(request))
        return self.tasks.start(task)

    def _forget(self, request: LoadRequest) -> None:
        self._pending.difference_update(o.uri for o in request.outputs)

    def _failed(self, request: LoadRequest, reasons: list[str]) -> None:
        self._forget(request)
        self.loadFailed.emit(request.job_id, reasons)

    def _add(self, request: LoadRequest, built: Built) -> None:
        self._forget(request)
        added, errors = [], []
        present = loaded_uris(self.project)
        for item in built.items:
            if item.error:
                errors.append(item.error)
                continue
            layer = built.store.takeMapLayer(built.store.mapLayer(item.layer_id))
            if layer is None or item.output.uri in present:
                continue
            self.project.addMapLayer(layer, False)
            place_layer(self.project, layer, item.output)
            present.add(item.output.uri)
            added.append(layer.id())
        if added:
            self.layersAdded.emit(request.job_id, added)
        if errors:
            self.loadFailed.emit(request.job_id, errors)
