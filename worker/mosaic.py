"""One date's tiles merged onto one grid: the nearest tile's centre first, first valid value wins.

Sentinel-2 tiles overlap by 9.8 km and an AOI near a zone edge meets tiles in two UTM zones.
For every pixel of the target grid the inputs are taken in the order of their tile's centre,
nearest first (distance measured in the target CRS), and the first valid value wins, so a
cloud or a swath edge in the nearer tile falls back to the other. A tile on the target's own
lattice is copied by windowed reads; a tile of another zone is warped with nearest neighbour
and a transformer held to 1e-6 pixel (GDAL's default, 0.125 pixel, picks a neighbouring
input pixel for ~0.3 % of them, differently for each strip), so every value is a value of
the input, and the pixel it comes from does not depend on how the grid is cut into strips.

Memory holds one window of the output, its distances and one input's window at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from qgis_rsbatch.core import grid as tile_grid
from qgis_rsbatch.core.contract import TargetGrid

from . import cloudflags
from .reader import Grid

#: GDAL's approximation error for the warp, in pixels: small enough that every pixel's source
#: is computed exactly (0 itself leaves rasterio 1.4's WarpedVRT without a transformer)
EXACT = 1e-6


def target_grid(grid: TargetGrid) -> Grid:
    """The contract's grid as the worker's (rasterio CRS and Affine)."""
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    return Grid(CRS.from_epsg(grid.epsg), Affine(*grid.transform), grid.width, grid.height)


def valid_pixels(data: np.ndarray, nodata: Any) -> np.ndarray:
    """(rows, cols) True where every band holds a value (NaN or `nodata` in none)."""
    if isinstance(nodata, float) and math.isnan(nodata):
        return ~np.isnan(data).any(axis=0)
    return ~(data == nodata).any(axis=0)


@dataclass
class Source:
    """One input raster as seen from the target grid."""

    input_id: str
    dataset: Any                   # the open rasterio dataset
    centre: tuple[float, float]    # its tile's centre in the target CRS
    rows: tuple[int, int]          # the target rows and columns it can reach
    cols: tuple[int, int]
    shift: tuple[int, int] | None  # (row, col) offset when on the target's own lattice
    vrt: Any = None                # a WarpedVRT onto the target grid, otherwise
    flags: Source | None = None    # the cloud mask beside it (cloudflags.py), if any

    def close(self) -> None:
        if self.flags is not None:
            self.flags.close()
        if self.vrt is not None:
            self.vrt.close()
        self.dataset.close()


def _lattice_shift(ds: Any, grid: Grid) -> tuple[int, int] | None:
    """(row, col) of the target grid's origin in the input's pixels, when both share CRS,
    pixel size and a whole-pixel offset; None when the input must be warped."""
    t, g = ds.transform, grid.transform
    if ds.crs != grid.crs or (t.a, t.b, t.d, t.e) != (g.a, g.b, g.d, g.e):
        return None
    col, row = (g.c - t.c) / t.a, (g.f - t.f) / t.e
    if abs(col - round(col)) > 1e-9 or abs(row - round(row)) > 1e-9:
        return None
    return round(row), round(col)


def tile_centre(tile: str, crs: Any) -> tuple[float, float]:
    """The centre of Sentinel-2 tile `tile` (its whole 109.8 km square) in `crs`."""
    from rasterio.warp import transform

    info = tile_grid.tile_info(tile)
    x0, y0, x1, y1 = info.bounds()
    xs, ys = transform(f"EPSG:{info.epsg}", crs, [(x0 + x1) / 2], [(y0 + y1) / 2])
    return xs[0], ys[0]


def open_source(input_id: str, dataset: Any, grid: Grid, centre: tuple[float, float],
                nodata: Any) -> Source | None:
    """The input as a Source, or None when it does not reach the target grid."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import transform_bounds

    shift = _lattice_shift(dataset, grid)
    if shift is not None:
        r0, c0 = -shift[0], -shift[1]
        r1, c1 = r0 + dataset.height, c0 + dataset.width
    else:
        left, bottom, right, top = transform_bounds(dataset.crs, grid.crs, *dataset.bounds,
                                                    densify_pts=21)
        g = grid.transform
        c0, c1 = math.floor((left - g.c) / g.a), math.ceil((right - g.c) / g.a)
        r0, r1 = math.floor((g.f - top) / -g.e), math.ceil((g.f - bottom) / -g.e)
    rows = (max(0, r0), min(grid.height, r1))
    cols = (max(0, c0), min(grid.width, c1))
    if rows[0] >= rows[1] or cols[0] >= cols[1]:
        return None
    vrt = None
    if shift is None:
        vrt = WarpedVRT(dataset, crs=grid.crs, transform=grid.transform, width=grid.width,
                        height=grid.height, resampling=Resampling.nearest, tolerance=EXACT,
                        src_nodata=nodata, nodata=nodata)
    return Source(input_id, dataset, centre, rows, cols, shift, vrt)


