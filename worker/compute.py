"""The products, block by block: pure numpy, no I/O (DESIGN.md "Outputs").

Reflectance = DN × scale + offset, clamped at 0 (as Sentinel Hub's harmonized values).
The offset matters: from processing baseline 04.00 on, DNs carry +1000 and an NDVI that
ignores it is biased towards 0 (red and NIR both look 0.1 brighter).
"""

from __future__ import annotations

import numpy as np

#: SCL classes masked out of NDVI: no data, saturated, cloud shadow, cloud medium/high, cirrus
MASKED_SCL = np.array([0, 1, 3, 8, 9, 10], dtype=np.uint8)
#: RGB is stored as reflectance × 10000 (band scale 0.0001, offset 0 in the file)
RGB_QUANTIFICATION = 10000.0


def reflectance(dn: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """Surface reflectance as float32, clamped at 0."""
    out = dn.astype(np.float32)
    out *= np.float32(scale)
    out += np.float32(offset)
    np.maximum(out, 0, out=out)
    return out


def cloud_mask(scl: np.ndarray) -> np.ndarray:
    """True where the scene classification says the pixel is unusable for NDVI."""
    lookup = np.zeros(256, dtype=bool)
    lookup[MASKED_SCL] = True
    return lookup[scl]


def ndvi(red: np.ndarray, nir: np.ndarray, scale: float, offset: float,
         scl: np.ndarray | None = None, inside: np.ndarray | None = None) -> np.ndarray:
    """(NIR − Red)/(NIR + Red) of reflectances; NaN where no data, masked or outside the AOI."""
    r = reflectance(red, scale, offset)
    n = reflectance(nir, scale, offset)
    total = n + r
    invalid = (red == 0) | (nir == 0) | (total == 0)
    if scl is not None:
        invalid |= cloud_mask(scl)
    if inside is not None:
        invalid |= ~inside
    with np.errstate(divide="ignore", invalid="ignore"):
        n -= r
        n /= total
    n[invalid] = np.nan
    return n


def rgb(red: np.ndarray, green: np.ndarray, blue: np.ndarray, scale: float, offset: float,
        inside: np.ndarray | None = None) -> np.ndarray:
    """(3, rows, cols) uint16 reflectance × 10000 in R, G, B order; 0 where any band has no data.

    A valid pixel whose reflectance clamps to 0 is stored as 1, so it stays distinct from nodata.
    """
    out = np.empty((3, *red.shape), dtype=np.uint16)
    nodata = (red == 0) | (green == 0) | (blue == 0)
    if inside is not None:
        nodata |= ~inside
    for index, dn in enumerate((red, green, blue)):
        values = reflectance(dn, scale, offset)
        values *= np.float32(RGB_QUANTIFICATION)
        np.rint(values, out=values)
        np.clip(values, 1, 65535, out=values)
        band = values.astype(np.uint16)
        band[nodata] = 0
        out[index] = band
    return out
