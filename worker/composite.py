"""A period reduced to one image: per pixel, the median of the valid observations and their count.

What GEE's `median()` and openEO's `reduce_dimension(median)` give an analyst: clouds and
gaps of one date are filled from the others. An observation is a date's pixel where every
band of the product is valid (for true colour, all three bands), so the bands of the median
come from the same observations. With an even number of them the median is the mean of the
two middle values (numpy's convention), rounded half to even for integer products.

Memory: a strip of N dates × bands in float32, twice (the sort); the strip's height is
chosen so that stays under `budget` bytes, whatever N and the grid's width.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .mosaic import DateMosaic, valid_pixels

#: bytes the stacked dates of one strip may take (the sort doubles it)
DEFAULT_BUDGET = 256 * 1024 * 1024


def strip_rows(dates: int, bands: int, width: int, budget: int = DEFAULT_BUDGET,
               most: int = 512) -> int:
    """Rows per strip so that 2 × dates × bands × width × rows float32 stay within `budget`."""
    per_row = 2 * max(dates, 1) * bands * max(width, 1) * 4
    return int(max(1, min(most, budget // per_row)))


def median_and_count(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dates, bands, rows, cols) float32 with NaN for no observation → the per-band median
    (NaN where no date is valid) and the count of valid observations (rows, cols).

    A pixel's observation is valid in all bands or in none (see the module's docstring).
    """
    ordered = np.sort(stack, axis=0)  # NaN sort last
    count = np.count_nonzero(~np.isnan(stack[:, 0]), axis=0)
    low = np.maximum((count - 1) // 2, 0)
    high = count // 2
    shape = (1, *stack.shape[1:])
    a = np.take_along_axis(ordered, np.broadcast_to(low, shape), axis=0)[0]
    b = np.take_along_axis(ordered, np.broadcast_to(high, shape), axis=0)[0]
    median = (a.astype(np.float64) + b) / 2
    median[:, count == 0] = np.nan
    return median.astype(np.float32), count


def composite_strip(dates: Sequence[DateMosaic], row: int, rows: int, dtype: np.dtype,
                    nodata: object, inside: np.ndarray | None) -> np.ndarray:
    """The composite's strip: the product's bands (median) then the count band, in `dtype`;
    nodata outside the AOI (`inside` False) and, for the product bands, where no date is valid.
    """
    first = dates[0]
    stack = np.empty((len(dates), first.count, rows, first.grid.width), np.float32)
    for index, mosaic in enumerate(dates):
        values = mosaic.read(row, rows)
        valid = valid_pixels(values, mosaic.nodata)
        stack[index] = values
        stack[index][:, ~valid] = np.nan
    median, count = median_and_count(stack)
    del stack
    out = np.empty((first.count + 1, rows, first.grid.width), dtype)
    if np.issubdtype(dtype, np.integer):
        empty = count == 0
        np.rint(median, out=median)
        median[:, empty] = 0 if nodata is None else nodata
    out[:-1] = median
    out[-1] = count
    if inside is not None:
        out[:, ~inside] = nodata
    return out
