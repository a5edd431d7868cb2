"""Finished cells' outputs as styled layers, in one layer group per job.

Split by thread. `build_layers()` (a task) does all that may block: resolve each output URI
to a GDAL source (a local path, /vsis3/ for streaming, or a download), open it as a layer
(QGIS reads statistics for a default renderer while opening: ~50 ms for a small local COG,
much more over the network), compute the RGB stretch and style it. The layers travel to the
main thread in a QgsMapLayerStore moved there, QGIS's own way (Processing's); only then,
on the main thread, `ResultLoader` adds them to the project and the job's group. No layer
is ever added to the project from a worker thread.

Layout: group "rsbatch <job id>" → subgroups "NDVI", "RGB" → one layer per cell, newest
date on top. `render.py` builds the same layout with the same functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from qgis.core import QgsLayerTreeGroup, QgsMapLayerStore, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QCoreApplication, QObject, pyqtSignal

from ..core.contract import Status
from ..core.errors import DependencyMissing, InvalidInput, MissingInput, OutputFailed
from ..tasks import FunctionTask
from .messages import describe
from .styles import rgb_limits, style_product

URI_PROPERTY = "rsbatch/uri"
JOB_PROPERTY = "rsbatch/job_id"
GROUP_PROPERTY = "rsbatch/job_group"
DATE_PROPERTY = "rsbatch/date"
TILE_PROPERTY = "rsbatch/tile"
PRODUCT_TITLES = {"ndvi": "NDVI", "rgb": "RGB"}
PRODUCT_ORDER = ("ndvi", "rgb")  # top to bottom in a job's group


def tr(text: str) -> str:
    return QCoreApplication.translate("rsbatch", text)


@dataclass(frozen=True)
class Output:
    """One product file of one finished cell."""

    job_id: str
    cell_id: str
    tile: str
    date: str
    product: str
    uri: str

    @property
    def name(self) -> str:
        return f"{self.tile} {self.date} {PRODUCT_TITLES.get(self.product, self.product)}"


@dataclass(frozen=True)
class S3Access:
    """How to reach a stack's bucket: names and an endpoint, never a secret."""

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None

    @classmethod
    def from_stack(cls, stack: dict[str, Any], profile: str | None = None) -> S3Access:
        return cls(profile=profile or stack.get("Profile") or None,
                   region=stack.get("Region") or None,
                   endpoint_url=stack.get("EndpointUrl") or None)


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


def outputs_of(records: Iterable[Any]) -> list[Output]:
    """Every product of every SUCCEEDED record (core.tasklog Record)."""
    found = []
    for record in records:
        if record.status is not Status.SUCCEEDED:
            continue
        for product, uri in sorted(dict(record.outputs).items()):
            found.append(Output(record.job_id, record.cell_id, record.tile, record.date,
                                product, uri))
    return found


# --- sources -------------------------------------------------------------------------------
def gdal_source(uri: str) -> str:
    """file:// → path, s3:// → /vsis3/, http(s) → /vsicurl/; anything else as it is."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme == "s3":
        return f"/vsis3/{parsed.netloc}{parsed.path}"
    if parsed.scheme in ("http", "https"):
        return f"/vsicurl/{uri}"
    return uri


def s3_gdal_options(access: S3Access) -> dict[str, str]:
    """GDAL settings for /vsis3/ that follow the profile chain (no key is ever passed)."""
    options: dict[str, str] = {}
    if access.profile:
        options["AWS_PROFILE"] = access.profile
    if access.region:
        options["AWS_REGION"] = access.region
    if access.endpoint_url:
        endpoint = urlparse(access.endpoint_url)
        options["AWS_S3_ENDPOINT"] = endpoint.netloc or access.endpoint_url
        options["AWS_HTTPS"] = "YES" if endpoint.scheme == "https" else "NO"
        options["AWS_VIRTUAL_HOSTING"] = "FALSE"
    return options


def configure_s3(bucket: str, access: S3Access) -> None:
    """Scope the S3 settings to this bucket's /vsis3/ paths (GDAL ≥ 3.6), nothing global."""
    options = s3_gdal_options(access)
    if not options:
        return
    try:
        from osgeo import gdal
    except ImportError:
        return
    setter = getattr(gdal, "SetPathSpecificOption", None) or getattr(gdal, "SetCredential",
                                                                     None)
    if setter is None:
        raise DependencyMissing("streaming from S3 with a profile needs GDAL 3.6 or newer; "
                                "choose 'download' for S3 results instead")
    for key, value in options.items():
        setter(f"/vsis3/{bucket}", key, value)


