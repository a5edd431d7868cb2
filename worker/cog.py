"""One writer and one checker for Cloud-Optimized GeoTIFFs.

`CogWriter` takes blocks as they are computed and writes them into an uncompressed,
tiled scratch GeoTIFF beside the destination; `close()` lets GDAL's COG driver build the
overviews and the final layout (compressed, IFDs first, smallest overview's data first)
into a second scratch name, and only then renames it to the final name. A reader never
sees a half-written file under that name, and a crash leaves only dot-files to clean.

`validate_cog` reads the TIFF structure itself (IFDs, tile offsets, GDAL's layout
header) so the tests check the layout independently of the writer.
"""

from __future__ import annotations

import math
import os
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .profiles import cog_options


class _Stats:
    """Running band statistics over valid pixels, as GDAL stores them (STATISTICS_*)."""

    def __init__(self, count: int) -> None:
        self.n = np.zeros(count, np.int64)
        self.total = np.zeros(count, np.float64)
        self.squares = np.zeros(count, np.float64)
        self.low = np.full(count, np.inf)
        self.high = np.full(count, -np.inf)
        self.pixels = 0

    def add(self, data: np.ndarray, nodata: float | None) -> None:
        self.pixels += data.shape[1] * data.shape[2]
        for band, values in enumerate(data):
            if nodata is None:
                valid = values.ravel()
            elif isinstance(nodata, float) and math.isnan(nodata):
                valid = values[~np.isnan(values)]
            else:
                valid = values[values != nodata]
            if valid.size == 0:
                continue
            as64 = valid.astype(np.float64)
            self.n[band] += valid.size
            self.total[band] += as64.sum()
            self.squares[band] += np.dot(as64, as64)
            self.low[band] = min(self.low[band], float(valid.min()))
            self.high[band] = max(self.high[band], float(valid.max()))

    def tags(self, band: int) -> dict[str, str]:
        n = int(self.n[band])
        if n == 0:
            return {"STATISTICS_VALID_PERCENT": "0"}
        mean = self.total[band] / n
        var = max(self.squares[band] / n - mean * mean, 0.0)
        return {
            "STATISTICS_MINIMUM": repr(float(self.low[band])),
            "STATISTICS_MAXIMUM": repr(float(self.high[band])),
            "STATISTICS_MEAN": repr(float(mean)),
            "STATISTICS_STDDEV": repr(math.sqrt(var)),
            "STATISTICS_VALID_PERCENT": f"{100.0 * n / max(self.pixels, 1):.4f}",
        }

    def valid_fraction(self) -> float:
        return float(self.n.max()) / max(self.pixels, 1)


