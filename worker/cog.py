"""One writer and one checker for Cloud-Optimized GeoTIFFs.

`CogWriter` takes full-width strips in row order. Each strip is cut into tiles and
compressed once, by the worker's tile encoder (tiles.py, on a pool of threads while the
next strip is computed), into a scratch file of tiles for the full resolution; the writer
also averages it down into every overview level as it goes (nodata-aware, exact means of
the valid full-resolution pixels, kernels.py) and encodes those the same way. GDAL writes
each level's IFD — tags, georeferencing, metadata, statistics — without a pixel. `close()`
puts IFDs and tiles together in the COG layout (`tiff.assemble`) under a scratch name
beside the destination and renames it into place: no pixel is compressed twice, memory
holds a strip and a few rows of tiles, and no reader ever sees a half-written file under
the final name.

Its checker is `worker.cogcheck.validate_cog`, which reads the TIFF structure itself.
"""

from __future__ import annotations

import errno
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from qgis_rsbatch.core.scratch import new_token, scratch_path

from . import kernels, tiff, tiles
from .outputs import is_out_of_space, space_slack
from .profiles import cog_options, cores_share


class _Stats:
    """Running band statistics over valid pixels, as GDAL stores them (STATISTICS_*): a
    pixel is valid where every band holds data. 8- and 16-bit data are summed exactly in
    integers, anything else in float64."""

    def __init__(self, count: int, nodata: Any = None) -> None:
        self.count = count
        self.mode, self.nodata = kernels.nodata_mode(nodata)
        self.n = np.zeros(count, np.int64)
        self.pixels = 0
        self.total: np.ndarray | None = None  # the accumulators, typed by the first strip
        self.squares = self.low = self.high = np.zeros(0)

    def add(self, data: np.ndarray) -> None:
        """Add a strip (bands, rows, cols)."""
        if self.total is None:
            exact = data.dtype.kind in "ub" and data.dtype.itemsize <= 2
            kind = np.uint64 if exact else np.float64
            self.total, self.squares = np.zeros(self.count, kind), np.zeros(self.count, kind)
            self.low = np.full(self.count, np.iinfo(np.uint64).max if exact else np.inf, kind)
            self.high = np.full(self.count, 0 if exact else -np.inf, kind)
        self.pixels += kernels.band_sums(data, self.mode, self.nodata, self.n, self.total,
                                         self.squares, self.low, self.high)

    def tags(self, band: int) -> dict[str, str]:
        n = int(self.n[band])
        if n == 0 or self.total is None:
            return {"STATISTICS_VALID_PERCENT": "0"}
        # exact integers stay integers until this division: Python rounds it once
        total, squares = self.total[band].item(), self.squares[band].item()
        mean = total / n
        var = max(squares / n - mean * mean, 0.0)
        return {
            "STATISTICS_MINIMUM": repr(float(self.low[band])),
            "STATISTICS_MAXIMUM": repr(float(self.high[band])),
            "STATISTICS_MEAN": repr(float(mean)),
            "STATISTICS_STDDEV": repr(math.sqrt(var)),
            "STATISTICS_VALID_PERCENT": f"{100.0 * n / max(self.pixels, 1):.4f}",
        }

    def valid_fraction(self) -> float:
        return float(self.n.max()) / max(self.pixels, 1)


def gatherer(statistics: bool | Any, count: int, nodata: Any = None) -> Any:
    """A writer's band statistics: True, its own sums (`_Stats`); False, none; or the
    gatherer the caller keeps (an index's aoistats.IndexStats, whose AOI statistics come
    from the same pass). A gatherer takes each strip as written: `add(data)`."""
    if statistics is True:
        return _Stats(count, nodata)
    return None if statistics is False else statistics


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def valid_mask(data: np.ndarray, nodata: Any) -> np.ndarray:
    """(rows, cols) True where a pixel holds data in every band."""
    if nodata is None:
        return np.ones(data.shape[1:], dtype=bool)
    def holds(band: np.ndarray) -> np.ndarray:
        return ~np.isnan(band) if _is_nan(nodata) else band != nodata

    valid = holds(data[0])
    for band in data[1:]:  # band by band: no (bands, rows, cols) temporary
        valid &= holds(band)
    return valid


