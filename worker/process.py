"""One cell, start to finish: task log RUNNING → bands → AOI cloud pre-check → products →
COGs → STAC item → SUCCEEDED (or SKIPPED, with no output, when the AOI is too cloudy).

Everything the worker does for a cell is in `process_cell`; the command line only parses
arguments and maps errors to exit codes. Any failure is recorded as FAILED with a reason a
person can act on, and no output appears under its final name unless it is complete.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qgis_rsbatch.core import products
from qgis_rsbatch.core.contract import Cell, ReduceUnit, Status, cloud_mask_uri
from qgis_rsbatch.core.errors import (
    Cancelled,
    InvalidInput,
    RsbatchError,
    TaskLogUnavailable,
    Terminated,
    TransitionRejected,
)
from qgis_rsbatch.core.processes import SUPERVISOR_ENV, ProcessId
from qgis_rsbatch.core.tasklog.schema import (
    AOI_MASKED_ATTRIBUTE,
    BATCH_JOB_ID,
    STATS_ATTRIBUTE,
    WORKER_PID,
    WORKER_START,
)

from . import aoicloud, cloudflags, compute, offset
from .aoistats import IndexStats
from .cog import CogWriter
from .cogcheck import validate_cog
from .outputs import destination_for, no_space, space_needed_if_full
from .profiles import cores_share, product_profile
from .reader import AoiClip, BandSet, Grid, check_on_tile, strips
from .sources import band_env
from .stac import cell_item, complete_products, mask_sizes, recorded_aoi_facts

log = logging.getLogger("rsbatch.worker")

#: rows per strip: a multiple of the inputs' 1024-row blocks and of the 512-row output blocks
STRIP_ROWS = 1024

Progress = Callable[[float, str], None]


@dataclass
class TaskResult:
    """What the worker did with one cell or reduce unit (the command line prints it)."""

    id: str                          # the cell's or the unit's id
    status: Status
    outputs: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    skipped: bool = False            # the outputs were already complete: nothing was done
    seconds: float = 0.0
    error: str | None = None         # why it failed, was cancelled or was SKIPPED
    aoi_masked_pct: float | None = None  # cells: how much of the AOI SCL masked
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # cells: AOI statistics
    lacking: list[str] = field(default_factory=list)  # units: inputs that failed or skipped


@dataclass
class _Outcome:
    """What `_run` found and made."""

    outputs: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    already_complete: bool = False
    aoi_masked_pct: float | None = None
    skip_reason: str | None = None
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record_fields(self) -> dict[str, Any]:
        """The task-log attributes of the outcome (schema.AOI_MASKED_ATTRIBUTE, STATS_…)."""
        fields: dict[str, Any] = {}
        if self.aoi_masked_pct is not None:
            fields[AOI_MASKED_ATTRIBUTE] = round(self.aoi_masked_pct, 3)
        if self.stats:
            fields[STATS_ATTRIBUTE] = self.stats
        return fields


def worker_identity() -> dict[str, Any] | None:
    """This process's pid and start time, recorded in the task log when a local supervisor
    started us: how `status`, `cancel` and `resume` tell a live worker from a dead one."""
    if not os.environ.get(SUPERVISOR_ENV):
        return None
    me = ProcessId.current()
    return {WORKER_PID: me.pid, WORKER_START: me.start}


def pause_point(name: str, cell: Cell | ReduceUnit) -> None:
    """Test hook: with RSBATCH_WORKER_PAUSE=<name>:<folder>, stop at point `name` (running:
    RUNNING recorded; written: every strip written, scratch files on disk, nothing
    published), announce it in <folder>/<cell or unit id>.paused (our pid) and wait until
    <folder>/<cell or unit id>.go exists. Lets a test kill a worker at a known point."""
    point, _, folder = os.environ.get("RSBATCH_WORKER_PAUSE", "").partition(":")
    if point != name or not folder:
        return
    key = cell.unit_id if isinstance(cell, ReduceUnit) else cell.cell_id
    with open(os.path.join(folder, f"{key}.paused"), "w") as fh:
        fh.write(str(os.getpid()))
    while not os.path.exists(os.path.join(folder, f"{key}.go")):
        time.sleep(0.02)


def _with(extra: dict | None, more: dict | None) -> dict | None:
    return {**(extra or {}), **more} if more else extra


def _start(task_log: Any, cell: Cell | ReduceUnit, extra: dict | None) -> Any:
    """Register the cell (if the planner did not) and mark it RUNNING; returns the record
    when the cell was SKIPPED earlier (done: nothing to do again)."""
    if task_log is None:
        return None
    task_log.register([cell])
    current = task_log.get(cell.task_id)
    if current is not None and current.status is Status.CANCELLED:
        what = f"cell {cell.cell_id}" if isinstance(cell, Cell) else f"unit {cell.unit_id}"
        raise Cancelled(f"{what} of job {cell.job_id} was cancelled")
    if current is not None and current.status is Status.SKIPPED:
        return current
    if current is not None and current.status is Status.SUCCEEDED:
        return None  # finished earlier; process_cell will find the outputs and skip
    batch_job = os.environ.get("AWS_BATCH_JOB_ID")  # on AWS Batch: where its log is
    task_log.transition(cell.task_id, Status.RUNNING, extra=_with(
        _with(extra, worker_identity()), {BATCH_JOB_ID: batch_job} if batch_job else None))
    return None


def _seed_fields(seed: dict | None, result: str | None = None) -> dict | None:
    """The seed's own task-log fields (files, date, exec_time, result), kept readable."""
    if seed is None:
        return None
    fields = dict(seed)
    if result is not None:
        fields["exec_time"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        fields["result"] = result
    return fields


def process_cell(cell: Cell, *, task_log: Any = None, progress: Progress | None = None,
                 seed: dict | None = None, region: str | None = None) -> TaskResult:
    """Process one cell and record it in `task_log` (any store, or None).

    `seed` holds the seed's `files` and `date` when the cell came from its execution input;
    they are written into the record with the seed's `exec_time` and `result`.
    """
    started = time.monotonic()
    report = progress or (lambda fraction, message: None)
    try:
        earlier = _start(task_log, cell, _seed_fields(seed))
        if earlier is not None:
            return TaskResult(cell.cell_id, Status.SKIPPED, error=earlier.error,
                              aoi_masked_pct=earlier.aoi_masked_pct)
        pause_point("running", cell)
        outcome = _run(cell, report, region)
    except Cancelled as exc:
        return TaskResult(cell.cell_id, Status.CANCELLED, error=str(exc),
                          seconds=time.monotonic() - started)
    except Terminated:
        raise  # told to stop: scratch files are gone; whoever stopped us records why
    except BaseException as exc:
        _record(task_log, cell, Status.FAILED, error=failure_reason(exc),
                extra=_seed_fields(seed, "failed"))
        raise
    fields = {**outcome.record_fields(),
              **(_with(_seed_fields(seed, "success"), worker_identity()) or {})}
    if outcome.skip_reason is not None:
        _record(task_log, cell, Status.SKIPPED, error=outcome.skip_reason,
                warnings=outcome.warnings, extra=fields)
        return TaskResult(cell.cell_id, Status.SKIPPED, warnings=outcome.warnings,
                          seconds=time.monotonic() - started, error=outcome.skip_reason,
                          aoi_masked_pct=outcome.aoi_masked_pct)
    _record(task_log, cell, Status.SUCCEEDED, outputs=outcome.outputs,
            warnings=outcome.warnings, extra=fields)
    return TaskResult(cell.cell_id, Status.SUCCEEDED, outcome.outputs, outcome.warnings,
                      outcome.already_complete, time.monotonic() - started,
                      aoi_masked_pct=outcome.aoi_masked_pct, stats=outcome.stats)


def failure_reason(exc: BaseException) -> str:
    """The FAILED record's reason: our errors' own message; anything else is our bug."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, RsbatchError):
        return str(exc)
    return f"internal error ({type(exc).__name__}: {exc}); please report it"


def _record(task_log: Any, cell: Cell | ReduceUnit, status: Status, **kwargs: Any) -> None:
    if task_log is None:
        return
    current = task_log.get(cell.task_id)
    if current is not None and current.status is status is Status.SUCCEEDED:
        return
    try:
        task_log.transition(cell.task_id, status, **kwargs)
    except (TransitionRejected, TaskLogUnavailable) as exc:
        log.warning("task log not updated: %s", exc)


def _run(cell: Cell, report: Progress, region: str | None) -> _Outcome:
    destination = destination_for(cell.output, region)
    try:
        done = _existing_outputs(cell, destination)
        if done is not None:
            report(1.0, "outputs already complete; nothing to do")
            item = destination.read_json(cell.item_uri)
            return _Outcome(done, already_complete=True, **recorded_aoi_facts(item))
        hrefs = {key: str(cell.bands[key]) for key in cell.needed_bands()}
        if cell.bands.get("scl"):  # SCL for the AOI cloud share; the offset check reads red
            keys = ("red", "scl") if cell.offset_check else ("scl",)
            hrefs.update({key: str(cell.bands[key]) for key in keys if cell.bands.get(key)})
        with band_env(list(hrefs.values()), requester_pays=cell.requester_pays, region=region), \
                BandSet(hrefs, requester_pays=cell.requester_pays) as bands:
            check_on_tile(bands.grid, cell.tile)
            clip, window, out_grid = _output_window(cell, bands.grid)
            outcome = _Outcome(aoi_masked_pct=aoicloud.masked_percent(bands, clip, window,
                                                                      STRIP_ROWS))
            outcome.skip_reason = aoicloud.skip_reason(outcome.aoi_masked_pct,
                                                       cell.max_aoi_cloud)
            if outcome.skip_reason is not None:
                report(1.0, f"skipped: {outcome.skip_reason}")
                return outcome
            if outcome.aoi_masked_pct is None and cell.max_aoi_cloud is not None:
                outcome.warnings.append("the AOI cloud limit was not applied: the cell has no "
                                        "SCL band")
            elif outcome.aoi_masked_pct is not None:
                report(0.01, f"AOI {outcome.aoi_masked_pct:.1f} % masked")
            _make_products(cell, bands, destination, report, (clip, window, out_grid),
                           outcome)
        return outcome
    finally:
        destination.close()


def _mask_products(cell: Cell) -> tuple[str, ...]:
    """The products that keep their clouds and get the cloud mask beside them: when the
    cell is cloud-masked and has SCL."""
    if not cell.cloud_mask or not cell.bands.get("scl"):
        return ()
    return tuple(p for p in cell.products if products.get(p).clouds_beside)


def _existing_outputs(cell: Cell, destination: Any) -> dict[str, str] | None:
    """The outputs, when an earlier run already made all of them completely (with the cloud
    masks beside those that keep their clouds)."""
    item = destination.read_json(cell.item_uri)
    expected = complete_products(item, cell)
    if set(expected) != set(cell.products):
        return None
    masks = mask_sizes(item)
    for product in _mask_products(cell):
        size = destination.size(cloud_mask_uri(cell.output_uri(product)))
        if size is None or masks.get(product) != size:
            return None
    for product, size in expected.items():
        uri = cell.output_uri(product)
        if destination.size(uri) != size:
            return None
        local = destination.local_copy(uri)
        if local is not None and not validate_cog(local, decode=True).valid:
            log.warning("%s: %s is damaged; making it again", cell.cell_id, uri)
            return None
    return {product: cell.output_uri(product) for product in cell.products}


def _decide_offset(cell: Cell, bands: BandSet) -> offset.OffsetDecision:
    if not cell.offset_check:
        return offset.not_checked(cell.offset, "offset_check not requested")
    if "scl" not in bands.datasets:
        return offset.not_checked(cell.offset, "offset unverified: the cell has no SCL band")
    red, scl = bands.overview(offset.VIEW_SIZE)
    return offset.decide(red, scl, cell.offset, cell.scale)


def _make_products(cell: Cell, bands: BandSet, destination: Any, report: Progress,
                   where: tuple[AoiClip | None, Any, Grid], outcome: _Outcome) -> None:
    """The products, their COGs and the STAC item; fills `outcome`."""
    warnings = outcome.warnings
    decision = _decide_offset(cell, bands)
    if decision.verdict in ("corrected", "unverified"):
        warnings.append(decision.detail)
        log.warning("%s: %s", cell.cell_id, decision.detail)
    report(0.02, decision.detail)
    clip, window, out_grid = where
    writers: dict[str, CogWriter] = {}
    masks: dict[str, CogWriter] = {}  # product → the cloud mask written beside it
    folder = None
    try:
        for product in cell.products:
            path = destination.prepare(cell.output_uri(product))
            folder = os.path.dirname(path)
            writers[product] = _writer(product, path, cell, out_grid, decision)
            if product in _mask_products(cell):
                uri = cloud_mask_uri(cell.output_uri(product))
                masks[product] = cloudflags.writer(destination.prepare(uri), out_grid, {
                    "RSBATCH_JOB_ID": cell.job_id, "TILE": cell.tile, "DATE": cell.date})
        aoi_pixels = _fill(writers, bands, cell, decision.offset, clip, window, report, masks)
        outcome.stats = {p: w.stats.result(aoi_pixels) for p, w in writers.items()
                         if isinstance(w.stats, IndexStats)}
        pause_point("written", cell)
        report(0.9, "writing Cloud-Optimized GeoTIFFs")
        # the products and their masks published together, only once all are complete;
        # the item comes last
        assets, mask_assets = _finish(writers, masks, cell, destination, warnings)
    except BaseException as exc:
        # decided before abort() frees the space the scratch files hold
        needed = None if folder is None else space_needed_if_full(
            exc, folder, out_grid.width * out_grid.height,
            [_pixel_bytes(product) for product in cell.products])
        for writer in (*writers.values(), *masks.values()):
            writer.abort()
        if needed is not None and folder is not None:
            raise no_space(folder, needed) from exc
        raise
    destination.write_json(cell.item_uri, cell_item(cell, out_grid, assets, decision, warnings,
                                                    aoi_masked_pct=outcome.aoi_masked_pct,
                                                    aoi_stats=outcome.stats,
                                                    masks=mask_assets))
    report(1.0, "done")
    outcome.outputs = {product: info["uri"] for product, info in assets.items()}


def _pixel_bytes(product: str) -> int:
    spec = products.get(product)
    return spec.count * np.dtype(spec.dtype).itemsize


def _output_window(cell: Cell, grid: Grid) -> tuple[AoiClip | None, Any, Grid]:
    """The pixel window of the tile to produce (the AOI's, snapped to the 10 m grid)."""
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    clip = AoiClip(cell.aoi, grid, cell.tile) if cell.aoi is not None else None
    if clip is not None:
        window = Window(clip.col, clip.row, clip.cols, clip.rows)
    else:
        window = Window(0, 0, grid.width, grid.height)
    out_grid = Grid(grid.crs, window_transform(window, grid.transform), int(window.width),
                    int(window.height))
    return clip, window, out_grid


def _fill(writers: dict[str, CogWriter], bands: BandSet, cell: Cell, offset_value: float,
          clip: AoiClip | None, window: Any, report: Progress,
          masks: dict[str, CogWriter]) -> int:
    """Read, compute and write the window strip by strip, feeding the cloud masks beside
    products that keep their clouds on the way (an index's AOI statistics are gathered by
    its writer); returns the AOI's pixel count."""
    row, col = int(window.row_off), int(window.col_off)
    rows, cols = int(window.height), int(window.width)
    read_keys = cell.needed_bands()
    if masks and "scl" not in read_keys:
        read_keys = (*read_keys, "scl")
    scl_map = compute.cloud_mask if cell.cloud_mask else None

    def load(strip: tuple[int, int]) -> tuple[int, int, dict[str, Any]]:
        strip_row, strip_rows = strip
        return strip_row, strip_rows, bands.read(read_keys, strip_row, col, strip_rows, cols,
                                                 scl_map=scl_map)

    def make(product: str, data: dict[str, Any], inside: Any, at: int) -> None:
        block = compute.compute(product, data, cell.scale, offset_value, data.get("scl"),
                                inside)
        if product in masks:
            masks[product].write(cloudflags.flags(block, data["scl"])[None], at)
        writers[product].write(block, at)

    inside_total = 0
    # read the next strip in a second thread while this one is computed and written, and
    # make the products side by side, one thread each: GDAL decodes, numpy computes and GDAL
    # compresses, mostly without the GIL. Each product's strips still go in row order.
    with products_pool(len(writers)) as pool:
        for strip_row, strip_rows, data in prefetched(load, strips(row, rows, STRIP_ROWS)):
            inside = clip.mask(strip_row, col, strip_rows, cols) if clip else None
            inside_total += int(inside.sum()) if inside is not None else strip_rows * cols
            at = strip_row - row
            all_of([pool.submit(make, product, data, inside, at) for product in writers])
            del data
            report(0.05 + 0.8 * (at + strip_rows) / rows, f"rows {at + strip_rows}/{rows}")
    if inside_total == 0:
        raise InvalidInput(f"the AOI covers no pixel centre of tile {cell.tile}")
    return inside_total


def _finish(writers: dict[str, CogWriter], masks: dict[str, CogWriter], cell: Cell,
            destination: Any, warnings: list[str]
            ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Publish the products and the cloud masks beside them (`publish_all`); returns what
    the STAC item lists of each."""
    done = publish_all({**{("product", p): (w, cell.output_uri(p)) for p, w in writers.items()},
                        **{("mask", p): (w, cloud_mask_uri(cell.output_uri(p)))
                           for p, w in masks.items()}}, destination)
    assets: dict[str, dict[str, Any]] = {}
    for product, writer in writers.items():
        assets[product] = done["product", product]
        stats = writer.stats
        spec = products.get(product)
        if spec.is_index and stats is not None and stats.valid_fraction() == 0:
            warnings.append(f"{spec.title} has no valid pixel (all masked as cloud, shadow "
                            "or no data)")
        assets[product]["stats"] = ({b: stats.tags(b) for b in range(writer.count)}
                                    if stats else {})
    return assets, {product: done["mask", product] for product in masks}


def publish_all(items: dict[Any, tuple[CogWriter, str]],
                destination: Any) -> dict[Any, dict[str, Any]]:
    """Close and check every COG side by side (assembling one is mostly file copying,
    checking it reading: one thread each keeps both cores busy), then publish them, only
    once all are complete: one that cannot be finished sends none to a bucket (the caller
    aborts the writers, which removes the local ones). key → (writer, uri) in, key → the
    STAC asset's uri and size out."""
    with products_pool(len(items)) as pool:
        closed = {key: pool.submit(_closed, writer, uri) for key, (writer, uri) in items.items()}
        all_of(list(closed.values()))
        sent = {key: pool.submit(_send, closed[key].result(), uri, destination)
                for key, (_writer, uri) in items.items()}
        all_of(list(sent.values()))
    return {key: future.result() for key, future in sent.items()}


def products_pool(count: int) -> Any:
    """A thread per product (at most the cores this worker may use) to make a strip's
    products side by side."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=max(1, min(count, cores_share())),
                              thread_name_prefix="rsbatch-product")


def all_of(futures: list[Any]) -> None:
    """Wait for every future, then raise the first failure: no write is still running
    when the caller aborts the writers."""
    from concurrent.futures import wait

    wait(futures)
    for future in futures:
        future.result()


def _closed(writer: CogWriter, uri: str) -> str:
    """Close one COG and check it; returns its local path."""
    path = writer.close()
    check = validate_cog(path)
    if not check.valid:
        raise RsbatchError(f"{uri.rsplit('/', 1)[-1]} is not a valid COG: {check.errors}")
    return path


def _send(path: str, uri: str, destination: Any) -> dict[str, Any]:
    """Publish a closed, checked COG at `uri`; returns its STAC asset's uri and size."""
    facts = {"uri": uri, "size": os.path.getsize(path)}
    destination.publish(path, uri)
    return facts


def prefetched(load: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    """`load(item)` for each item, the next one loading in a thread while the caller works."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rsbatch-read") as pool:
        pending = None
        for item in items:
            upcoming = pool.submit(load, item)
            if pending is not None:
                yield pending.result()
            pending = upcoming
        if pending is not None:
            yield pending.result()


def _writer(product: str, path: str, cell: Cell, grid: Grid,
            decision: offset.OffsetDecision) -> CogWriter:
    spec = product_profile(product)
    profile = {"dtype": spec["dtype"], "count": spec["count"], "nodata": spec["nodata"],
               "crs": grid.crs, "transform": grid.transform, "width": grid.width,
               "height": grid.height}
    tags = {"RSBATCH_PRODUCT": product, "RSBATCH_JOB_ID": cell.job_id, "TILE": cell.tile,
            "DATE": cell.date, "REFLECTANCE_OFFSET_APPLIED": repr(decision.offset),
            "REFLECTANCE_SCALE": repr(cell.scale), "OFFSET_CHECK": decision.verdict}
    if cell.scene_id:
        tags["SOURCE_ITEM"] = cell.scene_id
    return CogWriter(path, profile, descriptions=spec["descriptions"], scales=spec["scales"],
                     offsets=spec["offsets"], colorinterp=spec["colorinterp"], tags=tags,
                     overview_resampling=spec["overview_resampling"],
                     options={"predictor": spec["predictor"]},
                     statistics=IndexStats(product) if products.get(product).is_index else True)
