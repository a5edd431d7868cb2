"""Verify the reflectance offset from the pixels (DESIGN.md "Reflectance", `offset_check`).

Catalogs' metadata about the +1000 of baseline 04.00 is sometimes wrong in both
directions (earth-search #9, #66, #71). Dark, well-understood surfaces settle it: the red
reflectance of vegetation and water is a few percent, so the 10th percentile of their red
DNs sits far below 1000 once the offset is removed and above 1000 while it is still there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: SCL classes whose red reflectance is reliably low: vegetation and water
DARK_CLASSES = (4, 6)
MIN_PIXELS = 2000
REMOVED_BELOW = 900     # p10 below this: the 1000 is already gone (offset 0)
PRESENT_FROM = 1050     # p10 at or above this: the 1000 is still there (offset −0.1)
#: the decimated view read for the check: about this many pixels on a side
VIEW_SIZE = 1024


@dataclass(frozen=True)
class OffsetDecision:
    """The offset to apply and how it was reached, for the task log and the STAC item."""

    offset: float
    catalog_offset: float
    verdict: str  # "verified", "corrected", "unverified", "not checked"
    detail: str
    red_p10: float | None = None
    pixels: int = 0

    @property
    def corrected(self) -> bool:
        return self.verdict == "corrected"

    def to_dict(self) -> dict:
        return {"offset": self.offset, "catalog_offset": self.catalog_offset,
                "verdict": self.verdict, "detail": self.detail, "red_p10": self.red_p10,
                "pixels": self.pixels}


def decide(red_dn: np.ndarray, scl: np.ndarray, catalog_offset: float,
           scale: float) -> OffsetDecision:
    """Decide the offset from co-registered decimated views of red DNs and SCL classes."""
    dark = np.isin(scl, DARK_CLASSES) & (red_dn > 0)
    pixels = int(dark.sum())
    shifted = -1000.0 * scale  # the baseline 04.00 offset in reflectance units (−0.1)
    if pixels < MIN_PIXELS:
        return OffsetDecision(
            catalog_offset, catalog_offset, "unverified",
            f"offset {catalog_offset:g} unverified: only {pixels} vegetation/water pixels "
            f"in the overview (need {MIN_PIXELS})", None, pixels)
    p10 = float(np.percentile(red_dn[dark], 10))
    if p10 < REMOVED_BELOW:
        found, why = 0.0, "the +1000 is already removed"
    elif p10 >= PRESENT_FROM:
        found, why = shifted, "the DNs still carry +1000"
    else:
        return OffsetDecision(
            catalog_offset, catalog_offset, "unverified",
            f"offset {catalog_offset:g} unverified: 10th percentile of red over {pixels} "
            f"vegetation/water pixels is {p10:.0f} DN, between {REMOVED_BELOW} and "
            f"{PRESENT_FROM}", p10, pixels)
    evidence = (f"10th percentile of red over {pixels} vegetation/water pixels is "
                f"{p10:.0f} DN: {why}")
    if np.isclose(found, catalog_offset):
        return OffsetDecision(found, catalog_offset, "verified",
                              f"offset {found:g} verified: {evidence}", p10, pixels)
    return OffsetDecision(found, catalog_offset, "corrected",
                          f"offset corrected from {catalog_offset:g} to {found:g}: {evidence}",
                          p10, pixels)


def not_checked(catalog_offset: float, why: str) -> OffsetDecision:
    return OffsetDecision(catalog_offset, catalog_offset, "not checked", why)
