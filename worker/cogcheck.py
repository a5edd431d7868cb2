"""The checker beside the writer: is a file a complete, valid Cloud-Optimized GeoTIFF?

The layout is read from the TIFF structure itself (worker.tiff), not through GDAL, so tests
check the writer's layout independently of the code that made it. Completeness is checked
twice: every tile's byte range must lie inside the file (a truncated copy fails here, cheaply),
and with `decode=True` GDAL must decode every tile of every image (a damaged tile fails there).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

from . import tiff


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


def validate_cog(path: str, *, decode: bool = False) -> CogReport:
    """Check that a local file is a complete Cloud-Optimized GeoTIFF.

    Errors: not a TIFF, or cut short (an IFD or a tile beyond the end of the file); not
    tiled; large image without overviews; an IFD after image data; overview data not stored
    smallest-first before the full-resolution data; a tile whose GDAL size leader disagrees
    with its byte count; with `decode`, a tile GDAL cannot decode. Warnings: no GDAL layout
    header, blocks not 512.
    """
    report = CogReport(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            info = tiff.read_structure(fh)
            report.errors.extend(_tiles_outside(info, size))
            leaders_ok = True if report.errors else _check_leaders(fh, info)
    except (OSError, ValueError) as exc:
        report.errors.append(f"cannot read TIFF structure: {exc}")
        return report
    if not info.ifds:
        report.errors.append("the TIFF holds no image")
        return report
    _check_layout(report, info)
    if not leaders_ok:
        report.errors.append("a tile's size leader does not match its byte count")
    if decode and report.valid:
        report.errors.extend(_decode_errors(path, len(report.overviews) + 1))
    return report


def _check_layout(report: CogReport, info: tiff.TiffInfo) -> None:
    images = [ifd for ifd in info.ifds if not ifd.value(tiff.TAG_SUBFILE) & 4]  # no masks
    main = images[0]
    if tiff.TAG_TILE_W not in main.fields:
        report.errors.append("the full-resolution image is not tiled")
        return
    report.blocksize = (main.value(tiff.TAG_TILE_W), main.value(tiff.TAG_TILE_H))
    if report.blocksize != (512, 512):
        report.warnings.append(f"blocks are {report.blocksize}, not 512 × 512")
    width, height = main.value(tiff.TAG_WIDTH), main.value(tiff.TAG_HEIGHT)
    report.overviews = [(i.value(tiff.TAG_WIDTH), i.value(tiff.TAG_HEIGHT)) for i in images[1:]]
    if max(width, height) > max(report.blocksize) and not report.overviews:
        report.errors.append(f"{width} × {height} image has no internal overviews")
    for previous, current in zip([(width, height), *report.overviews], report.overviews):
        if current[0] >= previous[0]:
            report.errors.append("overviews are not in decreasing size order")
    firsts = [min((o for o in i.array(tiff.TAG_TILE_OFFSETS) if o), default=None)
              for i in info.ifds]
    data_start = min((f for f in firsts if f is not None), default=None)
    if data_start is not None and max(i.offset for i in info.ifds) > data_start:
        report.errors.append("an IFD is stored after image data (IFDs must come first)")
    spans = []
    for image in images:
        offsets = [o for o in image.array(tiff.TAG_TILE_OFFSETS) if o]
        if offsets:
            spans.append((min(offsets), max(offsets)))
    for larger, smaller in zip(spans, spans[1:]):
        if smaller[1] > larger[0]:
            report.errors.append("overview data is not stored before the larger image's data")
            break
    if b"LAYOUT=IFDS_BEFORE_DATA" not in info.header:
        report.warnings.append("no GDAL COG layout header (GDAL_STRUCTURAL_METADATA)")
    elif b"KNOWN_INCOMPATIBLE_EDITION=YES" in info.header:
        report.errors.append("file was edited after creation; its COG layout is broken")


def _blocks(ifd: tiff.Ifd) -> list[tuple[int, int]]:
    """(offset, byte count) of every tile, or strip, of an image."""
    offsets = ifd.array(tiff.TAG_TILE_OFFSETS) or ifd.array(tiff.TAG_STRIP_OFFSETS)
    counts = ifd.array(tiff.TAG_TILE_COUNTS) or ifd.array(tiff.TAG_STRIP_COUNTS)
    return list(zip(offsets, counts))


def _tiles_outside(info: tiff.TiffInfo, size: int) -> list[str]:
    """One error per image whose tiles (or strips) reach beyond the file's `size` bytes."""
    errors = []
    for index, ifd in enumerate(info.ifds):
        offsets = ifd.array(tiff.TAG_TILE_OFFSETS) or ifd.array(tiff.TAG_STRIP_OFFSETS)
        counts = ifd.array(tiff.TAG_TILE_COUNTS) or ifd.array(tiff.TAG_STRIP_COUNTS)
        if len(offsets) != len(counts):
            errors.append(f"image {index} lists {len(offsets)} tile offsets but "
                          f"{len(counts)} byte counts")
            continue
        outside = [(o, c) for o, c in zip(offsets, counts) if c and o + c > size]
        if outside:
            end = max(o + c for o, c in outside)
            errors.append(f"image {index}: {len(outside)} of {len(offsets)} tiles lie beyond "
                          f"the end of the file (it has {size} bytes, its tiles reach byte "
                          f"{end}): the file is truncated")
    return errors


def _check_leaders(fh: Any, info: tiff.TiffInfo) -> bool:
    """With BLOCK_LEADER=SIZE_AS_UINT4, the 4 bytes before each tile hold its size."""
    if b"BLOCK_LEADER=SIZE_AS_UINT4" not in info.header:
        return True
    for ifd in info.ifds:
        for offset, size in _blocks(ifd):
            if offset and size:
                fh.seek(offset - 4)
                leader = fh.read(4)
                if len(leader) != 4 or struct.unpack(info.order + "I", leader)[0] != size:
                    return False
    return True


def _decode_errors(path: str, levels: int) -> list[str]:
    """GDAL's own complaint about the first tile it cannot decode, per pyramid level."""
    import rasterio
    from rasterio.errors import RasterioError

    from .sources import gdal_message

    errors = []
    for level in range(levels):
        name = "the full-resolution image" if level == 0 else f"overview {level}"
        options = {} if level == 0 else {"overview_level": level - 1}
        try:
            with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), \
                    rasterio.open(path, **options) as ds:
                for _, window in ds.block_windows(1):
                    ds.read(window=window)
        except RasterioError as exc:
            errors.append(f"{name} does not decode: {gdal_message(exc)}")
    return errors
