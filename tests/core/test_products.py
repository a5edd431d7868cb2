"""The product registry is the one source of a product's facts: the contract, the planner,
the estimate, the catalog's band layout and the CLI all answer from it."""

from __future__ import annotations

import pytest

from qgis_rsbatch import cli
from qgis_rsbatch.core import catalog, estimate, products
from qgis_rsbatch.core.contract import Cell, Job
from qgis_rsbatch.core.errors import InvalidInput
from qgis_rsbatch.core.seed import parse_prefix

ALL_BANDS = {key: f"/data/{key}.tif" for key in products.BAND_KEYS}


def cell(products_, cloud_mask=True, bands=None, **fields):
    return Cell.from_dict({"job_id": "j", "tile": "32TMT", "date": "2024-06-01",
                           "bands": bands or ALL_BANDS, "products": products_,
                           "output": "/tmp/out", "cloud_mask": cloud_mask, **fields})


def test_the_issue_s_products_with_their_bands_and_resolutions():
    assert products.NAMES == ("rgb", "ndvi", "ndwi", "ndmi", "nbr", "evi", "savi")
    expect = {"ndvi": ("B08", "B04"), "ndwi": ("B03", "B08"), "ndmi": ("B08", "B11"),
              "nbr": ("B08", "B12"), "evi": ("B08", "B04", "B02"), "savi": ("B08", "B04")}
    for name, ids in expect.items():
        spec = products.get(name)
        assert spec.band_names() == ids
        assert (spec.dtype, spec.count, spec.cloud_masked, spec.is_index) == (
            "float32", 1, True, True)
        assert spec.nodata != spec.nodata  # NaN
        assert spec.style.kind == "ramp" and len(spec.style.colors()) == 11
    assert {k: b.resolution for k, b in products.BANDS.items()} == {
        "blue": 10, "green": 10, "red": 10, "nir": 10, "swir16": 20, "swir22": 20, "scl": 20}
    rgb = products.get("rgb")
    assert (rgb.style.kind, rgb.style.minimum, rgb.style.maximum) == ("rgb-stretch", 0.0, 0.3)
    assert products.LAYER_ORDER[-1] == "rgb" and products.LAYER_ORDER[0] == "ndvi"


@pytest.mark.parametrize(("chosen", "mask", "needed"), [
    (["ndvi"], True, ("red", "nir", "scl")),
    (["ndmi"], True, ("nir", "swir16", "scl")),
    (["nbr"], False, ("nir", "swir22")),
    (["evi", "ndwi"], True, ("blue", "green", "red", "nir", "scl")),
    (["rgb"], True, ("blue", "green", "red")),      # RGB is never cloud-masked
])
def test_a_cell_needs_only_the_bands_its_products_read(chosen, mask, needed):
    assert cell(chosen, mask).needed_bands() == needed
    only = {k: v for k, v in ALL_BANDS.items() if k in needed}
    assert cell(chosen, mask, bands=only).needed_bands() == needed


def test_a_missing_band_names_the_product_that_needs_it():
    bands = {k: v for k, v in ALL_BANDS.items() if k != "swir22"}
    with pytest.raises(InvalidInput, match=r"'bands.swir22' is missing; product\(s\) nbr need"):
        cell(["ndvi", "nbr"], bands=bands)


def test_products_are_parsed_in_registry_order_and_unknown_ones_named():
    assert products.parse_products("evi, NDVI,ndmi") == ("ndvi", "ndmi", "evi")
    assert cell("savi,rgb").products == ("rgb", "savi")
    with pytest.raises(InvalidInput, match=r"unknown product\(s\) ndxi; known: rgb, ndvi, ndwi"):
        products.parse_products("ndvi,ndxi")
    with pytest.raises(InvalidInput, match="choose at least one"):
        products.parse_products(" , ")


def test_the_cli_offers_exactly_the_registry_s_products(capsys, tmp_path):
    parser = cli._parser()
    run = parser._subparsers._group_actions[0].choices["run"]
    option = next(a for a in run._actions if "--products" in a.option_strings)
    assert option.default == "rgb,ndvi"
    assert f"some of: {', '.join(products.NAMES)}" in option.help
    code = cli.main(["run", "--aoi", "7.7,47.8,7.71,47.81", "--start", "2024-06-01",
                     "--end", "2024-06-02", "--products", "ndvi,ndmx", "--out",
                     str(tmp_path), "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0] == ("rsbatch: error: --products: unknown product(s) ndmx; known: "
                      + ", ".join(products.NAMES))


def test_estimates_follow_the_registry_bytes_and_band_resolutions():
    job = Job("j", (cell(["ndvi", "ndmi"]),))
    guess = estimate.estimate(job)
    pixels = 10980 * 10980
    assert guess.pixels == pixels
    out = pixels * (products.get("ndvi").bytes_per_pixel + products.get("ndmi").bytes_per_pixel)
    assert guess.output_gb == pytest.approx(out / 1e9)
    # red, nir at 10 m; B11 and SCL at 20 m (a quarter of the bytes each)
    assert guess.input_gb == pytest.approx(pixels * estimate.INPUT_BYTES_PER_PIXEL * 2.5 / 1e9)
    more = estimate.estimate(Job("j", (cell(["ndvi", "ndmi", "evi"]),)))
    assert more.vcpu_hours > guess.vcpu_hours and more.output_gb > guess.output_gb


def test_20_m_bands_live_in_r20m_of_the_seed_layout():
    prefix = parse_prefix("s3://sentinel-s2-l2a/tiles/32/T/MT/2024/6/1/0/R10m/")
    root = "s3://sentinel-s2-l2a/tiles/32/T/MT/2024/6/1/0/"
    assert prefix.band_href("swir16") == root + "R20m/B11.jp2"
    assert prefix.band_href("swir22") == root + "R20m/B12.jp2"
    assert prefix.band_href("nir") == root + "R10m/B08.jp2"
    assert catalog.jp2_folder("B12") == "R20m" and catalog.jp2_folder("B02") == "R10m"


def test_earth_search_swir_assets_are_found_by_name_and_in_their_jp2_folder():
    from tests.core.test_catalog import strip_cogs
    from tests.stac_server import make_item

    scene = catalog.scene_from_item(make_item())
    assert scene.bands["swir16"].endswith("/B11.tif") and scene.bands["swir22"].endswith(
        "/B12.tif")
    jp2 = catalog.scene_from_item(strip_cogs(make_item()))
    assert jp2.bands["swir16"].endswith("/0/R20m/B11.jp2")
    assert jp2.bands["swir22"].endswith("/0/R20m/B12.jp2")


def products_table() -> list[str]:
    """README's products table, as the registry writes it."""
    pixels = 10980 * 10980
    rows = []
    for p in products.PRODUCTS.values():
        bands = ", ".join(f"{products.BANDS[k].name} ({products.BANDS[k].resolution} m)"
                          for k in p.bands)
        est = "" if p.measured else " (est.)"
        rows.append(f"| `{p.name}` | {p.formula} | {bands} | "
                    f"{p.bytes_per_pixel * pixels / 1e6:.0f} MB{est} | "
                    f"{p.seconds_per_tile:g}{est} |")
    return rows


def test_readme_products_table_is_the_registry_s():
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text().splitlines()
    start = readme.index("<!-- products table: from qgis_rsbatch/core/products.py -->") + 3
    assert readme[start: start + len(products.NAMES)] == products_table()
    assert not readme[start + len(products.NAMES)].startswith("|")
