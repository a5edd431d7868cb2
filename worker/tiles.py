"""A pyramid level's tiles, encoded by the worker: cut, predicted, compressed, appended.

GDAL's tiled write costs more than its codec: each strip is copied into the block cache,
interleaved, run through libtiff's predictor (the floating-point one byte by byte, through a
temporary row) and only then compressed. Here one compiled loop (kernels.jit) cuts a tile
out of the strip straight into its file layout — pixel-interleaved, with TIFF's horizontal
(2) or floating-point (3) predictor applied (TIFF Technical Note 3) — and a pool of threads
compresses the tiles (zstd, or zlib for DEFLATE; both release the GIL) while the worker
computes the next strip. The compressed tiles go to a scratch file in row-major order; the
level's IFD (tags, georeferencing, metadata) is still GDAL's, and `tiff.assemble` puts the
two together in the COG layout.

A tile whose pixels are all nodata (0 without a nodata value) is not written, as GDAL's
SPARSE_OK does: readers see nodata there.
"""

from __future__ import annotations

import os
import threading
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .kernels import NO_NODATA, NODATA_VALUE, holds_data, jit, nodata_mode

#: codecs the encoder writes (TIFF compression tag values are GDAL's to write)
CODECS = ("ZSTD", "DEFLATE", "NONE")


@jit
def _all_nodata(data: Any, first: int, count: int, col: int, size: int, mode: int,
                nodata: float) -> bool:
    """Whether every sample of the image inside the tile is nodata (0 without a nodata
    value, as GDAL's SPARSE_OK); stops at the first that is not, nearly always the first."""
    if mode == NO_NODATA:  # no nodata value: a tile of zeros is the empty one
        mode, nodata = NODATA_VALUE, 0.0
    bands, _, cols = data.shape
    for row in range(first, first + count):
        for band in range(bands):
            for c in range(col, min(col + size, cols)):
                if holds_data(data[band, row, c], mode, nodata):
                    return False
    return True


@jit
def _interleave(data: Any, first: int, count: int, col: int, predictor: int,
                tile: Any) -> None:
    """Rows `first … first + count`, columns from `col`, of `data` (bands, rows, cols) into
    `tile` (size, size × bands) pixel-interleaved, 0 past the image's edges, each sample
    less the one before it in its band when `predictor` is 2 (horizontal differencing,
    modulo the integer type)."""
    bands, _, cols = data.shape
    size = tile.shape[0]
    width = min(size, cols - col)
    for i in range(size):
        line = tile[i]
        if i >= count:  # below the image
            line[:] = 0
            continue
        source = data[:, first + i, col:col + width]
        for band in range(bands):
            if predictor == 2:
                # over slices from 0 (no index to check for wrapping): vector code
                line[band] = source[band, 0]
                current, previous = source[band, 1:], source[band, :width - 1]
                out = line[bands + band::bands]
                for j in range(width - 1):
                    out[j] = current[j] - previous[j]
            else:
                out = line[band::bands]
                for j in range(width):
                    out[j] = source[band, j]
        line[width * bands:] = 0
        if predictor == 2 and width < size:  # the first 0 past the edge, predicted
            for band in range(bands):
                line[width * bands + band] = -source[band, width - 1]


