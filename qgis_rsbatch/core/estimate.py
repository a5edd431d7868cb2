"""What a job will cost before it runs: cells, input gigabytes, time, vCPU-hours and dollars.

One function, `estimate(job, …)`, used by `rsbatch run --dry-run` and the QGIS dock. The
per-cell cost is the worker's measured time on a full 10980 × 10980 tile (`make bench`),
scaled by the share of the tile each cell really reads (its AOI window).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from . import aoi as aoi_mod
from . import geometry as planar
from . import grid, products, utm
from .contract import Cell, Job

# the measured and priced constants live in costs.py, with infra/README.md's cost table
from .costs import (
    DEFAULT_SPOT_PRICE,
    WORKER_BENCH,
    aws_dollars,
    cell_vcpu_seconds,
    full_tile_seconds,
)

#: compressed bytes per 10 m pixel of a band COG (the benchmark's B04: 164 MB per tile;
#: Earth Search's are 150-230 MB); output bytes per pixel are each product's (products.py)
INPUT_BYTES_PER_PIXEL = 1.36
FULL_TILE_PIXELS = 10980 * 10980


@dataclass(frozen=True)
class Estimate:
    cells: int
    scenes: int
    tiles: int
    pixels: int                  # 10 m pixels the job produces, summed over cells
    input_gb: float
    output_gb: float
    vcpu_hours: float
    hours_local: float           # wall time on this machine with `workers` in parallel
    dollars: float | None        # AWS only: Spot compute + orchestration
    spot_price: float | None
    basis: str
    units: int = 0               # reduce units (mosaics, composites), run after the cells

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        units = f" and {self.units} mosaic/composite unit(s)" if self.units else ""
        text = (f"{self.cells} cell(s) on {self.tiles} tile(s){units}, "
                f"{_size(self.input_gb)} to read, "
                f"{_size(self.output_gb)} to write, {self.vcpu_hours:.2f} vCPU-hours")
        if self.dollars is not None:
            text += f", about ${self.dollars:.2f} at ${self.spot_price:g}/vCPU-hour Spot"
        else:
            text += f", about {_duration(self.hours_local)} here"
        return text


def _duration(hours: float) -> str:
    minutes = hours * 60
    if minutes < 1:
        return "under a minute"
    return f"{minutes:.0f} min" if minutes < 120 else f"{hours:.1f} h"


def _size(gigabytes: float) -> str:
    return f"{gigabytes:.1f} GB" if gigabytes >= 1 else f"{gigabytes * 1000:.0f} MB"


def window_pixels(cell: Cell) -> int:
    """10 m pixels of the cell's output: its AOI's bounding box on the tile, or the tile."""
    return _Windows().pixels(cell)


class _Windows:
    """Window sizes for many cells, each piece of work done once.

    A job's cells share one AOI and repeat their tiles over many dates, so the AOI is
    densified once, projected once per UTM zone (to a bounding box), and each tile's window
    is that box cut by the tile: a 10,000-cell job costs a few projections, not 10,000.
    """

    def __init__(self) -> None:
        # id → (the object, kept alive so its id stays its own; its content key)
        self._keys: dict[int, tuple[Any, str]] = {}
        self._dense: dict[str, list[tuple[float, float]]] = {}
        self._boxes: dict[tuple[str, int, bool], tuple[float, float, float, float]] = {}
        self._windows: dict[tuple[str, str], int] = {}

    def _aoi_key(self, aoi: Any) -> str:
        # cells planned together share the coordinates object: identity first, content after
        coordinates = aoi.get("coordinates")
        known = self._keys.get(id(coordinates))
        if known is None:
            known = (coordinates, json.dumps(aoi, sort_keys=True, separators=(",", ":")))
            self._keys[id(coordinates)] = known
        return known[1]

    def _box(self, key: str, aoi: Any, zone: int, south: bool
             ) -> tuple[float, float, float, float]:
        box = self._boxes.get((key, zone, south))
        if box is None:
            dense = self._dense.get(key)
            if dense is None:
                geometry = planar.densify_geometry(aoi_mod.geometry_of(dict(aoi)), 0.01)
                dense = self._dense[key] = list(aoi_mod.iter_positions(geometry))
            xs, ys = zip(*(utm.forward(lon, lat, zone, south) for lon, lat in dense))
            box = self._boxes[(key, zone, south)] = (min(xs), min(ys), max(xs), max(ys))
        return box

    def pixels(self, cell: Cell) -> int:
        tile = _tile(cell.tile)
        if cell.aoi is None:
            return tile.shape()[0] * tile.shape()[1]
        key = self._aoi_key(cell.aoi)
        found = self._windows.get((key, cell.tile))
        if found is not None:
            return found
        zone, south = utm.parse_epsg(tile.epsg) or (0, False)
        x0, y0, x1, y1 = tile.bounds()
        min_x, min_y, max_x, max_y = self._box(key, cell.aoi, zone, south)
        left, right = max(min_x, x0), min(max_x, x1)
        bottom, top = max(min_y, y0), min(max_y, y1)
        pixels = 0
        if right > left and top > bottom:
            pixels = math.ceil((right - left) / 10) * math.ceil((top - bottom) / 10)
        self._windows[(key, cell.tile)] = pixels
        return pixels


@functools.lru_cache(maxsize=4096)
def _tile(tile_id: str) -> grid.Tile:
    return grid.tile_info(tile_id)


def _seconds_per_full_tile(names: tuple[str, ...]) -> float:
    return full_tile_seconds(names, {name: products.PRODUCTS[name].seconds_per_tile
                                     for name in names})


def _input_bands(cell: Cell) -> float:
    """Input bytes of the cell's bands in units of a 10 m band (a 20 m band is a quarter)."""
    return sum(1.0 if products.BANDS[key].resolution == 10 else 0.25
               for key in cell.needed_bands() if cell.bands.get(key))


