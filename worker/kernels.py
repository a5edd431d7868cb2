"""The worker's per-pixel loops, compiled with numba: one pass over a strip each.

Here the COG writer's (overviews, band statistics) and the AOI statistics' loops, and
`jit`, the one way the worker compiles: the products' own loops sit beside their formulas
in compute.py.

numpy takes one pass over memory per operation, and a COG writer's strip needs many: valid
masks, zeroed copies, casts, row sums, column sums, a division, rounding, the fill, band
sums, squares, minimum, maximum, a histogram. Each pass streams tens of MB, so the strip's
bookkeeping cost more CPU than computing its products. Here each job is one loop that
reads a pixel once; the arithmetic is the same as the numpy it replaced (same types, same
order of operations), so the pixels are the same to the bit (tests/worker/test_kernels.py
holds the numpy reference).

Compiled functions are cached on disk (next to this file, or in NUMBA_CACHE_DIR when this
folder cannot be written, as in the worker image), so only the first run on a machine pays
for compiling; `python -m worker.kernels` compiles every signature the worker uses ahead of
that (the image does it at build time).
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Any

import numpy as np

if "NUMBA_CACHE_DIR" not in os.environ and not os.access(os.path.dirname(__file__), os.W_OK):
    # numba caches next to the source; where that is read-only (an installed package), in
    # a folder of our own, so that it never fails for want of a writable home
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), "rsbatch-numba")

import numba  # after NUMBA_CACHE_DIR: numba reads it once, on import

#: how a strip says which pixels hold no data: not at all, by a value, or by NaN
NO_NODATA, NODATA_VALUE, NODATA_NAN = 0, 1, 2



def jit(function: Any = None, **options: Any) -> Any:
    """numba.njit with the worker's settings: cached on disk, the GIL released (GDAL's
    threads and the worker's other threads run meanwhile), numpy's error model (x / 0 is
    inf or NaN, as in numpy, not an exception). `@jit` or `@jit(option=…)`."""
    settings = {"cache": True, "nogil": True, "error_model": "numpy", **options}
    return numba.njit(**settings) if function is None else numba.njit(**settings)(function)


def nodata_mode(nodata: Any) -> tuple[int, float]:
    """(mode, value) for the kernels from a profile's nodata (None, NaN or a number)."""
    if nodata is None:
        return NO_NODATA, 0.0
    if isinstance(nodata, float) and np.isnan(nodata):
        return NODATA_NAN, 0.0
    return NODATA_VALUE, float(nodata)


@jit(inline="always")
def holds_data(value: Any, mode: int, nodata: float) -> bool:
    """Whether one sample holds data under `nodata_mode`'s (mode, value)."""
    if mode == NODATA_NAN:
        return not np.isnan(value)
    return mode == NO_NODATA or value != nodata


@jit
def _holds(data: Any, row: int, mode: int, nodata: float, mask: Any) -> None:
    """mask[col] = 1 where every band of `data[:, row]` holds data, else 0."""
    bands, _, cols = data.shape
    for col in range(cols):
        mask[col] = 1
    if mode == NO_NODATA:
        return
    for band in range(bands):
        if mode == NODATA_NAN:
            for col in range(cols):
                mask[col] &= np.uint8(not np.isnan(data[band, row, col]))
        else:
            for col in range(cols):
                mask[col] &= np.uint8(data[band, row, col] != nodata)


@jit
def halve_pixels(data: Any, mode: int, nodata: float, sums: Any, counts: Any, means: Any,
                 fill: float, integer: bool) -> None:
    """Level 1 of the pyramid from full-resolution rows: 2 × 2 sums of the valid pixels
    (`sums`: uint32 for integer data, float32 for floats, rows summed first, then the two
    columns), their counts (uint8) and means (`sums / counts` in float32, rounded half to
    even for integer data, `fill` where no pixel is valid) in the output's dtype.

    Output row i takes input rows 2i and 2i + 1; when 2i + 1 is past the end (the last
    row of an odd height) it takes row 2i alone, and an odd last column is taken alone."""
    _, rows, cols = data.shape
    bands, out_rows, out_cols = sums.shape
    pairs = cols // 2
    top = np.empty(cols, np.uint8)
    bottom = np.empty(cols, np.uint8)
    zero = np.zeros(1, sums.dtype)[0]  # 0 in the sums' type
    fill32 = np.float32(fill)
    for i in range(out_rows):
        r0 = 2 * i
        r1 = min(r0 + 1, rows - 1)
        _holds(data, r0, mode, nodata, top)
        if r0 + 1 < rows:
            _holds(data, r1, mode, nodata, bottom)
        else:
            bottom[:] = 0
        for j in range(pairs):
            counts[i, j] = top[2 * j] + bottom[2 * j] + top[2 * j + 1] + bottom[2 * j + 1]
        if cols % 2:
            counts[i, pairs] = top[cols - 1] + bottom[cols - 1]
        for band in range(bands):
            upper, lower, out = data[band, r0], data[band, r1], sums[band, i]
            for j in range(pairs):  # no branch but the selects: the loop vectorizes
                c0, c1 = 2 * j, 2 * j + 1
                a = zero + upper[c0] if top[c0] else zero
                b = zero + lower[c0] if bottom[c0] else zero
                c = zero + upper[c1] if top[c1] else zero
                d = zero + lower[c1] if bottom[c1] else zero
                out[j] = (a + b) + (c + d)
            if cols % 2:
                a = zero + upper[cols - 1] if top[cols - 1] else zero
                b = zero + lower[cols - 1] if bottom[cols - 1] else zero
                out[pairs] = a + b
            level = means[band, i]
            for j in range(out_cols):
                count = counts[i, j]
                mean = np.float32(out[j]) / np.float32(count)
                if integer:
                    mean = np.rint(mean)
                level[j] = fill32 if count == 0 else mean


