"""The spectral indices against independent float64 references of the issue's formulas, on
random DNs and on generated scenes whose B11/B12 are 20 m bands (repeated 2 × 2)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from qgis_rsbatch.core import products
from qgis_rsbatch.core.contract import Status
from tests.worker.test_process import make_cell, read_band
from worker import compute
from worker.process import process_cell
from worker.reader import BandSet

MASKED = [0, 1, 3, 8, 9, 10]
#: the issue's bound on every index: max abs error against float64
TOLERANCE = 1e-5


def _refl(dn, scale, offset):
    return np.maximum(dn.astype(np.float64) * scale + offset, 0)


def reference(product, dns, scale, offset, scl=None, inside=None):
    """The index in float64, written plainly from the issue's table; NaN by NDVI's rules."""
    def r(key):
        return _refl(dns[key], scale, offset)

    with np.errstate(all="ignore"):
        if product == "ndvi":
            num, den = r("nir") - r("red"), r("nir") + r("red")
        elif product == "ndwi":
            num, den = r("green") - r("nir"), r("green") + r("nir")
        elif product == "ndmi":
            num, den = r("nir") - r("swir16"), r("nir") + r("swir16")
        elif product == "nbr":
            num, den = r("nir") - r("swir22"), r("nir") + r("swir22")
        elif product == "evi":
            num = 2.5 * (r("nir") - r("red"))
            den = r("nir") + 6 * r("red") - 7.5 * r("blue") + 1
        elif product == "savi":
            num, den = 1.5 * (r("nir") - r("red")), r("nir") + r("red") + 0.5
        out = num / den
    bad = den == 0
    for key in products.get(product).bands:
        bad |= dns[key] == 0
    if scl is not None:
        bad |= np.isin(scl, MASKED)
    if inside is not None:
        bad |= ~inside
    out[bad] = np.nan
    return out


def assert_index_matches(got, want):
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))  # masks exact
    ok = ~np.isnan(want)
    assert ok.any()
    # float32 holds |x| < 128 to better than 1e-5; beyond that (EVI only) its own precision
    np.testing.assert_allclose(got[ok], want[ok], atol=TOLERANCE, rtol=1.2e-7)


INDICES = [name for name in products.NAMES if products.get(name).is_index]


@pytest.fixture
def dns():
    rng = np.random.default_rng(7)
    shape = (200, 300)
    bands = {key: rng.integers(0, 9000, shape, dtype=np.uint16)
             for key in ("blue", "green", "red", "nir", "swir16", "swir22")}
    bands["red"][:4] = 0                                 # no data in one band
    bands["swir16"][:, :3] = 0
    bands["nir"][10, 10:20] = 800                        # clamps to 0 with the +1000
    bands["red"][10, 10:15] = 900                        # both clamp: 0/0
    bands["blue"][20, :50] = 65000                       # EVI's denominator < 0
    # EVI's denominator exactly 0: N = 0.1, R = 0, B = 0.1467 (N + 6R - 7.5B + 1 = 0)
    bands["nir"][30, :10], bands["red"][30, :10], bands["blue"][30, :10] = 2000, 1000, 2467
    scl = rng.choice(np.arange(12, dtype=np.uint8), size=shape)
    return bands, scl


@pytest.mark.parametrize("product", INDICES)
@pytest.mark.parametrize(("scale", "offset"), [(0.0001, -0.1), (0.0001, 0.0), (0.0002, -0.12345)])
def test_each_index_matches_its_float64_formula(dns, product, scale, offset):
    bands, scl = dns
    got = compute.compute(product, bands, scale, offset, compute.cloud_mask(scl))
    assert got.shape == (1, *scl.shape)
    assert_index_matches(got[0], reference(product, bands, scale, offset, scl))


def test_registry_and_compute_functions_name_the_same_products():
    assert set(compute.COMPUTE) == set(products.NAMES)


@pytest.fixture(scope="module")
def odd_scene(scene_factory):
    """An odd-sized scene (601 px: its 20 m bands are 301 px, the last half outside)."""
    return scene_factory(size=601, cloud=0.3, boa_offset=1000, seed=5, nodata_corner=True)


def upsampled(path, shape):
    """A 20 m band on the 10 m grid, independently: each pixel becomes a 2 × 2 block."""
    coarse, profile = read_band(path)
    assert profile["transform"].a == 20
    return np.kron(coarse, np.ones((2, 2), coarse.dtype))[: shape[0], : shape[1]]


def test_generated_scenes_have_b11_b12_at_20_m(odd_scene):
    with rasterio.open(odd_scene["swir16"]) as b11, rasterio.open(odd_scene["red"]) as red:
        assert b11.res == (20.0, 20.0) and red.res == (10.0, 10.0)
        assert (b11.width, b11.height) == (301, 301) and b11.dtypes == ("uint16",)
        assert b11.transform.c == red.transform.c and b11.transform.f == red.transform.f
    with rasterio.open(odd_scene["swir22"]) as b12:
        assert b12.res == (20.0, 20.0) and b12.descriptions == ("B12",)


@pytest.mark.parametrize(("row", "col"), [(0, 0), (1, 1), (37, 120), (300, 451), (599, 3)])
def test_20_m_windows_on_odd_and_even_offsets_repeat_the_right_pixels(odd_scene, row, col):
    rows, cols = 601 - row, min(150, 601 - col)
    with BandSet({k: odd_scene[k] for k in ("nir", "swir16", "swir22", "scl")}) as bands:
        got = bands.read(("nir", "swir16", "swir22", "scl"), row, col, rows, cols)
    for key in ("swir16", "swir22", "scl"):
        want = upsampled(odd_scene[key], (601, 601))[row: row + rows, col: col + cols]
        np.testing.assert_array_equal(got[key], want)


def _odd_window_aoi(col0, row0, cols, rows):
    """An AOI (EPSG:4326) whose 10 m bounding window of tile 32TMT starts at (col0, row0)."""
    to_lonlat = Transformer.from_crs(32632, 4326, always_xy=True)
    x0, y0 = 399960 + col0 * 10 + 3, 5300040 - row0 * 10 - 3
    x1, y1 = x0 + cols * 10 - 6, y0 - rows * 10 + 6
    ring = [to_lonlat.transform(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
    return {"type": "Polygon", "coordinates": [[list(p) for p in [*ring, ring[0]]]]}


def test_every_index_of_a_cell_matches_numpy_on_an_odd_window(odd_scene, tmp_path):
    col0, row0 = 151, 87   # odd: the window starts in the middle of 20 m pixels
    aoi = _odd_window_aoi(col0, row0, 300, 301)
    cell = make_cell(odd_scene, tmp_path / "out", aoi=aoi, products=INDICES)
    result = process_cell(cell)
    assert result.status is Status.SUCCEEDED
    full = {key: read_band(odd_scene[key])[0] for key in ("blue", "green", "red", "nir")}
    for key in ("swir16", "swir22"):
        full[key] = upsampled(odd_scene[key], (601, 601))
    scl = upsampled(odd_scene["scl"], (601, 601))
    for product in INDICES:
        with rasterio.open(result.outputs[product].removeprefix("file://")) as ds:
            got, t = ds.read(1), ds.transform
            assert ds.dtypes == ("float32",) and np.isnan(ds.nodata) and ds.crs.to_epsg() == 32632
        assert (round((t.c - 399960) / 10), round((5300040 - t.f) / 10)) == (col0, row0)
        assert t.a == 10 and got.shape[1] in (300, 301)
        window = (slice(row0, row0 + got.shape[0]), slice(col0, col0 + got.shape[1]))
        dns = {key: band[window] for key, band in full.items()}
        inside = np.zeros(got.shape, bool)  # the AOI rectangle covers all but its rim
        inside[1:-1, 1:-1] = True
        want = reference(product, dns, 0.0001, -0.1, scl[window])
        assert_index_matches(got[inside], want[inside])
        assert np.isnan(got[inside]).mean() < 0.8, product  # mostly valid, some cloud
        # the 20 m bands really change across the window's odd edge (not an 'any' match)
        if product in ("ndmi", "nbr"):
            assert np.nanstd(got) > 0.05


def test_an_index_needs_only_its_own_bands(odd_scene, tmp_path):
    """NDMI reads nir, swir16 and SCL: a cell without red, green, blue or B12 is valid."""
    bands = {"nir": odd_scene["nir"], "swir16": odd_scene["swir16"], "scl": odd_scene["scl"]}
    cell = make_cell(bands, tmp_path / "out", products=["ndmi"])
    assert cell.needed_bands() == ("nir", "swir16", "scl")
    result = process_cell(cell)
    with rasterio.open(result.outputs["ndmi"].removeprefix("file://")) as ds:
        got = ds.read(1)
        assert ds.descriptions[0].startswith("NDMI (N - S1) / (N + S1) (B08, B11)")
    dns = {"nir": read_band(odd_scene["nir"])[0],
           "swir16": upsampled(odd_scene["swir16"], (601, 601))}
    want = reference("ndmi", dns, 0.0001, -0.1, upsampled(odd_scene["scl"], (601, 601)))
    assert_index_matches(got, want)