@jit
def _float_planes(bits: Any, first: int, count: int, col: int, samples: Any, planes: Any,
                  tile: Any) -> None:
    """TIFF's floating-point predictor (3), row by row: each sample's bytes (`bits`: the
    data viewed as unsigned integers of its size) split into planes, most significant
    first, then each byte less the byte `bands` before it. 0 past the image's edges.
    `samples` (a row of `bits`' type) and `planes` (a row of bytes) are scratch rows; each
    step is a loop of its own over contiguous memory, so that it runs as vector code."""
    bands, _, cols = bits.shape
    size = tile.shape[0]
    width = min(size, cols - col)
    count_samples = size * bands
    itemsize = tile.shape[1] // count_samples
    total = count_samples * itemsize
    for i in range(size):
        line = tile[i]
        if i >= count:
            line[:] = 0
            continue
        if bands == 1:  # the row's samples, pixel-interleaved
            samples[:width] = bits[0, first + i, col:col + width]
        else:
            for band in range(bands):
                source = bits[band, first + i]
                for j in range(width):
                    samples[j * bands + band] = source[col + j]
        samples[width * bands:] = 0
        for plane in range(itemsize):  # byte planes, most significant first
            shift = 8 * (itemsize - 1 - plane)
            base = plane * count_samples
            for k in range(count_samples):
                planes[base + k] = (samples[k] >> shift) & 0xFF
        line[:bands] = planes[:bands]
        # each byte less the one `bands` before it, over slices that start at 0: indices
        # numba need not check for wrapping around, so the loop runs as vector code
        current, previous, out = planes[bands:total], planes[:total - bands], line[bands:total]
        for k in range(total - bands):
            out[k] = np.uint8(current[k] - previous[k])


_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


def shared_pool(threads: int) -> ThreadPoolExecutor:
    """The process's compression threads, made on first use (again in a forked child,
    which inherits none of its parent's threads: keyed by the process id): every writer
    of a cell shares them, so the products' tiles queue for the same cores rather than
    each product bringing a pool of its own."""
    key = (os.getpid(), threads)
    with _POOL_LOCK:
        if key not in _POOLS:
            _POOLS[key] = ThreadPoolExecutor(max_workers=threads,
                                             thread_name_prefix="rsbatch-tiles")
        return _POOLS[key]


