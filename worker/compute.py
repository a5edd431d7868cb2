"""The products, block by block: pure numpy, no I/O (DESIGN.md "Outputs").

Reflectance = DN × scale + offset, clamped at 0 (as Sentinel Hub's harmonized values).
The offset matters: from processing baseline 04.00 on, DNs carry +1000 and an NDVI that
ignores it is biased towards 0 (red and NIR both look 0.1 brighter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np

from qgis_rsbatch.core import products

#: SCL classes masked out of the indices (products.MASKED_SCL)
MASKED_SCL = np.array(products.MASKED_SCL, dtype=np.uint8)
#: RGB is stored as reflectance × 10000 (band scale 0.0001, offset 0 in the file)
RGB_QUANTIFICATION = 10000.0


#: pixels computed at once: a chunk's temporaries (a few float32 rows) stay in the CPU's
#: cache, where a whole strip's would stream through memory and fault in fresh pages
CHUNK_PIXELS = 1 << 18


def row_chunks(shape: tuple[int, ...]) -> Iterator[slice]:
    """Slices of rows of a (…, rows, cols) block, about CHUNK_PIXELS pixels each."""
    rows, cols = shape[-2], shape[-1]
    step = max(1, CHUNK_PIXELS // max(cols, 1))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


def _rows(array: np.ndarray | None, rows: slice) -> np.ndarray | None:
    return None if array is None else array[..., rows, :]


def reflectance(dn: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """Surface reflectance as float32, clamped at 0 (computed in float64: the general path
    for offsets that are not whole DNs, where float32 would misjudge values near 0)."""
    out = dn * scale + offset
    np.maximum(out, 0, out=out)
    return out.astype(np.float32)


def _offset_dn(scale: float, offset: float) -> int | None:
    """The offset in DNs when it is a whole number of them (−1000 for baseline 04.00)."""
    shift = offset / scale
    return round(shift) if abs(shift - round(shift)) < 1e-6 and shift <= 0 else None


def _above(dn: np.ndarray, low: int) -> np.ndarray:
    """max(DN, low) − low in the DNs' own unsigned type (a subtraction that stops at 0:
    numpy's integer maximum is scalar code, this is three vectorised passes)."""
    if dn.dtype.kind != "u" or low > np.iinfo(dn.dtype).max:
        return np.subtract(np.maximum(dn, low), low, dtype=np.promote_types(dn.dtype, np.int64))
    out = np.subtract(dn, dn.dtype.type(low))  # wraps where DN < low …
    out *= dn >= dn.dtype.type(low)            # … which becomes 0
    return out


def _shifted(dn: np.ndarray, shift: int) -> np.ndarray:
    """max(DN + shift, 0) as float32: reflectance / scale, exact for 16-bit DNs (taken in
    integers and cast once)."""
    return _above(dn, -shift).astype(np.float32)


def cloud_mask(scl: np.ndarray) -> np.ndarray:
    """True where the scene classification says the pixel is unusable for an index."""
    lookup = np.zeros(256, dtype=bool)
    lookup[MASKED_SCL] = True
    return lookup.take(scl)


def _index(kernel: Callable[[tuple[np.ndarray, ...], np.ndarray], None],
           dns: tuple[np.ndarray, ...], masked: np.ndarray | None,
           inside: np.ndarray | None) -> np.ndarray:
    """A float32 index a chunk of rows at a time: `kernel(DN chunks, out chunk)` writes a
    chunk's values, then `_masked` sets NaN where the chunk has no data, is masked or lies
    outside the AOI."""
    out = np.empty(dns[0].shape, np.float32)
    for rows in row_chunks(out.shape):
        chunk = tuple(dn[rows] for dn in dns)
        kernel(chunk, out[rows])
        _masked(out[rows], chunk, _rows(masked, rows), _rows(inside, rows))
    return out


def normalized_difference(a: np.ndarray, b: np.ndarray, scale: float, offset: float,
                          masked: np.ndarray | None = None,
                          inside: np.ndarray | None = None) -> np.ndarray:
    """(A − B)/(A + B) of reflectances; NaN where no data, masked or outside the AOI.

    `masked` is True where the pixel is cloud, shadow or otherwise unusable (`cloud_mask`).
    When the offset is a whole number of DNs the ratio is taken of DN + offset directly:
    the scale cancels, and the arithmetic is exact.
    """
    shift = _offset_dn(scale, offset)

    def kernel(dns: tuple[np.ndarray, ...], out: np.ndarray) -> None:
        if shift is None:
            fa, fb = (reflectance(dn, scale, offset) for dn in dns)
        else:
            fa, fb = (_shifted(dn, shift) for dn in dns)
        total = fa + fb
        np.subtract(fa, fb, out=out)
        with np.errstate(divide="ignore", invalid="ignore"):
            out /= total  # where A + B = 0 both are 0, and 0/0 is already NaN

    return _index(kernel, (a, b), masked, inside)