def describe(ds: Any, writer: Any) -> None:
    """Write a writer's band descriptions, scales, offsets, colour interpretation, tags and
    statistics into the open dataset `ds` (the full-resolution level): one place for every
    COG writer, ours and the benchmark's contenders (bench/cog_contenders.py)."""
    from rasterio.enums import ColorInterp

    for band, text in enumerate(writer.descriptions, start=1):
        ds.set_band_description(band, text)
    if writer.scales is not None:
        ds.scales = tuple(writer.scales)
    if writer.offsets is not None:
        ds.offsets = tuple(writer.offsets)
    if writer.colorinterp and writer.colorinterp[:3] != ("red", "green", "blue"):
        ds.colorinterp = [ColorInterp[name] for name in writer.colorinterp]
    if writer.tags:
        ds.update_tags(**writer.tags)
    for band in range(1, writer.count + 1):
        extra = dict(writer.band_tags[band - 1]) if band - 1 < len(writer.band_tags) else {}
        if writer.stats is not None:
            extra.update(writer.stats.tags(band - 1))
        if extra:
            ds.update_tags(band, **extra)


class _Level:
    """One overview level being built: carries an odd leftover row of the level above it
    between strips (pixels above level 1, sums and counts deeper). Where its rows go is
    its tile encoder's to keep."""

    def __init__(self) -> None:
        self.carry: tuple[np.ndarray, np.ndarray | None] | None = None