class CogWriter:
    """Blocks in, a Cloud-Optimized GeoTIFF out at `path`, never visible half-written.

    `profile` holds dtype, count, nodata, crs, transform, width, height. `fmt` "COG" is the
    product format; "GTiff" (striped, no overviews) and "JP2" (lossless JPEG 2000) exist so
    the sample generator can write the other inputs the worker must read.
    """

    def __init__(self, path: str, profile: dict[str, Any], *, fmt: str = "COG",
                 blocksize: int = 512, overview_resampling: str = "average",
                 descriptions: Sequence[str] = (), scales: Sequence[float] | None = None,
                 offsets: Sequence[float] | None = None,
                 colorinterp: Sequence[str] | None = None,
                 tags: dict[str, str] | None = None, band_tags: Sequence[dict] | None = None,
                 statistics: bool = True, options: dict[str, Any] | None = None) -> None:
        import rasterio

        self.path = os.path.abspath(path)
        self.fmt = fmt
        self.profile = dict(profile)
        self.blocksize = blocksize
        self.overview_resampling = overview_resampling
        self.descriptions, self.scales, self.offsets = descriptions, scales, offsets
        self.colorinterp = colorinterp
        self.tags, self.band_tags = dict(tags or {}), list(band_tags or [])
        self.options = dict(options or {})
        self.stats = _Stats(profile["count"]) if statistics else None
        folder, base = os.path.split(self.path)
        token = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._raw = os.path.join(folder, f".{base}.{token}.raw.tif")
        self._part = os.path.join(folder, f".{base}.{token}.part")
        self._closed = False
        raw = {
            "driver": "GTiff", "tiled": True, "blockxsize": blocksize,
            "blockysize": blocksize, "bigtiff": "IF_SAFER", "sparse_ok": True,
            "interleave": "pixel" if profile["count"] > 1 else "band",
            **{k: profile[k] for k in ("dtype", "count", "nodata", "crs", "transform",
                                       "width", "height")},
        }
        if tuple(colorinterp or ()) == ("red", "green", "blue"):
            raw["photometric"] = "RGB"  # must be set at creation; GDAL refuses it later
            self.colorinterp = None
        self._ds = rasterio.open(self._raw, "w", **raw)

    def write(self, data: np.ndarray, row_off: int, col_off: int) -> None:
        """Write `data` (bands, rows, cols) with its upper-left pixel at (row_off, col_off)."""
        from rasterio.windows import Window

        window = Window(col_off, row_off, data.shape[2], data.shape[1])
        self._ds.write(data, window=window)
        if self.stats is not None:
            self.stats.add(data, self.profile.get("nodata"))

    def _finish_raw(self) -> None:
        from rasterio.enums import ColorInterp

        ds = self._ds
        for band, text in enumerate(self.descriptions, start=1):
            ds.set_band_description(band, text)
        if self.scales is not None:
            ds.scales = tuple(self.scales)
        if self.offsets is not None:
            ds.offsets = tuple(self.offsets)
        if self.colorinterp:
            ds.colorinterp = [ColorInterp[name] for name in self.colorinterp]
        if self.tags:
            ds.update_tags(**self.tags)
        for band in range(1, self.profile["count"] + 1):
            extra = dict(self.band_tags[band - 1]) if band - 1 < len(self.band_tags) else {}
            if self.stats is not None:
                extra.update(self.stats.tags(band - 1))
            if extra:
                ds.update_tags(band, **extra)
        ds.close()

    def close(self) -> str:
        """Finish: overviews, compression, COG layout, then the atomic rename. Returns path."""
        from rasterio.shutil import copy as gdal_copy

        if self._closed:
            return self.path
        try:
            self._finish_raw()
            if self.fmt == "COG":
                options = cog_options(blocksize=self.blocksize,
                                      overview_resampling=self.overview_resampling)
                options.update(self.options)
                gdal_copy(self._raw, self._part, driver="COG", **options)
            elif self.fmt == "GTiff":
                gdal_copy(self._raw, self._part, driver="GTiff", compress="DEFLATE")
            elif self.fmt == "JP2":
                gdal_copy(self._raw, self._part, driver="JP2OpenJPEG", quality=100,
                          reversible="YES", blockxsize=1024, blockysize=1024)
            else:
                raise ValueError(f"unknown output format {self.fmt}")
            os.replace(self._part, self.path)
            self._closed = True
            return self.path
        finally:
            self._cleanup()

    def abort(self) -> None:
        """Drop everything written so far (safe to call after close)."""
        if not self._closed:
            if not self._ds.closed:
                self._ds.close()
            self._closed = True
        self._cleanup()

    def _cleanup(self) -> None:
        for path in (self._raw, self._part, self._part + ".aux.xml", self._raw + ".aux.xml"):
            if os.path.exists(path):
                os.remove(path)

    def __enter__(self) -> CogWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# --- the checker ---------------------------------------------------------------------------

_TAG_SUBFILE, _TAG_WIDTH, _TAG_HEIGHT = 254, 256, 257
_TAG_TILE_W, _TAG_TILE_H, _TAG_TILE_OFFSETS, _TAG_TILE_COUNTS = 322, 323, 324, 325
_TAG_STRIP_OFFSETS = 273
_TYPES = {1: "B", 2: "B", 3: "H", 4: "I", 6: "b", 7: "B", 8: "h", 9: "i", 16: "Q", 17: "q", 18: "Q"}


@dataclass
class CogReport:
    """What `validate_cog` found: valid when `errors` is empty."""

    path: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    blocksize: tuple[int, int] | None = None
    overviews: list[tuple[int, int]] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors


