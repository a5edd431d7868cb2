"""The products, block by block: compiled loops over numpy arrays (kernels.jit), one pass
per product and no temporaries; no I/O (DESIGN.md "Outputs").

Reflectance = DN × scale + offset, clamped at 0 (as Sentinel Hub's harmonized values).
The offset matters: from processing baseline 04.00 on, DNs carry +1000 and an NDVI that
ignores it is biased towards 0 (red and NIR both look 0.1 brighter).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from qgis_rsbatch.core import products

from .kernels import jit

#: SCL classes masked out of the indices (products.MASKED_SCL)
MASKED_SCL = np.array(products.MASKED_SCL, dtype=np.uint8)
#: RGB is stored as reflectance × 10000 (band scale 0.0001, offset 0 in the file)
RGB_QUANTIFICATION = 10000.0


def _offset_dn(scale: float, offset: float) -> int | None:
    """The offset in DNs when it is a whole number of them (−1000 for baseline 04.00)."""
    shift = offset / scale
    return round(shift) if abs(shift - round(shift)) < 1e-6 and shift <= 0 else None


def cloud_mask(scl: np.ndarray) -> np.ndarray:
    """True where the scene classification says the pixel is unusable for an index."""
    lookup = np.zeros(256, dtype=bool)
    lookup[MASKED_SCL] = True
    return lookup.take(scl)


# --- compiled per-pixel loops (kernels.jit): one pass over a strip, no temporaries -------
# `masked` and `inside` may be None (numba compiles that case without the test), and a
# whole-DN offset (`_offset_dn`) is passed as `low` = −shift ≥ 0, or −1 for none.

@jit(inline="always")
def _reflectance32(dn: Any, scale: float, offset: float, low: int) -> Any:
    """Reflectance as float32, clamped at 0. With a whole-DN offset it is taken in
    integers, exactly: max(DN − low, 0) is reflectance / scale. Otherwise DN × scale +
    offset in float64 (where float32 would misjudge values near 0), rounded once."""
    if low >= 0:
        above = np.int64(dn) - low
        return np.float32(above if above > 0 else 0)
    return np.float32(max(dn * scale + offset, 0.0))


@jit(inline="always")
def _void(masked: Any, inside: Any, row: int, col: int) -> bool:
    """Masked (cloud, shadow …) or outside the AOI."""
    if masked is not None and masked[row, col]:
        return True
    return inside is not None and not inside[row, col]


@jit
def _normalized_difference(a: Any, b: Any, scale: float, offset: float, low: int,
                           masked: Any, inside: Any, out: Any) -> None:
    nan = np.float32(np.nan)
    for row in range(a.shape[0]):
        for col in range(a.shape[1]):
            dn_a, dn_b = a[row, col], b[row, col]
            if dn_a == 0 or dn_b == 0 or _void(masked, inside, row, col):
                out[row, col] = nan
                continue
            fa = _reflectance32(dn_a, scale, offset, low)
            fb = _reflectance32(dn_b, scale, offset, low)
            out[row, col] = (fa - fb) / (fa + fb)  # both 0: 0/0 is NaN


@jit
def _evi(nir: Any, red: Any, blue: Any, scale: float, offset: float, masked: Any,
         inside: Any, out: Any) -> None:
    nan = np.float32(np.nan)
    for row in range(nir.shape[0]):
        for col in range(nir.shape[1]):
            dn_n, dn_r, dn_b = nir[row, col], red[row, col], blue[row, col]
            if dn_n == 0 or dn_r == 0 or dn_b == 0 or _void(masked, inside, row, col):
                out[row, col] = nan
                continue
            n = max(dn_n * scale + offset, 0.0)
            r = max(dn_r * scale + offset, 0.0)
            b = max(dn_b * scale + offset, 0.0)
            denominator = n + 6.0 * r - 7.5 * b + 1.0
            out[row, col] = nan if denominator == 0 else 2.5 * (n - r) / denominator


@jit
def _savi(nir: Any, red: Any, scale: float, offset: float, masked: Any, inside: Any,
          out: Any) -> None:
    nan = np.float32(np.nan)
    for row in range(nir.shape[0]):
        for col in range(nir.shape[1]):
            dn_n, dn_r = nir[row, col], red[row, col]
            if dn_n == 0 or dn_r == 0 or _void(masked, inside, row, col):
                out[row, col] = nan
                continue
            n = _reflectance32(dn_n, scale, offset, -1)
            r = _reflectance32(dn_r, scale, offset, -1)
            out[row, col] = (n - r) * np.float32(1.5) / (n + r + np.float32(0.5))


@jit
def _rgb(red: Any, green: Any, blue: Any, scale: float, offset: float, low: int,
         inside: Any, out: Any) -> None:
    for row in range(red.shape[0]):
        for col in range(red.shape[1]):
            dns = (red[row, col], green[row, col], blue[row, col])
            void = dns[0] == 0 or dns[1] == 0 or dns[2] == 0 or _void(None, inside, row, col)
            for band in range(3):
                if void:
                    out[band, row, col] = 0
                elif low >= 0:  # reflectance × 10000 is DN − low: integer arithmetic
                    out[band, row, col] = max(np.int64(dns[band]) - low, 1)  # valid: ≥ 1
                else:
                    value = _reflectance32(dns[band], scale, offset, -1)
                    value = np.rint(value * np.float32(RGB_QUANTIFICATION))
                    out[band, row, col] = min(max(value, np.float32(1)), np.float32(65535))


def _low(scale: float, offset: float) -> int:
    """The kernels' `low`: −(whole-DN offset), or −1 when the offset is not whole DNs."""
    shift = _offset_dn(scale, offset)
    return -1 if shift is None else -shift