def read_onto(source: Source, row: int, rows: int, col: int,
              cols: int) -> tuple[np.ndarray, int, int] | None:
    """The input's values over the target window (rows [row, row + rows), columns [col,
    col + cols)), only where it reaches: (data (bands, r, c), first target row, first target
    column); None when it misses the window."""
    from rasterio.windows import Window

    r0, r1 = max(row, source.rows[0]), min(row + rows, source.rows[1])
    c0, c1 = max(col, source.cols[0]), min(col + cols, source.cols[1])
    if r0 >= r1 or c0 >= c1:
        return None
    if source.shift is not None:
        window = Window(c0 + source.shift[1], r0 + source.shift[0], c1 - c0, r1 - r0)
        data = source.dataset.read(window=window)
    else:
        data = source.vrt.read(window=Window(c0, r0, c1 - c0, r1 - r0))
    return data, r0, c0


def _flags_of(source: Source, row: int, rows: int, col: int, cols: int,
              shape: tuple[int, ...]) -> np.ndarray:
    """An input's cloud flags over the part of the window its data covers (clear without
    a mask)."""
    if source.flags is None:
        return np.full(shape, cloudflags.CLEAR, np.uint8)
    piece = read_onto(source.flags, row, rows, col, cols)
    if piece is None or piece[0].shape[1:] != tuple(shape):
        raise ValueError(f"the cloud mask of {source.input_id} does not match its grid")
    return piece[0][0]


class DateMosaic:
    """The inputs of one date on the target grid; `read` merges them for a strip."""

    def __init__(self, sources: Sequence[Source], grid: Grid, count: int, dtype: Any,
                 nodata: Any) -> None:
        self.sources = list(sources)
        self.grid, self.count, self.dtype, self.nodata = grid, count, np.dtype(dtype), nodata

    @property
    def flagged(self) -> bool:
        """Whether the inputs carry cloud masks beside them (cloudflags.py)."""
        return any(source.flags is not None for source in self.sources)

    def read(self, row: int, rows: int, col: int = 0, cols: int | None = None) -> np.ndarray:
        """(bands, rows, cols) of the target window at (row, col): per pixel the first valid
        value of the inputs in the order of their tile's centre, nearest first (ties: the
        earlier input); nodata where none is valid."""
        return self.read_flagged(row, rows, col, cols)[0]

    def read_flagged(self, row: int, rows: int, col: int = 0, cols: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray | None]:
        """`read`, and when the inputs carry cloud masks, the flag of the input each pixel
        came from (cloudflags: an input without a mask counts as clear)."""
        g = self.grid
        cols = g.width - col if cols is None else cols
        out = np.full((self.count, rows, cols), self.nodata, dtype=self.dtype)
        flags = np.full((rows, cols), cloudflags.NONE, np.uint8) if self.flagged else None
        best = np.full((rows, cols), np.inf)
        for source in self.sources:
            piece = read_onto(source, row, rows, col, cols)
            if piece is None:
                continue
            data, r0, c0 = piece
            r, c = r0 - row, c0 - col
            h, w = data.shape[1:]
            take = valid_pixels(data, self.nodata)
            if len(self.sources) > 1:  # several inputs: the nearest tile's centre first
                xs = g.transform.c + (np.arange(c0, c0 + w) + 0.5) * g.transform.a
                ys = g.transform.f + (np.arange(r0, r0 + h) + 0.5) * g.transform.e
                distance = np.hypot(xs[None, :] - source.centre[0],
                                    ys[:, None] - source.centre[1])
                window = best[r:r + h, c:c + w]
                take &= distance < window
                window[take] = distance[take]
            # copied where taken, in place (no per-band gather of the taken pixels)
            np.copyto(out[:, r:r + h, c:c + w], data, where=take)
            if flags is not None:
                np.copyto(flags[r:r + h, c:c + w],
                          _flags_of(source, row, rows, col, cols, data.shape[1:]), where=take)
        return out, flags

    def close(self) -> None:
        for source in self.sources:
            source.close()
