"""The checker beside the writer: is a file a valid Cloud-Optimized GeoTIFF?

It reads the TIFF structure itself (worker.tiff), not through GDAL, so tests check the
writer's layout independently of the code that made it.
"""

from __future__ import annotations

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


def validate_cog(path: str) -> CogReport:
    """Check the Cloud-Optimized GeoTIFF layout of a local file, independently of GDAL.

    Errors: not tiled; large image without overviews; an IFD after image data; overview
    data not stored smallest-first before the full-resolution data; a tile whose GDAL size
    leader disagrees with its byte count. Warnings: no GDAL layout header, blocks not 512.
    """
    report = CogReport(path)
    try:
        with open(path, "rb") as fh:
            info = tiff.read_structure(fh)
            leaders_ok = _check_leaders(fh, info)
    except (OSError, ValueError) as exc:
        report.errors.append(f"cannot read TIFF structure: {exc}")
        return report
    images = [ifd for ifd in info.ifds if not ifd.value(tiff.TAG_SUBFILE) & 4]  # no masks
    main = images[0]
    if tiff.TAG_TILE_W not in main.fields:
        report.errors.append("the full-resolution image is not tiled")
        return report
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
    if not leaders_ok:
        report.errors.append("a tile's size leader does not match its byte count")
    return report


def _check_leaders(fh: Any, info: tiff.TiffInfo) -> bool:
    """With BLOCK_LEADER=SIZE_AS_UINT4, the 4 bytes before each tile hold its size."""
    import struct

    if b"BLOCK_LEADER=SIZE_AS_UINT4" not in info.header:
        return True
    for ifd in info.ifds:
        pairs = list(zip(ifd.array(tiff.TAG_TILE_OFFSETS), ifd.array(tiff.TAG_TILE_COUNTS)))
        for offset, size in pairs[:: max(1, len(pairs) // 16)]:  # a sample is enough
            if offset:
                fh.seek(offset - 4)
                if struct.unpack(info.order + "I", fh.read(4))[0] != size:
                    return False
    return True