def download_s3(uri: str, folder: str, access: S3Access) -> str:
    """Copy an s3:// object into `folder` (kept: a second load reuses it); returns the path."""
    try:
        import boto3
    except ImportError as exc:
        raise DependencyMissing("downloading S3 results needs boto3 in QGIS's Python "
                                "(pip install boto3), or choose streaming") from exc
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    target = os.path.join(folder, bucket, *key.split("/"))
    if os.path.exists(target):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    session = boto3.session.Session(profile_name=access.profile, region_name=access.region)
    client = session.client("s3", endpoint_url=access.endpoint_url)
    partial = target + ".part"
    try:
        client.download_file(bucket, key, partial)
    except Exception as exc:  # botocore's errors: no credentials, denied, not found
        raise OutputFailed(f"could not download {uri}: {exc}") from exc
    os.replace(partial, target)
    return target


def _open(output: Output, request: LoadRequest,
          downloader: Callable[[str, str, S3Access], str]) -> tuple[Prepared, Any]:
    """One output: its source, opened as a layer (checked), and its RGB limits."""
    item = Prepared(output)
    layer = None
    try:
        item.source = _source(output.uri, request, downloader)
        layer = QgsRasterLayer(item.source, output.name, "gdal")
        if not layer.isValid():
            raise MissingInput(f"{output.uri} could not be opened as a raster")
        if output.product == "rgb":
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


def _source(uri: str, request: LoadRequest,
            downloader: Callable[[str, str, S3Access], str]) -> str:
    if not uri.startswith("s3://"):
        source = gdal_source(uri)
        if not source.startswith("/vsi") and not os.path.exists(source):
            raise MissingInput(f"{source} does not exist (moved or deleted?)")
        return source
    if request.s3_mode == "download":
        if not request.download_folder:
            raise InvalidInput("choose a download folder for S3 results in rsbatch's settings")
        return downloader(uri, request.download_folder, request.s3)
    configure_s3(urlparse(uri).netloc, request.s3)
    return gdal_source(uri)


# --- the layer tree ------------------------------------------------------------------------
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


def product_group(group: QgsLayerTreeGroup, product: str) -> QgsLayerTreeGroup:
    title = PRODUCT_TITLES.get(product, product)
    found = group.findGroup(title)
    if found is not None:
        return found
    order = [PRODUCT_TITLES.get(p, p) for p in PRODUCT_ORDER]
    rank = order.index(title) if title in order else len(order)
    position = sum(1 for child in group.children()
                   if isinstance(child, QgsLayerTreeGroup) and child.name() in order
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


def place_layer(project: QgsProject, layer: Any, output: Output) -> None:
    """Put `layer` (already in `project` or not) in its job's product group, newest date on
    top, then tiles in order; tags it so the plugin knows it later."""
    layer.setCustomProperty(URI_PROPERTY, output.uri)
    layer.setCustomProperty(JOB_PROPERTY, output.job_id)
    layer.setCustomProperty(DATE_PROPERTY, output.date)
    layer.setCustomProperty(TILE_PROPERTY, output.tile)
    group = product_group(job_group(project, output.job_id), output.product)
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


def add_output_layer(project: QgsProject, output: Output, source: str,
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