def _read_ifds(fh: Any) -> tuple[list[dict[int, Any]], list[int], int]:
    """Every IFD as {tag: value(s)}, their file offsets, and the header size."""
    head = fh.read(16)
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None:
        raise ValueError("not a TIFF file")
    magic = struct.unpack(order + "H", head[2:4])[0]
    big = magic == 43
    if magic not in (42, 43):
        raise ValueError("not a TIFF file")
    offset = struct.unpack(order + ("Q" if big else "I"), head[8:16] if big else head[4:8])[0]
    ifds, offsets = [], []
    while offset and len(ifds) < 64:
        offsets.append(offset)
        fh.seek(offset)
        count = struct.unpack(order + ("Q" if big else "H"), fh.read(8 if big else 2))[0]
        size = 20 if big else 12
        raw = fh.read(count * size)
        tags: dict[int, Any] = {}
        for i in range(count):
            entry = raw[i * size:(i + 1) * size]
            tag, typ = struct.unpack(order + "HH", entry[:4])
            n = struct.unpack(order + ("Q" if big else "I"), entry[4:12] if big else entry[4:8])[0]
            fmt = _TYPES.get(typ)
            if fmt is None:
                continue
            nbytes = struct.calcsize(fmt) * n
            inline = entry[12:20] if big else entry[8:12]
            if nbytes <= len(inline):
                data = inline[:nbytes]
            else:
                pos = fh.tell()
                fh.seek(struct.unpack(order + ("Q" if big else "I"), inline)[0])
                data = fh.read(nbytes)
                fh.seek(pos)
            tags[tag] = struct.unpack(order + fmt * n, data) if typ != 2 else data
        ifds.append(tags)
        offset = struct.unpack(order + ("Q" if big else "I"), fh.read(8 if big else 4))[0]
    return ifds, offsets, 16 if big else 8


def validate_cog(path: str) -> CogReport:
    """Check the Cloud-Optimized GeoTIFF layout of a local file, independently of GDAL.

    Errors: not tiled; large image without overviews; an IFD after image data; overview
    data not stored smallest-first before the full-resolution data. Warnings: no GDAL
    layout header (readers cannot trust the block order), blocks other than 512.
    """
    report = CogReport(path)
    try:
        with open(path, "rb") as fh:
            ifds, ifd_offsets, header = _read_ifds(fh)
            fh.seek(header)
            ghost = fh.read(200)
    except (OSError, ValueError, struct.error) as exc:
        report.errors.append(f"cannot read TIFF structure: {exc}")
        return report
    images = [i for i in ifds if not (i.get(_TAG_SUBFILE, (0,))[0] & 4)]  # skip masks
    main = images[0]
    if _TAG_TILE_W not in main:
        report.errors.append("the full-resolution image is not tiled")
        return report
    report.blocksize = (main[_TAG_TILE_W][0], main[_TAG_TILE_H][0])
    if report.blocksize != (512, 512):
        report.warnings.append(f"blocks are {report.blocksize}, not 512 × 512")
    width, height = main[_TAG_WIDTH][0], main[_TAG_HEIGHT][0]
    report.overviews = [(i[_TAG_WIDTH][0], i[_TAG_HEIGHT][0]) for i in images[1:]]
    if max(width, height) > max(report.blocksize) and not report.overviews:
        report.errors.append(f"{width} × {height} image has no internal overviews")
    for previous, current in zip([(width, height), *report.overviews], report.overviews):
        if current[0] >= previous[0]:
            report.errors.append("overviews are not in decreasing size order")
    data_offsets = [min(o for o in i.get(_TAG_TILE_OFFSETS, i.get(_TAG_STRIP_OFFSETS, ())) if o)
                    for i in ifds if any(i.get(_TAG_TILE_OFFSETS, i.get(_TAG_STRIP_OFFSETS, ())))]
    if data_offsets and max(ifd_offsets) > min(data_offsets):
        report.errors.append("an IFD is stored after image data (IFDs must come first)")
    # each smaller overview's data must lie before the data of the larger one
    spans = []
    for image in images:
        offs = [o for o in image.get(_TAG_TILE_OFFSETS, ()) if o]
        if offs:
            spans.append((min(offs), max(offs)))
    for larger, smaller in zip(spans, spans[1:]):
        if smaller[1] > larger[0]:
            report.errors.append("overview data is not stored before the larger image's data")
            break
    if b"LAYOUT=IFDS_BEFORE_DATA" not in ghost:
        report.warnings.append("no GDAL COG layout header (GDAL_STRUCTURAL_METADATA)")
    elif b"KNOWN_INCOMPATIBLE_EDITION=YES" in ghost:
        report.errors.append("file was edited after creation; its COG layout is broken")
    return report
