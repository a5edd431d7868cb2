"""The product arithmetic against an independent float64 computation of DESIGN.md's formulas."""

from __future__ import annotations

import numpy as np
import pytest

from worker import compute


def reference_ndvi(red, nir, scale, offset, scl=None):
    """DESIGN.md's NDVI, written plainly in float64."""
    r = np.maximum(red.astype(np.float64) * scale + offset, 0)
    n = np.maximum(nir.astype(np.float64) * scale + offset, 0)
    with np.errstate(all="ignore"):
        out = (n - r) / (n + r)
    bad = (red == 0) | (nir == 0) | (n + r == 0)
    if scl is not None:
        bad |= np.isin(scl, [0, 1, 3, 8, 9, 10])
    out[bad] = np.nan
    return out


@pytest.fixture
def dns():
    rng = np.random.default_rng(42)
    red = rng.integers(0, 6000, (300, 400), dtype=np.uint16)
    nir = rng.integers(0, 9000, (300, 400), dtype=np.uint16)
    red[:5] = 0                      # no data
    nir[:, :3] = 0
    red[10, 10:20] = 800             # below the +1000: reflectance clamps to 0
    nir[10, 10:15] = 900             # both clamp: NIR + Red = 0
    scl = rng.choice(np.arange(12, dtype=np.uint8), size=(300, 400))
    return red, nir, scl


@pytest.mark.parametrize(("scale", "offset"), [(0.0001, -0.1), (0.0001, 0.0), (0.0001, -0.05),
                                               (0.0002, -0.12345)])
def test_ndvi_matches_independent_float64(dns, scale, offset):
    red, nir, scl = dns
    got = compute.ndvi(red, nir, scale, offset, compute.cloud_mask(scl))
    want = reference_ndvi(red, nir, scale, offset, scl)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], atol=2e-6)


def test_ndvi_ignoring_the_offset_would_be_visibly_wrong(dns):
    """The +1000 biases NDVI toward 0: with vegetation DNs it is far from the truth."""
    red = np.full((4, 4), 1400, np.uint16)   # reflectance 0.04 with the offset
    nir = np.full((4, 4), 4600, np.uint16)   # 0.36
    right = compute.ndvi(red, nir, 0.0001, -0.1)
    wrong = compute.ndvi(red, nir, 0.0001, 0.0)
    assert right[0, 0] == pytest.approx((0.36 - 0.04) / 0.40, abs=1e-6)
    assert wrong[0, 0] == pytest.approx((0.46 - 0.14) / 0.60, abs=1e-6)
    assert right[0, 0] - wrong[0, 0] > 0.2


def test_ndvi_masks_every_unusable_scl_class():
    red = np.full((1, 12), 1500, np.uint16)
    nir = np.full((1, 12), 4000, np.uint16)
    scl = np.arange(12, dtype=np.uint8)[None]
    got = compute.ndvi(red, nir, 0.0001, -0.1, compute.cloud_mask(scl))
    masked = {int(c) for c in np.flatnonzero(np.isnan(got[0]))}
    assert masked == {0, 1, 3, 8, 9, 10}


def test_ndvi_outside_the_aoi_is_nan(dns):
    red, nir, _ = dns
    inside = np.zeros(red.shape, bool)
    inside[100:200, 100:200] = True
    got = compute.ndvi(red, nir, 0.0001, -0.1, inside=inside)
    assert np.isnan(got[~inside]).all()
    assert not np.isnan(got[inside]).all()


@pytest.mark.parametrize(("scale", "offset"), [(0.0001, -0.1), (0.0001, 0.0), (0.0002, -0.1)])
def test_rgb_is_reflectance_times_10000(dns, scale, offset):
    red, nir, _ = dns
    green = (red // 2 + 7).astype(np.uint16)
    blue = nir.copy()
    got = compute.rgb(red, green, blue, scale, offset)
    assert got.dtype == np.uint16 and got.shape == (3, *red.shape)
    nodata = (red == 0) | (green == 0) | (blue == 0)
    for band, dn in zip(got, (red, green, blue)):
        want = np.clip(np.rint(np.maximum(dn * scale + offset, 0) * 10000), 1, 65535)
        np.testing.assert_array_equal(band[~nodata], want[~nodata])
        assert (band[nodata] == 0).all()


def test_rgb_keeps_dark_valid_pixels_distinct_from_nodata():
    dn = np.array([[0, 500, 1000, 1001, 3000]], np.uint16)
    got = compute.rgb(dn, dn, dn, 0.0001, -0.1)
    np.testing.assert_array_equal(got[:, 0], [[0, 1, 1, 1, 2000]] * 3)
