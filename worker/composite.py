"""A period reduced to one image: per pixel, the median of the valid observations and their count.

What GEE's `median()` and openEO's `reduce_dimension(median)` give an analyst: clouds and
gaps of one date are filled from the others. An observation is a date's pixel where every
band of the product is valid (for true colour, all three bands, and clear by the cloud mask
the indices use, cloudflags.py), so the bands of the median come from the same
observations. With an even number of them the median is the mean of the
two middle values (numpy's convention), rounded half to even for integer products.

Memory: a window of N dates × bands in float32 (the median sorts it in small blocks).
Windows are 512 rows (the blocks of the inputs and of the output) by as many whole blocks of
columns as stay within `budget` bytes, so memory is bounded whatever N and the grid's width,
and each input block is decoded once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import cloudflags
from .mosaic import DateMosaic, valid_pixels

#: bytes the work arrays of one window may take (a composite's stacked dates, sorted twice)
DEFAULT_BUDGET = 256 * 1024 * 1024
#: the inputs' and outputs' block size: windows are cut on it so each block is decoded once
BLOCK = 512


def window_cols(width: int, rows: int, bytes_per_pixel: int,
                budget: int = DEFAULT_BUDGET) -> int:
    """Columns per window so that rows × columns × bytes_per_pixel stay within `budget`:
    the whole width when it fits, else whole blocks of 512 (at least one)."""
    cols = budget // max(1, rows * bytes_per_pixel)
    if cols >= width:
        return width
    return max(BLOCK, cols - cols % BLOCK) if cols >= BLOCK else max(1, cols)


#: pixels per block of the median: a block's dates × pixels (8192 × N float32) stay in cache
MEDIAN_BLOCK = 8192


def median_and_count(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dates, bands, rows, cols) float32 with NaN for no observation → the per-band median
    (NaN where no date is valid) and the count of valid observations (rows, cols).

    Block by block of MEDIAN_BLOCK pixels, each band's dates are turned so that a pixel's
    values lie side by side, and sorted there (NaN last): numpy sorts short contiguous rows
    about twice as fast as the dates' strided lanes, and the block stays in cache.
    A pixel's observation is valid in all bands or in none (see the module's docstring).
    """
    dates, bands = stack.shape[:2]
    count = np.count_nonzero(~np.isnan(stack[:, 0]), axis=0)
    flat = stack.reshape(dates, bands, -1)
    counts = count.ravel()
    low = np.maximum((counts - 1) // 2, 0)
    high = counts // 2
    median = np.empty(flat.shape[1:], np.float32)
    for start in range(0, flat.shape[2], MEDIAN_BLOCK):
        end = min(flat.shape[2], start + MEDIAN_BLOCK)
        pixels = np.arange(end - start)
        for band in range(bands):
            block = np.ascontiguousarray(flat[:, band, start:end].T)
            block.sort(axis=1)
            a = block[pixels, low[start:end]].astype(np.float64)
            median[band, start:end] = (a + block[pixels, high[start:end]]) / 2
    median[:, counts == 0] = np.nan
    return median.reshape(stack.shape[1:]), count


def composite_bytes(dates: int, bands: int) -> int:
    """Work bytes per pixel of a composite window: N dates × bands in float32, and one
    date's window as read or the median (at most 8 bytes a band)."""
    return (max(dates, 1) + 2) * bands * 4


def composite_window(dates: Sequence[DateMosaic], row: int, rows: int, col: int, cols: int,
                     dtype: np.dtype, nodata: object) -> np.ndarray:
    """The composite over a window: the product's bands (median) then the count band, in
    `dtype`; for the product bands nodata where no date is valid."""
    first = dates[0]
    stack = np.empty((len(dates), first.count, rows, cols), np.float32)
    for index, mosaic in enumerate(dates):
        values, flags = mosaic.read_flagged(row, rows, col, cols)
        valid = valid_pixels(values, mosaic.nodata)
        if flags is not None:  # true colour keeps its clouds; the median leaves them out
            valid &= flags != cloudflags.MASKED
        stack[index] = values
        np.copyto(stack[index], np.float32(np.nan), where=~valid)
        del values, flags, valid
    median, count = median_and_count(stack)
    del stack
    out = np.empty((first.count + 1, rows, cols), dtype)
    if np.issubdtype(dtype, np.integer):
        np.rint(median, out=median)
        median[:, count == 0] = 0 if nodata is None else nodata
    out[:-1] = median
    out[-1] = count
    return out