def _masked(out: np.ndarray, dns: tuple[np.ndarray, ...], masked: np.ndarray | None,
            inside: np.ndarray | None) -> None:
    """NaN in `out` where any input DN is 0 (no data), where `masked`, and outside the AOI."""
    invalid = _no_data(dns, inside)
    if masked is not None:
        invalid |= masked
    np.copyto(out, np.float32(np.nan), where=invalid)


def _no_data(dns: tuple[np.ndarray, ...], inside: np.ndarray | None) -> np.ndarray:
    """True where any input DN is 0 or the pixel lies outside the AOI."""
    invalid = dns[0] == 0
    for dn in dns[1:]:
        invalid |= dn == 0
    if inside is not None:
        invalid |= ~inside
    return invalid


def ndvi(red: np.ndarray, nir: np.ndarray, scale: float, offset: float,
         masked: np.ndarray | None = None, inside: np.ndarray | None = None) -> np.ndarray:
    """(NIR − Red)/(NIR + Red) (B08, B04)."""
    return normalized_difference(nir, red, scale, offset, masked, inside)


def evi(nir: np.ndarray, red: np.ndarray, blue: np.ndarray, scale: float, offset: float,
        masked: np.ndarray | None = None, inside: np.ndarray | None = None) -> np.ndarray:
    """2.5 (N − R)/(N + 6R − 7.5B + 1) of reflectances (B08, B04, B02); NaN where the
    denominator is 0, besides NDVI's rules.

    EVI is unbounded: a bright blue (haze, snow) brings the denominator near 0, where
    float32 arithmetic would lose the digits, so it is computed in float64 a chunk of rows
    at a time and rounded once to float32.
    """
    def kernel(dns: tuple[np.ndarray, ...], out: np.ndarray) -> None:
        n, r, b = (np.maximum(dn * scale + offset, 0.0) for dn in dns)
        denominator = n + 6.0 * r - 7.5 * b + 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            value = 2.5 * (n - r) / denominator
        value[denominator == 0] = np.nan
        out[...] = value

    return _index(kernel, (nir, red, blue), masked, inside)


def savi(nir: np.ndarray, red: np.ndarray, scale: float, offset: float,
         masked: np.ndarray | None = None, inside: np.ndarray | None = None) -> np.ndarray:
    """1.5 (N − R)/(N + R + 0.5) of reflectances (B08, B04), soil factor L = 0.5."""
    def kernel(dns: tuple[np.ndarray, ...], out: np.ndarray) -> None:
        n, r = (reflectance(dn, scale, offset) for dn in dns)
        denominator = n + r + np.float32(0.5)  # ≥ 0.5: reflectances are clamped at 0
        np.subtract(n, r, out=out)
        out *= np.float32(1.5)
        out /= denominator

    return _index(kernel, (nir, red), masked, inside)


def rgb(red: np.ndarray, green: np.ndarray, blue: np.ndarray, scale: float, offset: float,
        inside: np.ndarray | None = None) -> np.ndarray:
    """(3, rows, cols) uint16 reflectance × 10000 in R, G, B order; 0 where any band has no data.

    A valid pixel whose reflectance clamps to 0 is stored as 1, so it stays distinct from nodata.
    Not cloud-masked, by design: a tile's or a date's true colour is for looking at, clouds
    included; the indices' cloud mask is written beside it (cloudflags.py) so that its median
    composite leaves the clouds out.
    """
    out = np.empty((3, *red.shape), dtype=np.uint16)
    shift = _offset_dn(scale, offset) if np.isclose(scale * RGB_QUANTIFICATION, 1) else None
    for rows in row_chunks(red.shape):
        dns = (red[rows], green[rows], blue[rows])
        nodata = _no_data(dns, _rows(inside, rows))
        for index, dn in enumerate(dns):
            band = out[index, rows]
            if shift is not None:  # reflectance × 10000 is DN + shift: integer arithmetic
                # max(DN + shift, 1): a valid pixel stays ≥ 1
                np.add(_above(dn, 1 - shift), 1, out=band, casting="unsafe")
            else:
                values = reflectance(dn, scale, offset)
                values *= np.float32(RGB_QUANTIFICATION)
                np.rint(values, out=values)
                np.clip(values, 1, 65535, out=values)
                band[...] = values
            band *= ~nodata  # 0 where any band has no data (a product, not a masked copy)
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