def reflectance(dn: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """Surface reflectance as float32, clamped at 0 (computed in float64: the general path
    for offsets that are not whole DNs, where float32 would misjudge values near 0)."""
    out = dn * scale + offset
    np.maximum(out, 0, out=out)
    return out.astype(np.float32)


def normalized_difference(a: np.ndarray, b: np.ndarray, scale: float, offset: float,
                          masked: np.ndarray | None = None,
                          inside: np.ndarray | None = None) -> np.ndarray:
    """(A − B)/(A + B) of reflectances; NaN where no data, masked or outside the AOI.

    `masked` is True where the pixel is cloud, shadow or otherwise unusable (`cloud_mask`).
    When the offset is a whole number of DNs the ratio is taken of DN + offset directly:
    the scale cancels, and the arithmetic is exact.
    """
    out = np.empty(a.shape, np.float32)
    _normalized_difference(a, b, scale, offset, _low(scale, offset), masked, inside, out)
    return out


def ndvi(red: np.ndarray, nir: np.ndarray, scale: float, offset: float,
         masked: np.ndarray | None = None, inside: np.ndarray | None = None) -> np.ndarray:
    """(NIR − Red)/(NIR + Red) (B08, B04)."""
    return normalized_difference(nir, red, scale, offset, masked, inside)


def evi(nir: np.ndarray, red: np.ndarray, blue: np.ndarray, scale: float, offset: float,
        masked: np.ndarray | None = None, inside: np.ndarray | None = None) -> np.ndarray:
    """2.5 (N − R)/(N + 6R − 7.5B + 1) of reflectances (B08, B04, B02); NaN where the
    denominator is 0, besides NDVI's rules.

    EVI is unbounded: a bright blue (haze, snow) brings the denominator near 0, where
    float32 arithmetic would lose the digits, so it is computed in float64 and rounded
    once to float32.
    """
    out = np.empty(nir.shape, np.float32)
    _evi(nir, red, blue, scale, offset, masked, inside, out)
    return out


def savi(nir: np.ndarray, red: np.ndarray, scale: float, offset: float,
         masked: np.ndarray | None = None, inside: np.ndarray | None = None) -> np.ndarray:
    """1.5 (N − R)/(N + R + 0.5) of reflectances (B08, B04), soil factor L = 0.5; the
    denominator is ≥ 0.5, as reflectances are clamped at 0."""
    out = np.empty(nir.shape, np.float32)
    _savi(nir, red, scale, offset, masked, inside, out)
    return out


def rgb(red: np.ndarray, green: np.ndarray, blue: np.ndarray, scale: float, offset: float,
        inside: np.ndarray | None = None) -> np.ndarray:
    """(3, rows, cols) uint16 reflectance × 10000 in R, G, B order; 0 where any band has no data.

    A valid pixel whose reflectance clamps to 0 is stored as 1, so it stays distinct from nodata.
    Not cloud-masked, by design: a tile's or a date's true colour is for looking at, clouds
    included; the indices' cloud mask is written beside it (cloudflags.py) so that its median
    composite leaves the clouds out.
    """
    out = np.empty((3, *red.shape), dtype=np.uint16)
    whole = np.isclose(scale * RGB_QUANTIFICATION, 1)
    _rgb(red, green, blue, scale, offset, _low(scale, offset) if whole else -1, inside, out)
    return out


Bands = Mapping[str, np.ndarray]
#: each product's computation from a strip of bands (band key → DNs on the 10 m grid):
#: (bands, scale, offset, masked, inside) → (count, rows, cols); keyed by products.NAMES
COMPUTE: dict[str, Callable[..., np.ndarray]] = {
    "rgb": lambda d, s, o, m, i: rgb(d["red"], d["green"], d["blue"], s, o, i),
    "ndvi": lambda d, s, o, m, i: ndvi(d["red"], d["nir"], s, o, m, i)[None],
    "ndwi": lambda d, s, o, m, i: normalized_difference(d["green"], d["nir"], s, o, m, i)[None],
    "ndmi": lambda d, s, o, m, i: normalized_difference(d["nir"], d["swir16"], s, o, m, i)[None],
    "nbr": lambda d, s, o, m, i: normalized_difference(d["nir"], d["swir22"], s, o, m, i)[None],
    "evi": lambda d, s, o, m, i: evi(d["nir"], d["red"], d["blue"], s, o, m, i)[None],
    "savi": lambda d, s, o, m, i: savi(d["nir"], d["red"], s, o, m, i)[None],
}


def compute(product: str, bands: Bands, scale: float, offset: float,
            masked: np.ndarray | None = None, inside: np.ndarray | None = None) -> np.ndarray:
    """`product` (products.NAMES) for a strip: (count, rows, cols) in the product's dtype.
    `masked` applies only to cloud-masked products (products.Product.cloud_masked)."""
    spec = products.get(product)
    return COMPUTE[product](bands, scale, offset, masked if spec.cloud_masked else None,
                           inside)