def estimate(job: Job, *, backend: str = "local", workers: int | None = None,
             spot_price: float = DEFAULT_SPOT_PRICE) -> Estimate:
    """Estimate a job. `workers`: cells run at once locally (default: this machine's cores)."""
    import os

    pixels = input_bytes = output_bytes = 0.0
    vcpu_seconds = local_vcpu_seconds = 0.0
    windows = _Windows()
    for cell in job.cells:
        px = windows.pixels(cell)
        pixels += px
        input_bytes += px * INPUT_BYTES_PER_PIXEL * _input_bands(cell)
        output_bytes += px * sum(products.PRODUCTS[p].bytes_per_pixel for p in cell.products)
        share = px / FULL_TILE_PIXELS
        # a small window still pays a fixed start-up (process, imports, metadata reads)
        full = _seconds_per_full_tile(cell.products)
        local_vcpu_seconds += cell_vcpu_seconds(share, full, aws=False)
        vcpu_seconds += cell_vcpu_seconds(share, full, aws=backend == "aws")
    # a reduce unit, roughly: it reads its inputs' pixels of one product and writes as many
    # (a mosaic ≈ its cells' windows; a composite ≈ its mosaics), priced as a cell making
    # that product from that many pixels
    unit_pixels: dict[str, float] = {c.cell_id: windows.pixels(c) for c in job.cells}
    for unit in job.units:
        read = [unit_pixels.get(i, 0.0) for i in unit.inputs]
        read_px = sum(read)
        # a mosaic covers its tiles side by side; a composite one of its dates' mosaics
        unit_pixels[unit.unit_id] = read_px if unit.kind == "mosaic" else max(read)
        per_pixel = products.PRODUCTS[unit.product].bytes_per_pixel
        input_bytes += read_px * per_pixel
        output_bytes += unit_pixels[unit.unit_id] * per_pixel
        full = _seconds_per_full_tile((unit.product,))
        share = read_px / FULL_TILE_PIXELS
        local_vcpu_seconds += cell_vcpu_seconds(share, full, aws=False)
        vcpu_seconds += cell_vcpu_seconds(share, full, aws=backend == "aws")
    cores = os.cpu_count() or 1
    workers = max(1, workers or cores)
    local_hours = local_vcpu_seconds / max(1, min(cores, workers * WORKER_BENCH["vcpus"])) / 3600
    vcpu_hours = vcpu_seconds / 3600
    dollars = None
    if backend == "aws":
        dollars = aws_dollars(vcpu_hours, len(job.cells), spot_price)["total"]
    return Estimate(
        cells=len(job.cells), scenes=len({c.scene_id or c.cell_id for c in job.cells}),
        tiles=len({c.tile for c in job.cells}), pixels=int(pixels),
        input_gb=input_bytes / 1e9, output_gb=output_bytes / 1e9, vcpu_hours=vcpu_hours,
        hours_local=local_hours, dollars=dollars,
        spot_price=spot_price if backend == "aws" else None, basis=WORKER_BENCH["source"],
        units=len(job.units),
    )
