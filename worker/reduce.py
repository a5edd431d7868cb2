"""One reduce unit, start to finish: task log RUNNING → inputs → strips → COG → STAC item.

A unit reads what its inputs published (cells' products, or mosaics). Inputs that failed
or were skipped have published nothing: the unit runs on the others and records which it
lacked (warnings, the record's `LackingInputs`, the STAC item); with none left it raises
NothingToReduce, which the command line turns into exit code 4 and a backend into a
skipped unit. As for cells, nothing appears under its final name unless it is complete, and
a unit whose output and item are already in place is not made again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from qgis_rsbatch.core import products
from qgis_rsbatch.core.contract import ReduceUnit, Status, cloud_mask_uri, split_cell_id
from qgis_rsbatch.core.errors import Cancelled, NothingToReduce, Terminated
from qgis_rsbatch.core.tasklog.schema import (
    LACKING_ATTRIBUTE,
    REMAKE_ATTRIBUTE,
    STATS_ATTRIBUTE,
    remake_pending,
)

from . import cloudflags
from . import composite as comp
from .aoistats import IndexStats
from .cog import CogWriter
from .cogcheck import validate_cog
from .composite import BLOCK, composite_bytes, composite_window, window_cols
from .mosaic import DateMosaic, Source, open_source, target_grid, tile_centre
from .outputs import destination_for, no_space, space_needed_if_full
from .process import (
    Progress,
    TaskResult,
    _record,
    _start,
    failure_reason,
    pause_point,
    publish_all,
)
from .profiles import composite_profile, gdal_threads, product_profile
from .reader import AoiClip, Grid
from .sources import band_env, open_band
from .stac import recorded_aoi_facts, unit_item

log = logging.getLogger("rsbatch.worker")


def process_unit(unit: ReduceUnit, *, task_log: Any = None, progress: Progress | None = None,
                 region: str | None = None) -> TaskResult:
    """Make the unit's mosaic or composite and record it in `task_log` (any store, or None).

    A unit with nothing to read (every input failed or was skipped) is recorded SKIPPED with
    the reason, not FAILED: NothingToReduce is raised for the caller to tell it apart (the
    command line's exit code 4). A unit SKIPPED earlier is not made again.
    """
    started = time.monotonic()
    report = progress or (lambda fraction, message: None)
    try:
        earlier = _start(task_log, unit, None)
        if earlier is not None:
            return TaskResult(unit.unit_id, Status.SKIPPED, error=earlier.error)
        current = task_log.get(unit.task_id) if task_log is not None else None
        # sent back to be made again (an input it lacked ran again): the output in place
        # is complete but stale
        made = _run(unit, report, region,
                    reuse=current is None or not remake_pending(current))
    except Cancelled as exc:
        return TaskResult(unit.unit_id, Status.CANCELLED, error=str(exc),
                          seconds=time.monotonic() - started)
    except NothingToReduce as exc:
        _record(task_log, unit, Status.SKIPPED, error=str(exc),
                extra={LACKING_ATTRIBUTE: list(unit.inputs), REMAKE_ATTRIBUTE: None})
        raise
    except Terminated:
        raise  # told to stop: scratch files are gone; whoever stopped us records why
    except BaseException as exc:
        _record(task_log, unit, Status.FAILED, error=failure_reason(exc))
        raise
    extra: dict[str, Any] = {LACKING_ATTRIBUTE: made.lacking, REMAKE_ATTRIBUTE: None}
    if made.stats:
        extra[STATS_ATTRIBUTE] = made.stats
    _record(task_log, unit, Status.SUCCEEDED, outputs=made.outputs, warnings=made.warnings,
            extra=extra)
    made.seconds = time.monotonic() - started
    return made


def _run(unit: ReduceUnit, report: Progress, region: str | None,
         reuse: bool = True) -> TaskResult:
    destination = destination_for(unit.output, region)
    try:
        item = destination.read_json(unit.item_uri) if reuse else None
        if item is not None and _complete(item, unit, destination):
            report(1.0, "output already complete; nothing to do")
            properties = item["properties"]
            return TaskResult(unit.unit_id, Status.SUCCEEDED,
                              outputs={unit.product: unit.output_uri()},
                              warnings=list(properties.get("rsbatch:warnings") or []),
                              lacking=list(properties.get("rsbatch:lacking_inputs") or []),
                              skipped=True, stats=recorded_aoi_facts(item)["stats"])
        present = [i for i in unit.inputs if destination.size(unit.input_uri(i)) is not None]
        lacking = [i for i in unit.inputs if i not in present]
        if not present:
            raise NothingToReduce(
                f"{unit.kind} {unit.unit_id}: none of its {len(unit.inputs)} input(s) published "
                f"a {unit.product} output ({', '.join(unit.inputs)}); nothing to {unit.kind}")
        warnings = []
        if lacking:
            warnings.append(f"made from {len(present)} of {len(unit.inputs)} inputs; lacking "
                            f"(failed or skipped): {', '.join(lacking)}")
            log.warning("%s: %s", unit.unit_id, warnings[-1])
        masked = _masked_inputs(unit, present, destination, warnings)
        hrefs = [unit.input_uri(i) for i in present]
        hrefs += [cloud_mask_uri(unit.input_uri(i)) for i in masked]
        with band_env(hrefs, region=region):
            asset, grid = _make(unit, present, destination, report, masked)
        destination.write_json(unit.item_uri, unit_item(unit, grid, asset, warnings, lacking))
        report(1.0, "done")
        return TaskResult(unit.unit_id, Status.SUCCEEDED, outputs={unit.product: asset["uri"]},
                          warnings=warnings, lacking=lacking, stats=asset["aoi_stats"])
    finally:
        destination.close()


def _masked_inputs(unit: ReduceUnit, present: list[str], destination: Any,
                   warnings: list[str]) -> set[str]:
    """The inputs with a cloud mask beside them, for a product that keeps its clouds (RGB);
    a warning when some have none (made without SCL): their clouds count as observations."""
    if not products.get(unit.product).clouds_beside:
        return set()
    masked = {i for i in present
              if destination.size(cloud_mask_uri(unit.input_uri(i))) is not None}
    bare = [i for i in present if i not in masked]
    if bare and unit.kind == "composite":
        warnings.append(f"no cloud mask beside {', '.join(bare)} (made without SCL): their "
                        "cloudy pixels count as observations")
    return masked


def _complete(item: Any, unit: ReduceUnit, destination: Any) -> bool:
    """Whether an earlier run published this unit's output whole (its item says how big)."""
    properties = item.get("properties", {}) if isinstance(item, dict) else {}
    asset = (item.get("assets") or {}).get(unit.product, {}) if properties else {}
    if properties.get("rsbatch:unit_id") != unit.unit_id or not isinstance(
            asset.get("file:size"), int):
        return False
    if destination.size(unit.output_uri()) != asset["file:size"]:
        return False
    local = destination.local_copy(unit.output_uri())
    return local is None or validate_cog(local, decode=True).valid


def _date_mosaics(unit: ReduceUnit, present: list[str], grid: Grid,
                  masked: set[str]) -> list[DateMosaic]:
    """The inputs grouped by date (a composite may read several cells of one date), each
    input opened onto the grid, with the cloud mask beside it for those in `masked`; dates
    whose inputs all miss the grid are left out."""
    spec = product_profile(unit.product)
    by_date: dict[str, list[Source]] = {}
    try:
        for input_id in present:
            ds = open_band(unit.input_uri(input_id), unit.product, threads=gdal_threads())
            centre = (0.0, 0.0)
            if not input_id.startswith("mosaic_"):
                centre = tile_centre(split_cell_id(input_id)[0], grid.crs)
            source = open_source(input_id, ds, grid, centre, spec["nodata"])
            if source is None:
                ds.close()
                continue
            by_date.setdefault(unit.input_date(input_id), []).append(source)
            if input_id in masked:
                flags = open_band(cloud_mask_uri(unit.input_uri(input_id)), "cloud mask",
                                  threads=gdal_threads())
                source.flags = open_source(input_id, flags, grid, centre, cloudflags.NONE)
                if source.flags is None:
                    flags.close()
    except BaseException:
        for sources in by_date.values():
            for source in sources:
                source.close()
        raise
    return [DateMosaic(sources, grid, spec["count"], spec["dtype"], spec["nodata"])
            for _, sources in sorted(by_date.items())]


def work_window(kind: str, dates: int, spec: dict[str, Any], width: int) -> tuple[int, int]:
    """(rows, columns) a unit works on at a time, within the composite's memory budget: the
    output strip is full width (the COG writer's unit), its height shrinking only for a grid
    so wide that 512 rows would not fit; the columns hold a composite's stacked dates, or a
    mosaic's output, distances and one input's window."""
    budget = comp.DEFAULT_BUDGET
    itemsize = np.dtype(spec["dtype"]).itemsize
    rows = max(1, min(BLOCK, budget // (width * spec["count"] * itemsize)))
    per_pixel = (composite_bytes(dates, spec["count"]) if kind == "composite"
                 else spec["count"] * 8 + 24)
    return rows, window_cols(width, rows, per_pixel, budget)


def _make(unit: ReduceUnit, present: list[str], destination: Any, report: Progress,
          masked: set[str]) -> tuple[dict[str, Any], Grid]:
    grid = target_grid(unit.grid)
    clip = AoiClip(unit.aoi, grid, unit.unit_id) if unit.aoi is not None else None
    mosaics = _date_mosaics(unit, present, grid, masked)
    composite = unit.kind == "composite"
    spec = composite_profile(unit.product) if composite else product_profile(unit.product)
    writer = mask = None
    try:
        if not mosaics:
            raise NothingToReduce(f"{unit.kind} {unit.unit_id}: no input reaches its grid")
        writer = _writer(unit, destination.prepare(unit.output_uri()), grid, spec)
        if not composite and mosaics[0].flagged:  # the mosaic carries its tiles' masks on
            mask = cloudflags.writer(
                destination.prepare(cloud_mask_uri(unit.output_uri())), grid,
                {"RSBATCH_JOB_ID": unit.job_id, "RSBATCH_UNIT": unit.unit_id,
                 "DATE": str(unit.date)})
        rows_each, cols_each = work_window(unit.kind, len(mosaics), spec, grid.width)
        # a mosaic's index over the AOI, each ground pixel once (the cells count the tiles'
        # overlap twice): what the time series shows for that date; its writer gathers it
        stats = writer.stats if isinstance(writer.stats, IndexStats) else None
        aoi_pixels = 0
        for row in range(0, grid.height, rows_each):
            rows = min(rows_each, grid.height - row)
            data, flags = _strip(unit, mosaics, spec, row, rows, cols_each, mask is not None)
            if clip is not None:
                inside = clip.mask(row, 0, rows, grid.width)
                data[:, ~inside] = spec["nodata"]
                if flags is not None:
                    flags[:, ~inside] = cloudflags.NONE
                aoi_pixels += int(inside.sum())
            else:
                aoi_pixels += rows * grid.width
            writer.write(data, row)
            if mask is not None and flags is not None:
                mask.write(flags, row)
            report(0.9 * (row + rows) / grid.height, f"rows {row + rows}/{grid.height}")
        pause_point("written", unit)  # every strip on disk under scratch names
        done = publish_all({"product": (writer, unit.output_uri()), **(
            {} if mask is None else {"mask": (mask, cloud_mask_uri(unit.output_uri()))})},
            destination)
        asset = done["product"]
        tags = writer.stats
        asset.update(stats={b: tags.tags(b) for b in range(writer.count)} if tags else {},
                     aoi_stats={unit.product: stats.result(aoi_pixels)} if stats else {},
                     masks={unit.product: done["mask"]} if "mask" in done else {})
        return asset, grid
    except BaseException as exc:
        needed = None if writer is None else space_needed_if_full(
            exc, writer.folder, grid.width * grid.height,
            [spec["count"] * np.dtype(spec["dtype"]).itemsize])
        for scratch in (writer, mask):
            if scratch is not None:
                scratch.abort()
        if needed is not None and writer is not None:
            raise no_space(writer.folder, needed) from exc
        raise
    finally:
        for mosaic in mosaics:
            mosaic.close()


def _strip(unit: ReduceUnit, mosaics: list[DateMosaic], spec: dict[str, Any], row: int,
           rows: int, cols_each: int, flagged: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """A full-width strip of the output, window by window, and a mosaic's cloud flags
    (1, rows, width) when it carries them."""
    width = mosaics[0].grid.width
    data = np.empty((spec["count"], rows, width), spec["dtype"])
    flags = np.empty((1, rows, width), np.uint8) if flagged else None
    for col in range(0, width, cols_each):
        cols = min(cols_each, width - col)
        if unit.kind == "composite":
            data[:, :, col:col + cols] = composite_window(
                mosaics, row, rows, col, cols, np.dtype(spec["dtype"]), spec["nodata"])
            continue
        data[:, :, col:col + cols], window_flags = mosaics[0].read_flagged(row, rows, col, cols)
        if flags is not None and window_flags is not None:
            flags[0, :, col:col + cols] = window_flags
    return data, flags


def _writer(unit: ReduceUnit, path: str, grid: Grid, spec: dict[str, Any]) -> CogWriter:
    profile = {"dtype": spec["dtype"], "count": spec["count"], "nodata": spec["nodata"],
               "crs": grid.crs, "transform": grid.transform, "width": grid.width,
               "height": grid.height}
    first, last = unit.dates
    tags = {"RSBATCH_PRODUCT": unit.product, "RSBATCH_JOB_ID": unit.job_id,
            "RSBATCH_UNIT": unit.unit_id, "RSBATCH_KIND": unit.kind,
            "DATE" if unit.kind == "mosaic" else "PERIOD":
                first if unit.kind == "mosaic" else f"{first}/{last}",
            "PRODUCT_TITLE": products.get(unit.product).title}
    index = unit.kind == "mosaic" and products.get(unit.product).is_index
    return CogWriter(path, profile, descriptions=spec["descriptions"], scales=spec["scales"],
                     offsets=spec["offsets"], colorinterp=spec["colorinterp"], tags=tags,
                     overview_resampling=spec["overview_resampling"],
                     options={"predictor": spec["predictor"]},
                     statistics=IndexStats(unit.product) if index else True)