@jit
def halve_sums(sums: Any, counts: Any, half_sums: Any, half_counts: Any, means: Any,
               fill: float, integer: bool) -> None:
    """A deeper level from the one above's sums and counts: 2 × 2 sums in float64 and
    counts in int32 (rows first, then columns; a missing last row or column adds nothing),
    means in float64, rounded half to even for integer data, `fill` where the count is 0."""
    bands, rows, cols = sums.shape
    _, out_rows, out_cols = half_sums.shape
    pairs = cols // 2
    no_sums = np.zeros(cols, sums.dtype)  # the row below the last of an odd height
    no_counts = np.zeros(cols, counts.dtype)
    for i in range(out_rows):
        r0, r1 = 2 * i, 2 * i + 1
        top, bottom = counts[r0], counts[r1] if r1 < rows else no_counts
        out = half_counts[i]
        for j in range(pairs):  # whole column pairs without a branch: vector code
            out[j] = (np.int32(top[2 * j]) + np.int32(bottom[2 * j])
                      + (np.int32(top[2 * j + 1]) + np.int32(bottom[2 * j + 1])))
        if cols % 2:
            out[pairs] = np.int32(top[cols - 1]) + np.int32(bottom[cols - 1])
        for band in range(bands):
            upper, lower = sums[band, r0], sums[band, r1] if r1 < rows else no_sums
            total = half_sums[band, i]
            for j in range(pairs):
                total[j] = ((np.float64(upper[2 * j]) + np.float64(lower[2 * j]))
                            + (np.float64(upper[2 * j + 1]) + np.float64(lower[2 * j + 1])))
            if cols % 2:
                total[pairs] = np.float64(upper[cols - 1]) + np.float64(lower[cols - 1])
            level = means[band, i]
            for j in range(out_cols):
                count = out[j]
                mean = total[j] / np.float64(count)
                if integer:
                    mean = np.rint(mean)
                level[j] = fill if count == 0 else mean


@jit
def band_sums(data: Any, mode: int, nodata: float, counts: Any, totals: Any, squares: Any,
              lows: Any, highs: Any) -> int:
    """Add a strip's valid pixels (every band holds data) to each band's running count,
    sum, sum of squares (in the accumulators' own type: uint64 exact for 8- and 16-bit
    data, float64 otherwise), minimum and maximum. Returns the strip's pixel count."""
    bands, rows, cols = data.shape
    holds = np.empty(cols, np.uint8)
    zero = np.zeros(1, totals.dtype)[0]  # 0 in the accumulators' type
    for row in range(rows):
        _holds(data, row, mode, nodata, holds)
        valid = 0
        for col in range(cols):
            valid += holds[col]
        if valid == 0:
            continue
        for band in range(bands):
            total = zero
            square = zero
            low = lows[band]
            high = highs[band]
            for col in range(cols):
                if holds[col]:
                    value = zero + data[band, row, col]
                    total += value
                    square += value * value
                    low = min(low, value)
                    high = max(high, value)
            counts[band] += valid
            totals[band] += total
            squares[band] += square
            lows[band] = low
            highs[band] = high
    return rows * cols


@jit(fastmath={"reassoc", "nsz"})
def _row_moments(line: Any, shift: float) -> tuple[int, Any, Any, Any, Any]:
    """(count, minimum, maximum, Σ(x − shift), Σ(x − shift)²) of a row's values that are
    not NaN, in float64. The sums may be taken in any order (fastmath "reassoc"), so they
    run as vector partial sums: as exact as a sequential sum, or more."""
    count = 0
    minimum: Any = math.inf
    maximum: Any = -math.inf
    first: Any = 0.0
    second: Any = 0.0
    for value32 in line:
        valid = not np.isnan(value32)
        value = np.float64(value32)  # not float(): numba keeps a float32 a float32
        deviation = value - shift if valid else 0.0
        count += valid
        first += deviation
        second += deviation * deviation
        minimum = min(minimum, value) if valid else minimum
        maximum = max(maximum, value) if valid else maximum
    return count, minimum, maximum, first, second