class _ThreadLocal(threading.local):
    """Per compression thread: its zstd contexts (not to be shared between threads) and
    its tile buffers, reused tile after tile instead of mapped afresh each time."""

    def __init__(self) -> None:
        self.zstd: dict[int, Any] = {}
        self.buffers: dict[tuple, np.ndarray] = {}

    def buffer(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        key = (shape, np.dtype(dtype).str)
        if key not in self.buffers:
            self.buffers[key] = np.empty(shape, dtype)
        return self.buffers[key]


_LOCAL = _ThreadLocal()


def _compress(codec: str, level: int | None, tile: np.ndarray) -> bytes:
    raw = tile.data.cast("B")  # the tile's bytes, not copied
    if codec == "ZSTD":
        import zstandard

        compressor = _LOCAL.zstd.get(level or 0)
        if compressor is None:
            compressor = _LOCAL.zstd[level or 0] = zstandard.ZstdCompressor(level=level or 9)
        return bytes(compressor.compress(raw))
    if codec == "DEFLATE":
        return zlib.compress(raw, 6 if level is None else level)
    return tile.tobytes()


class TileEncoder:
    """Full-width rows of one level, in order → its compressed tiles in `path`.

    `tiles()` after `close()` gives each tile's (offset, size) in row-major order, (0, 0)
    for a tile left out as all nodata. At most `ahead` tile rows are being compressed at a
    time, so memory stays at a few tile rows whatever the pool's speed."""

    def __init__(self, path: str, *, width: int, height: int, bands: int, dtype: Any,
                 blocksize: int, codec: str, level: int | None, predictor: int | None,
                 nodata: Any, pool: ThreadPoolExecutor, ahead: int = 1) -> None:
        if codec.upper() not in CODECS:
            raise ValueError(f"the COG writer encodes {', '.join(CODECS)}, not {codec}")
        self.path, self.width, self.height, self.bands = path, width, height, bands
        self.dtype, self.blocksize = np.dtype(dtype), blocksize
        self.codec, self.level, self.pool, self.ahead = codec.upper(), level, pool, ahead
        # libtiff applies a predictor only with a codec: uncompressed tiles are stored as is
        self.predictor = (predictor or 1) if self.codec != "NONE" else 1
        if self.predictor == 3 and self.dtype.kind != "f":
            raise ValueError("the floating-point predictor is for floating-point data")
        self.mode, self.nodata = nodata_mode(nodata)
        self._buffer: np.ndarray | None = None  # rows gathered towards a row of tiles
        self._buffered = 0
        self._rows_done = 0  # image rows already cut into tiles
        self._pending: deque[list[Future]] = deque()
        self._tiles: list[tuple[int, int]] = []
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._offset = 0

    def write(self, rows: np.ndarray) -> None:
        """Add full-width rows (bands, n, width), directly after the last ones. The rows
        are read by the compression threads later: they must not change afterwards."""
        start, total = 0, rows.shape[1]
        while start < total:
            if self._buffered == 0 and total - start >= self.blocksize:
                self._cut_row(rows, start, self.blocksize)  # straight from the strip
                start += self.blocksize
                continue
            if self._buffer is None:  # a fresh one: the last is still being read
                self._buffer = np.empty((self.bands, self.blocksize, self.width), self.dtype)
            take = min(self.blocksize - self._buffered, total - start)
            self._buffer[:, self._buffered:self._buffered + take] = rows[:, start:start + take]
            self._buffered += take
            start += take
            if self._buffered == self.blocksize:
                self._cut_buffer()

    def _cut_buffer(self) -> None:
        if self._buffer is not None and self._buffered:
            self._cut_row(self._buffer, 0, self._buffered)
        self._buffer, self._buffered = None, 0

    def _cut_row(self, rows: np.ndarray, first: int, count: int) -> None:
        """One row of tiles from `rows[:, first:first + count]`: each tile cut and
        compressed by a pool thread (the compiled loops release the GIL too)."""
        self._pending.append([self.pool.submit(self._encode, rows, first, count, col)
                              for col in range(0, self.width, self.blocksize)])
        self._rows_done += count
        while len(self._pending) > self.ahead:
            self._drain_one()

    def _encode(self, rows: np.ndarray, first: int, count: int, col: int) -> bytes | None:
        """A tile's compressed bytes, or None when all its pixels are nodata."""
        if _all_nodata(rows, first, count, col, self.blocksize, self.mode, self.nodata):
            return None
        size, bands, itemsize = self.blocksize, self.bands, self.dtype.itemsize
        if self.predictor == 3:
            unsigned = np.uint32 if itemsize == 4 else np.uint64
            tile = _LOCAL.buffer((size, size * bands * itemsize), np.uint8)
            samples = _LOCAL.buffer((size * bands,), unsigned)
            planes = _LOCAL.buffer((size * bands * itemsize,), np.uint8)
            _float_planes(rows.view(unsigned), first, count, col, samples, planes, tile)
        else:
            tile = _LOCAL.buffer((size, size * bands), self.dtype)
            _interleave(rows, first, count, col, self.predictor, tile)
        return _compress(self.codec, self.level, tile)

    def _drain_one(self) -> None:
        """Write the oldest row of tiles, in order, as its compression finishes."""
        for job in self._pending.popleft():
            encoded = job.result()
            if encoded is None:
                self._tiles.append((0, 0))
                continue
            data = memoryview(encoded)
            self._tiles.append((self._offset, len(data)))
            self._offset += len(data)
            while data:
                data = data[os.write(self._fd, data):]

    def close(self) -> list[tuple[int, int]]:
        """Cut the last, partial row of tiles, write everything; the tiles' places."""
        self._cut_buffer()
        if self._rows_done != self.height:
            raise ValueError(f"{self._rows_done} of {self.height} rows encoded")
        while self._pending:
            self._drain_one()
        os.close(self._fd)
        self._fd = -1
        return self._tiles

    def abort(self) -> None:
        """Stop: pending tiles are dropped (their threads finish on their own)."""
        for jobs in self._pending:
            for job in jobs:
                job.cancel()
        self._pending.clear()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