class CogWriter:
    """Full-width strips in row order → a Cloud-Optimized GeoTIFF at `path`.

    `profile` holds dtype, count, nodata, crs, transform, width, height. Overviews are
    averages of the valid pixels (nodata-aware) or, with `overview_resampling="nearest"`
    (class maps), the upper-left pixel of each 2 × 2 block. The file is a BigTIFF when its
    tiles could take more than `bigtiff_above` bytes (the classic format's limit), classic
    otherwise. Band statistics (STATISTICS_*) are gathered as the strips go by, by the
    writer itself or by the `statistics` gatherer it is given.
    """

    def __init__(self, path: str, profile: dict[str, Any], *, blocksize: int = 512,
                 overview_resampling: str = "average", descriptions: Sequence[str] = (),
                 scales: Sequence[float] | None = None, offsets: Sequence[float] | None = None,
                 colorinterp: Sequence[str] | None = None, tags: dict[str, str] | None = None,
                 band_tags: Sequence[dict] | None = None, statistics: bool | Any = True,
                 options: dict[str, Any] | None = None,
                 bigtiff_above: int = tiff.CLASSIC_LIMIT) -> None:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        self.path = os.path.abspath(path)
        self.profile = dict(profile)
        self.nodata = profile.get("nodata")
        self.count = int(profile["count"])
        self.dtype = np.dtype(profile["dtype"])
        self.blocksize = blocksize
        self.nearest = overview_resampling == "nearest"
        self.descriptions, self.scales, self.offsets = descriptions, scales, offsets
        self.colorinterp = tuple(colorinterp or ())
        self.tags, self.band_tags = dict(tags or {}), list(band_tags or [])
        self.stats = gatherer(statistics, self.count, self.nodata)
        self.rows_written = 0
        self._closed = False
        self._made = False  # close() put the finished COG at self.path
        token = new_token()  # scratch names carry our pid, so a sweep can tell if we live
        self._part = scratch_path(self.path, "part", token)

        sizes = [(int(profile["width"]), int(profile["height"]))]
        while max(sizes[-1]) > blocksize:
            w, h = sizes[-1]
            sizes.append(((w + 1) // 2, (h + 1) // 2))
        # decided before writing, from the sizes alone (the scratch levels too: the full
        # resolution on its own may pass 4 GiB): BigTIFF when the COG could outgrow the
        # classic format's 32-bit offsets
        self.bigtiff = tiff.largest_size(sizes, self.count, self.dtype.itemsize,
                                         blocksize) > bigtiff_above
        options = cog_options(**(options or {}))
        creation = {
            "driver": "GTiff", "tiled": True, "blockxsize": blocksize, "blockysize": blocksize,
            "bigtiff": "YES" if self.bigtiff else "NO", "sparse_ok": True,
            "compress": options["compress"], "num_threads": options["num_threads"],
            "interleave": "pixel" if self.count > 1 else "band",
            "dtype": self.dtype.name, "count": self.count, "nodata": self.nodata,
            "crs": profile.get("crs"), "transform": profile.get("transform"),
        }
        if options.get("predictor"):
            creation["predictor"] = options["predictor"]
        level_option = {"ZSTD": "zstd_level", "DEFLATE": "zlevel", "LERC_ZSTD": "zstd_level"}
        if options.get("level") is not None and options["compress"].upper() in level_option:
            creation[level_option[options["compress"].upper()]] = options["level"]
        if self.colorinterp[:3] == ("red", "green", "blue"):
            # must be set at creation; GDAL refuses it later. Bands after the third are
            # TIFF extra samples (undefined), e.g. a composite's count of observations.
            creation["photometric"] = "RGB"
        self._levels = [_Level() for _ in sizes[1:]]
        self._paths = [scratch_path(self.path, f"L{i}.tif", token) for i in range(len(sizes))]
        self._tile_paths = [scratch_path(self.path, f"L{i}.tiles", token)
                            for i in range(len(sizes))]
        self._datasets: list[Any] = []
        self._encoders: list[tiles.TileEncoder] = []
        try:
            for index, (w, h) in enumerate(sizes):
                level_profile = dict(creation, width=w, height=h)
                if index:
                    level_profile.pop("crs")
                    level_profile.pop("transform")
                # GDAL writes the level's IFD (tags, georeferencing, metadata) and no
                # pixel; the tiles are the encoder's
                with warnings.catch_warnings():  # overview levels carry no georeferencing
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    self._datasets.append(rasterio.open(self._paths[index], "w",
                                                        **level_profile))
                self._encoders.append(tiles.TileEncoder(
                    self._tile_paths[index], width=w, height=h, bands=self.count,
                    dtype=self.dtype, blocksize=blocksize, codec=options["compress"],
                    level=options.get("level"), predictor=options.get("predictor"),
                    nodata=self.nodata, pool=tiles.shared_pool(cores_share())))
        except BaseException:
            self.abort()
            raise

    @property
    def folder(self) -> str:
        """Where the scratch files and the COG are written."""
        return os.path.dirname(self.path)

    # --- writing -------------------------------------------------------------------------
    def write(self, data: np.ndarray, row_off: int, col_off: int = 0) -> None:
        """Write `data` (bands, rows, cols): full-width rows, directly after the last ones."""
        _, rows, cols = data.shape
        if col_off != 0 or cols != self.profile["width"] or row_off != self.rows_written:
            raise ValueError("CogWriter takes full-width strips in row order")
        self._encoders[0].write(data)
        self.rows_written += rows
        if self.stats is not None:
            self.stats.add(data)
        if self.nearest:
            self._feed_nearest(data, row_off)
        else:
            self._feed(0, data, None)

    def _feed_nearest(self, data: np.ndarray, row_off: int) -> None:
        for index in range(1, len(self._levels) + 1):
            step = 2 ** index
            first = -(-row_off // step) * step - row_off
            picked = data[:, first::step, ::step]
            if picked.shape[1]:
                self._encoders[index].write(picked)

    def _feed(self, index: int, block: np.ndarray, counts: np.ndarray | None) -> None:
        """Add full-width rows of level `index` (its pixels at 0, then sums and counts of
        the valid pixels beneath) and pass their halves down, an odd last row carried."""
        if index >= len(self._levels):
            return
        level = self._levels[index]
        if level.carry is not None:
            carried, carried_counts = level.carry
            level.carry = None
            block = np.concatenate([carried, block], axis=1)
            if counts is not None and carried_counts is not None:
                counts = np.concatenate([carried_counts, counts], axis=0)
        even = block.shape[1] - block.shape[1] % 2
        if even < block.shape[1]:
            level.carry = (block[:, even:].copy(),
                           None if counts is None else counts[even:].copy())
        if even:
            self._halve(index, block[:, :even], None if counts is None else counts[:even])

    def _halve(self, index: int, block: np.ndarray, counts: np.ndarray | None) -> None:
        """Level `index + 1` from rows of level `index` (a last odd row alone): its means
        written, its sums and counts fed further down. Level 1 is summed in uint32 or
        float32 with uint8 counts (exact for four values) from the pixels themselves, the
        deeper ones, a quarter the size each, in float64 and int32 (kernels.py)."""
        bands, rows, cols = block.shape
        shape = (bands, (rows + 1) // 2, (cols + 1) // 2)
        means = np.empty(shape, self.dtype)
        integer = bool(np.issubdtype(self.dtype, np.integer))
        fill = self.nodata if self.nodata is not None else (0 if integer else np.nan)
        if index == 0:
            sums = np.empty(shape, np.float32 if block.dtype.kind == "f" else np.uint32)
            half_counts = np.empty(shape[1:], np.uint8)
            mode, nodata = kernels.nodata_mode(self.nodata)
            kernels.halve_pixels(block, mode, nodata, sums, half_counts, means, fill, integer)
        else:
            sums = np.empty(shape, np.float64)
            half_counts = np.empty(shape[1:], np.int32)
            kernels.halve_sums(block, counts, sums, half_counts, means, fill, integer)
        self._encoders[index + 1].write(means)
        self._feed(index + 1, sums, half_counts)

    def _flush(self) -> None:
        """At the end, a level left with one odd row is averaged on its own."""
        for index, level in enumerate(self._levels):
            if level.carry is not None:
                block, counts = level.carry
                level.carry = None
                self._halve(index, block, counts)

    # --- finishing -----------------------------------------------------------------------
    def close(self) -> str:
        """Finish the pyramid, assemble the COG layout, rename into place. Returns the path."""
        if self._closed:
            return self.path
        try:
            if self.rows_written != self.profile["height"]:
                raise ValueError(f"{self.rows_written} of {self.profile['height']} rows written")
            if not self.nearest:
                self._flush()
            describe(self._datasets[0], self)
            for ds in self._datasets:
                ds.close()
            places = [encoder.close() for encoder in self._encoders]
            tiff.assemble(self._paths, self._part, bigtiff=self.bigtiff,
                          tiles=list(zip(self._tile_paths, places)))
            os.replace(self._part, self.path)
            self._closed = self._made = True
            return self.path
        except Exception as exc:
            slack = space_slack(self.count * self.dtype.itemsize, self.blocksize)
            if is_out_of_space(exc, self.folder, slack):  # while the scratch files exist
                raise OSError(errno.ENOSPC, f"no space left writing {self.path}") from exc
            raise
        finally:
            self._cleanup()

    def abort(self) -> None:
        """Drop everything written so far, the finished COG too when this writer closed it:
        a cell that fails after one product was finished leaves none of them behind."""
        self._closed = True
        self._cleanup()
        if self._made and os.path.exists(self.path):
            os.remove(self.path)
        self._made = False

    def _cleanup(self) -> None:
        for ds in self._datasets:
            if not ds.closed:
                ds.close()
        for encoder in self._encoders:
            encoder.abort()
        for path in (*self._paths, *self._tile_paths, self._part):
            for candidate in (path, path + ".aux.xml"):
                if os.path.exists(candidate):
                    os.remove(candidate)

    def __enter__(self) -> CogWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