@jit
def index_sums(values: Any, shift: Any, low: float, high: float, per_bin: float,
               histogram: Any) -> tuple[int, float, float, float, float, float, int]:
    """One pass over an index's block (NaN = not valid): (count, minimum, maximum, shift,
    Σ(x − shift), Σ(x − shift)², how many lie outside [low, high]), where a NaN `shift`
    becomes the first valid value; the values inside are counted in `histogram` at bin
    ⌊(x − low) · per_bin⌋, in float64. Row by row: a row's sums are added to the block's,
    so the rounding error grows with a row's length plus the number of rows."""
    count = 0
    outside = 0
    minimum: Any = math.inf
    maximum: Any = -math.inf
    first: Any = 0.0
    second: Any = 0.0
    block = values.reshape(-1, values.shape[-1])
    for row in range(block.shape[0]):
        line = block[row]
        if np.isnan(shift):
            for value32 in line:
                if not np.isnan(value32):
                    shift = np.float64(value32)
                    break
            if np.isnan(shift):
                continue  # nothing valid yet
        n, row_min, row_max, row_first, row_second = _row_moments(line, shift)
        count += n
        minimum = min(minimum, row_min)
        maximum = max(maximum, row_max)
        first += row_first
        second += row_second
        for value32 in line:
            value = np.float64(value32)
            if low <= value <= high:
                histogram[np.intp((value - low) * per_bin)] += 1
            elif not np.isnan(value):
                outside += 1
    return count, minimum, maximum, shift, first, second, outside


def warm() -> None:
    """Compile (or load from the cache) every signature the worker uses."""
    for dtype, nodata in ((np.uint16, 0), (np.uint8, 0), (np.uint8, 255), (np.float32, np.nan),
                          (np.uint16, None), (np.float32, None)):
        data = np.zeros((1, 3, 3), dtype)
        mode, value = nodata_mode(nodata)
        integer = np.dtype(dtype).kind in "ui"
        sums = np.zeros((1, 2, 2), np.uint32 if integer else np.float32)
        counts = np.zeros((2, 2), np.uint8)
        halve_pixels(data, mode, value, sums, counts, np.zeros((1, 2, 2), dtype), 0.0, integer)
        halve_sums(sums, counts, np.zeros((1, 1, 1)), np.zeros((1, 1), np.int32),
                   np.zeros((1, 1, 1), dtype), 0.0, integer)
        accumulator = np.uint64 if integer else np.float64
        band_sums(data, mode, value, np.zeros(1, np.int64), np.zeros(1, accumulator),
                  np.zeros(1, accumulator), np.zeros(1, accumulator), np.zeros(1, accumulator))
    index_sums(np.zeros((1, 2, 2), np.float32), 0.0, -1.0, 1.0, 1.0, np.zeros(3, np.int64))
    from . import compute, tiles  # their loops (both import `jit` from here)

    for dtype, predictor in ((np.uint16, 2), (np.uint8, 2), (np.uint16, 1), (np.float32, 1)):
        tile = np.zeros((2, 2), dtype)
        tiles._interleave(np.zeros((1, 3, 3), dtype), 0, 2, 0, predictor, tile)
        for mode, value in (nodata_mode(0), nodata_mode(None), nodata_mode(np.nan)):
            if mode != NODATA_NAN:
                tiles._all_nodata(np.zeros((1, 3, 3), dtype), 0, 2, 0, 2, mode, value)
    for floating, unsigned in ((np.float32, np.uint32), (np.float64, np.uint64)):
        data = np.zeros((1, 3, 3), floating)
        tiles._all_nodata(data, 0, 2, 0, 2, NODATA_NAN, 0.0)
        tiles._all_nodata(data, 0, 2, 0, 2, NO_NODATA, 0.0)
        tiles._float_planes(data.view(unsigned), 0, 2, 0, np.zeros(2, unsigned),
                            np.zeros(2 * data.itemsize, np.uint8),
                            np.zeros((2, 2 * data.itemsize), np.uint8))

    bands = {key: np.ones((2, 2), np.uint16)
             for key in ("red", "green", "blue", "nir", "swir16", "swir22")}
    for product in compute.COMPUTE:
        for void in (None, np.zeros((2, 2), bool)):
            compute.compute(product, bands, 0.0001, -0.1, void, void)


if __name__ == "__main__":
    warm()
