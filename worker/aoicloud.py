"""The AOI cloud pre-check: how much of the analyst's area SCL masks, before the heavy work.

A tile's `eo:cloud_cover` says little about a small AOI: a scene 10 % cloudy may cover the
AOI completely, and one 80 % cloudy may leave it clear (sen2r's `max_mask`). The worker
reads only the scene classification inside the AOI's window (a 20 m uint8 band, a small
fraction of the bytes of the 10 m bands), counts the AOI pixels of the 10 m grid whose
class is masked (products.MASKED_SCL), and skips the cell when the share is above the
cell's `max_aoi_cloud`.
"""

from __future__ import annotations

from typing import Any

from . import compute
from .reader import AoiClip, BandSet, strips


def masked_percent(bands: BandSet, clip: AoiClip | None, window: Any,
                   strip_rows: int) -> float | None:
    """% of the AOI's 10 m pixels (centres inside the AOI, or the whole window) that SCL
    masks; None when the cell has no SCL or the AOI covers no pixel centre."""
    if "scl" not in bands.datasets:
        return None
    row, col = int(window.row_off), int(window.col_off)
    rows, cols = int(window.height), int(window.width)
    area = masked = 0
    for strip_row, height in strips(row, rows, strip_rows):
        cloudy = bands.read(("scl",), strip_row, col, height, cols,
                            scl_map=compute.cloud_mask)["scl"]
        if clip is not None:
            inside = clip.mask(strip_row, col, height, cols)
            cloudy &= inside
            area += int(inside.sum())
        else:
            area += height * cols
        masked += int(cloudy.sum())
    return 100.0 * masked / area if area else None


def skip_reason(percent: float | None, limit: float | None) -> str | None:
    """"AOI 87 % masked > 60 %" when the cell must be skipped, else None."""
    if percent is None or limit is None or percent <= limit:
        return None
    digits = 0  # as few as show that it is above the limit (60.4 > 60, not "60 > 60")
    while digits < 3 and float(f"{percent:.{digits}f}") <= limit:
        digits += 1
    return f"AOI {percent:.{digits}f} % masked > {limit:g} %"
