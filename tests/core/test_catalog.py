"""core.catalog: items → Scenes (per DESIGN row), run collapsing, the cloud limit, and search
through a STAC API, a static catalog and an ItemCollection, all offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from qgis_rsbatch.core import catalog
from qgis_rsbatch.core.catalog import Scene, scene_from_item, search
from qgis_rsbatch.core.errors import CatalogError, InvalidInput, MissingInput
from tests.stac_server import (
    CONFORMANCE,
    CONFORMANCE_BASIC,
    StacServer,
    make_item,
    write_item_collection,
    write_static_catalog,
)

C1, L2A = catalog.C1_L2A, catalog.L2A
Factory = Callable[..., StacServer]


def strip_cogs(item: dict) -> dict:
    """The item with only its JP2 assets, as when the COGs are missing."""
    assets = {k: v for k, v in item["assets"].items() if v.get("type") == "image/jp2"}
    return {**item, "assets": assets}


# --- Scene ------------------------------------------------------------------------------

def test_scene_round_trips_through_a_dict() -> None:
    scene = scene_from_item(make_item(cloud=None))
    data = json.loads(json.dumps(scene.to_dict()))
    assert Scene.from_dict(data) == scene
    with pytest.raises(InvalidInput, match="not a scene"):
        Scene.from_dict({"tile": "32TMT"})


def test_scene_reads_the_item() -> None:
    scene = scene_from_item(make_item("39QTA", "2023-06-28T07:24:41.632Z", sequence=1,
                                      baseline="05.09", cloud=4.5, platform="Sentinel-2A"))
    assert (scene.tile, scene.date, scene.datetime) == (
        "39QTA", "2023-06-28", "2023-06-28T07:24:41.632Z")
    assert (scene.item_id, scene.collection) == ("S2A_39QTA_20230628_1_L2A", L2A)
    assert (scene.cloud_cover, scene.sequence, scene.processing_baseline) == (4.5, 1, "05.09")
    assert (scene.platform, scene.epsg, scene.requester_pays) == ("sentinel-2a", 32639, False)
    assert set(scene.bands) == {"blue", "green", "red", "nir", "swir16", "swir22", "scl"}
    assert scene.bands["red"].endswith("/S2A_39QTA_20230628_1_L2A/B04.tif")
    assert scene.bands["scl"].endswith("/SCL.tif")


def test_the_date_is_the_utc_day_of_the_sensing_time() -> None:
    scene = scene_from_item(make_item(when="2020-08-02T01:30:00+02:00"))
    assert (scene.date, scene.datetime) == ("2020-08-01", "2020-08-01T23:30:00.000Z")


# --- one test per DESIGN.md reflectance row ---------------------------------------------

def test_row_c1_with_raster_bands_applies_them() -> None:
    scene = scene_from_item(make_item(collection=C1, baseline="05.10", raster_offset=-0.1))
    assert (scene.scale, scene.offset, scene.offset_check) == (0.0001, -0.1, False)
    assert scene.corrections == ()


def test_row_c1_without_raster_bands_uses_the_baseline_rule() -> None:
    new = scene_from_item(make_item(collection=C1, baseline="05.10", raster_bands=False))
    old = scene_from_item(make_item(collection=C1, baseline="02.14", raster_bands=False))
    assert (new.offset, old.offset) == (-0.1, 0.0)
    assert not new.offset_check


def test_row_l2a_before_baseline_04_is_zero() -> None:
    scene = scene_from_item(make_item(baseline="02.14", raster_offset=0,
                                      boa_offset_applied=False))
    assert (scene.offset, scene.offset_check, scene.corrections) == (0.0, False, ())


def test_row_l2a_with_boa_offset_applied_is_zero_despite_raster_bands() -> None:
    scene = scene_from_item(make_item(baseline="05.00", raster_offset=-0.1,
                                      boa_offset_applied=True))
    assert (scene.scale, scene.offset, scene.offset_check) == (0.0001, 0.0, False)
    assert any("boa_offset_applied" in note for note in scene.corrections)


def test_row_l2a_baseline_04_with_flag_false_is_minus_0_1_and_checked() -> None:
    scene = scene_from_item(make_item(baseline="04.00", raster_offset=-0.1,
                                      boa_offset_applied=False))
    assert (scene.offset, scene.offset_check) == (-0.1, True)


def test_row_other_catalog_with_raster_bands_trusts_them() -> None:
    item = make_item(collection="sentinel2-l2a-elsewhere", baseline="05.00", raster_offset=0)
    scene = scene_from_item(item)
    assert (scene.offset, scene.offset_check) == (0.0, False)


def test_row_other_catalog_without_raster_bands_uses_the_baseline() -> None:
    item = make_item(collection="sentinel2-l2a-elsewhere", baseline="04.00",
                     raster_bands=False)
    assert scene_from_item(item).offset == -0.1


def test_a_sentinel_2_l2a_collection_elsewhere_is_not_earth_search() -> None:
    """Another catalog's `sentinel-2-l2a` (Planetary Computer's name too) is an "other"
    catalog: its raster:bands are trusted, the Earth Search bug is not assumed."""
    item = make_item(collection=C1, baseline="05.00", raster_offset=-0.1)
    item["collection"] = L2A
    scene = scene_from_item(item)
    assert (scene.offset, scene.offset_check, scene.corrections) == (-0.1, False, ())


def test_baseline_from_the_product_uri_when_the_property_is_absent() -> None:
    item = make_item(collection=C1, baseline="05.00", raster_bands=False)
    del item["properties"]["s2:processing_baseline"]
    scene = scene_from_item(item)
    assert (scene.processing_baseline, scene.offset) == ("05.00", -0.1)


# --- bands ---------------------------------------------------------------------------------

def test_bands_are_found_by_band_id_when_keys_differ() -> None:
    scene = scene_from_item(make_item(collection=C1, band_ids=True))
    assert scene.bands["red"].endswith("/B04.tif")
    assert scene.bands["nir"].endswith("/B08.tif")
    assert scene.bands["scl"].endswith("/SCL.tif")


def test_bands_are_found_by_eo_common_name() -> None:
    item = make_item(collection=C1)
    scl = list(item["assets"]).index("scl")
    item["assets"] = {f"band{n}": asset for n, asset in enumerate(item["assets"].values())}
    item["assets"][f"band{scl}"]["eo:bands"] = [{"name": "SCL"}]  # scl by its band name
    scene = scene_from_item(item)
    assert scene.bands["blue"].endswith("/B02.tif")
    assert scene.bands["nir"].endswith("/B08.tif")
    assert scene.bands["scl"].endswith("/SCL.tif")


def test_a_cog_is_preferred_over_a_jp2() -> None:
    scene = scene_from_item(make_item())
    assert all(href.startswith("https://") for href in scene.bands.values())
    assert not scene.requester_pays


def test_jp2_only_items_get_the_real_requester_pays_paths() -> None:
    scene = scene_from_item(strip_cogs(make_item("48RXT", "2020-08-01T03:45:00Z",
                                                 sequence=0, baseline="02.14",
                                                 raster_offset=0)))
    root = "s3://sentinel-s2-l2a/tiles/48/R/XT/2020/8/1/0/"
    assert scene.bands == {"blue": root + "R10m/B02.jp2", "green": root + "R10m/B03.jp2",
                           "red": root + "R10m/B04.jp2", "nir": root + "R10m/B08.jp2",
                           "swir16": root + "R20m/B11.jp2", "swir22": root + "R20m/B12.jp2",
                           "scl": root + "R20m/SCL.jp2"}
    assert scene.requester_pays
    assert any("#57" in note for note in scene.corrections)
    assert (scene.offset, scene.offset_check) == (0.0, False)


def test_jp2_of_a_new_baseline_keeps_esa_s_offset_whatever_the_flag_says() -> None:
    """The flag says Element 84 shifted its COGs; ESA's JP2s were never shifted."""
    scene = scene_from_item(strip_cogs(make_item(baseline="05.00", boa_offset_applied=True)))
    assert scene.requester_pays
    assert (scene.offset, scene.offset_check) == (-0.1, False)
    assert not any("replaced" in note for note in scene.corrections)  # -0.1 was right here


def test_jp2_hrefs_that_have_their_folder_are_left_alone() -> None:
    scene = scene_from_item(strip_cogs(make_item(jp2_folders=True)))
    assert scene.bands["red"].endswith("/0/R10m/B04.jp2")
    assert not any("#57" in note for note in scene.corrections)


def test_a_missing_band_names_the_item_and_the_band() -> None:
    with pytest.raises(MissingInput, match=r"S2A_32TMT_20200305_0_L2A .*nir \(B08\)"):
        scene_from_item(make_item(drop_bands=["nir"]))


def test_a_missing_scl_is_allowed() -> None:
    scene = scene_from_item(make_item(drop_bands=["scl"]))
    assert "scl" not in scene.bands


def test_an_item_without_a_tile_is_refused() -> None:
    item = make_item()
    for key in ("mgrs:utm_zone", "grid:code", "s2:product_uri"):
        del item["properties"][key]
    item["id"] = "weird"
    with pytest.raises(InvalidInput, match="weird names no Sentinel-2 MGRS tile"):
        scene_from_item(item)


# --- the real items ----------------------------------------------------------------------

def test_every_real_item_becomes_a_scene(real_items: list[dict]) -> None:
    for item in real_items:
        scene = scene_from_item(item)
        props = item["properties"]
        assert scene.item_id == item["id"]
        assert scene.tile == (f"{props['mgrs:utm_zone']}{props['mgrs:latitude_band']}"
                              f"{props['mgrs:grid_square']}")
        assert scene.date == props["datetime"][:10]
        assert scene.sequence == int(props["s2:sequence"])
        assert scene.epsg == props["proj:epsg"]
        assert (scene.scale, scene.offset, scene.offset_check) == (0.0001, 0.0, False)
        assert bool(scene.corrections) == (props["s2:processing_baseline"] >= "04.00")
        assert scene.bands["red"].startswith("https://sentinel-cogs.")


def test_real_items_jp2_hrefs_are_repaired(real_items: list[dict]) -> None:
    for number, item in enumerate(real_items):
        scene = scene_from_item(strip_cogs(item))
        assert "/R10m/B04.jp2" in scene.bands["red"], item["id"]
        assert scene.bands["scl"].endswith("/R20m/SCL.jp2")
        assert scene.requester_pays
        assert any("#57" in n for n in scene.corrections) == (number <= 18), item["id"]
        expected = -0.1 if scene.processing_baseline >= "04.00" else 0.0
        assert scene.offset == expected, item["id"]


def test_real_runs_collapse_to_the_newest(real_items_file: str) -> None:
    tiles = ["32TMT", "32TNT", "32UMU", "32UNU"]
    scenes = search(tiles, "2020-03-01", "2020-03-05", catalog=real_items_file)
    assert len(scenes) == 8  # 16 items, two runs per tile-date
    assert all(s.item_id.endswith("_1_L2A") for s in scenes)
    assert all((s.offset, s.scale) == (0.0, 0.0001) for s in scenes)
    assert [s.date for s in scenes] == ["2020-03-02"] * 4 + ["2020-03-05"] * 4
    assert scenes.warnings == []


def test_real_cloud_limit_applies_after_collapsing(real_items_file: str) -> None:
    """32UMU on 2020-03-02: run 1 (newest) is 99.86 % cloudy, run 0 is 87.93 %. With a
    limit of 99.7 the tile-date is dropped; run 0 never stands in for run 1."""
    scenes = search(["32UMU", "32TMT"], "2020-03-02", "2020-03-02", max_cloud=99.7,
                    catalog=real_items_file)
    assert [s.item_id for s in scenes] == ["S2A_32TMT_20200302_1_L2A"]
    assert search(["32UMU"], "2020-03-02", "2020-03-02", max_cloud=90,
                  catalog=real_items_file) == []


# --- collapsing runs and the cloud limit (fixtures) ---------------------------------------------

def two_runs() -> list[dict]:
    return [make_item(sequence=0, baseline="02.14", cloud=5.0, raster_offset=0,
                      boa_offset_applied=False, created="2022-11-06T10:00:00Z"),
            make_item(when="2020-03-05T10:37:41.588Z", sequence=1, baseline="05.00",
                      cloud=60.0, created="2024-06-29T14:41:57Z")]


@pytest.mark.parametrize("order", [1, -1])
def test_the_newest_run_wins_whatever_the_order(tmp_path: os.PathLike, order: int) -> None:
    path = write_item_collection(tmp_path / "items.json", two_runs()[::order])
    (scene,) = search(["32TMT"], "2020-03-05", "2020-03-05", catalog=path)
    assert scene.item_id == "S2A_32TMT_20200305_1_L2A"


def test_a_too_cloudy_newest_run_is_not_replaced_by_an_older_one(tmp_path: os.PathLike) -> None:
    path = write_item_collection(tmp_path / "items.json", two_runs())
    assert search(["32TMT"], "2020-03-05", "2020-03-05", max_cloud=50, catalog=path) == []
    (scene,) = search(["32TMT"], "2020-03-05", "2020-03-05", max_cloud=60, catalog=path)
    assert scene.cloud_cover == 60.0


def test_a_newest_run_missing_a_band_yields_to_the_next_with_a_warning(
        tmp_path: os.PathLike) -> None:
    runs = two_runs()
    for key in ("nir", "nir-jp2"):
        del runs[1]["assets"][key]
    path = write_item_collection(tmp_path / "items.json", runs)
    scenes = search(["32TMT"], "2020-03-05", "2020-03-05", catalog=path)
    assert [s.item_id for s in scenes] == ["S2A_32TMT_20200305_0_L2A"]
    assert len(scenes.warnings) == 1
    assert "S2A_32TMT_20200305_1_L2A" in scenes.warnings[0]
    assert "nir (B08)" in scenes.warnings[0]


def test_scenes_without_cloud_cover_are_kept_and_say_so(tmp_path: os.PathLike) -> None:
    path = write_item_collection(tmp_path / "items.json", [make_item(cloud=None)])
    (scene,) = search(["32TMT"], "2020-03-05", "2020-03-05", max_cloud=10, catalog=path)
    assert scene.cloud_cover is None
    assert any("no eo:cloud_cover" in note for note in scene.corrections)


@pytest.mark.parametrize("limit", [-1, 101, float("nan"), True])
def test_a_cloud_limit_outside_0_to_100_is_refused(limit: float) -> None:
    with pytest.raises(InvalidInput, match="cloud limit"):
        search(["32TMT"], "2020-03-05", "2020-03-05", max_cloud=limit, catalog="unused")


# --- tiles and dates -------------------------------------------------------------------------

def day_items() -> list[dict]:
    return [make_item(when="2020-07-31T23:59:59.999Z", cloud=1),
            make_item(when="2020-08-01T00:00:00Z", cloud=2, platform="sentinel-2b"),
            make_item(when="2020-08-01T23:59:59.999999Z", cloud=3, sequence=1),
            make_item(when="2020-08-02T00:00:00Z", cloud=4),
            make_item("32TNT", "2020-08-01T10:00:00Z", cloud=5)]


def test_one_day_means_the_whole_utc_day(tmp_path: os.PathLike) -> None:
    path = write_item_collection(tmp_path / "items.json", day_items())
    scenes = search(["t32tmt"], "2020-08-01", "2020-08-01", catalog=path)
    assert [(s.tile, s.date, s.cloud_cover) for s in scenes] == [("32TMT", "2020-08-01", 3)]
    both = search("32TMT, 32TNT", "20200731", "2020-08-02", catalog=path)
    assert [(s.tile, s.date) for s in both] == [
        ("32TMT", "2020-07-31"), ("32TMT", "2020-08-01"), ("32TNT", "2020-08-01"),
        ("32TMT", "2020-08-02")]


def test_a_reversed_range_is_refused_naming_it() -> None:
    with pytest.raises(InvalidInput, match=r"2020-08-05 to 2020-08-01 is reversed"):
        search(["32TMT"], "2020-08-05", "2020-08-01", catalog="unused")


@pytest.mark.parametrize(("start", "end", "what"), [
    ("", "2020-08-01", "start date"), ("2020-08-01", " ", "end date"),
    ("yesterday", "2020-08-01", "start date"),
])
def test_an_empty_or_bad_date_is_refused_naming_it(start: str, end: str, what: str) -> None:
    with pytest.raises(InvalidInput, match=what):
        search(["32TMT"], start, end, catalog="unused")


@pytest.mark.parametrize("tiles", [[], ["ABC"], ""])
def test_bad_or_no_tiles_are_refused(tiles: list[str]) -> None:
    with pytest.raises(InvalidInput):
        search(tiles, "2020-08-01", "2020-08-01", catalog="unused")


# --- the STAC API --------------------------------------------------------------------------------

def five_dates() -> list[dict]:
    return [make_item(when=f"2020-03-0{d}T10:37:41.587Z", cloud=10.0 * d) for d in range(1, 6)]


@pytest.mark.parametrize("paging", ["next", "token", "page"])
def test_search_follows_every_page(stac_server_factory: Factory, paging: str) -> None:
    noise = [make_item("33UUP", "2020-03-03T10:00:00Z"),
             make_item(when="2020-04-01T10:00:00Z")]
    server = stac_server_factory(five_dates() + noise, page_size=2, paging=paging)
    scenes = search(["32TMT"], "2020-03-01", "2020-03-05", catalog=server.url)
    assert [s.date for s in scenes] == [f"2020-03-0{d}" for d in range(1, 6)]
    searches = server.searches()
    assert len(searches) == 3
    assert [r.method for r in searches] == ["POST"] * 3
    if paging == "next":  # Earth Search: the whole body again plus the token
        assert searches[1].body["next"].endswith(",S2A_32TMT_20200304_0_L2A,sentinel-2-l2a")
        assert searches[1].body["query"] == searches[0].body["query"]


def test_the_search_body_filters_by_tile_and_time_but_never_by_cloud(
        stac_server_factory: Factory) -> None:
    server = stac_server_factory(five_dates())
    search(["32TMT", "32TNT"], "2020-03-01", "2020-03-05", max_cloud=20, catalog=server.url)
    body = server.searches()[0].body
    assert body["query"] == {"grid:code": {"in": ["MGRS-32TMT", "MGRS-32TNT"]}}
    assert body["datetime"] == "2020-03-01T00:00:00Z/2020-03-06T00:00:00Z"
    assert body["collections"] == [L2A]  # the only default collection this server has
    assert "eo:cloud_cover" not in json.dumps(body)  # the cloud limit is applied locally
    assert "intersects" not in body
    assert "bbox" not in body


def test_an_aoi_is_sent_as_intersects(stac_server_factory: Factory) -> None:
    server = stac_server_factory(five_dates())
    aoi = {"type": "Polygon", "coordinates": [[[7, 46], [10, 46], [10, 48], [7, 48], [7, 46]]]}
    search(["32TMT"], "2020-03-01", "2020-03-05", aoi=aoi, catalog=server.url)
    assert server.searches()[0].body["intersects"] == aoi


def test_iter_items_pages_lazily(stac_server_factory: Factory) -> None:
    server = stac_server_factory(five_dates(), page_size=2)
    items = catalog.iter_items(["32TMT"], "2020-03-01", "2020-03-05", catalog=server.url)
    assert server.searches() == []  # nothing fetched before iteration
    first = next(items)
    assert first["id"] == "S2A_32TMT_20200305_0_L2A"
    assert len(server.searches()) == 1
    items.close()


@pytest.mark.parametrize(("paging", "key", "value"), [
    ("page", "page", "2"), ("token", "token", "next:2"),
    ("next", "next", "2020-03-04T10:37:41.587Z,S2A_32TMT_20200304_0_L2A,sentinel-2-l2a"),
])
def test_get_search_when_post_is_not_allowed(stac_server_factory: Factory, paging: str,
                                             key: str, value: str) -> None:
    server = stac_server_factory(five_dates(), paging=paging, post=False)
    scenes = search(["32TMT"], "2020-03-01", "2020-03-05", catalog=server.url)
    assert len(scenes) == 5
    methods = [r.method for r in server.searches()]
    assert methods == ["GET"] * 3  # the landing page offers only GET search
    assert server.searches()[1].query[key] == value
    assert json.loads(server.searches()[0].query["query"]) == {
        "grid:code": {"in": ["MGRS-32TMT"]}}


def test_a_405_on_post_switches_to_get(stac_server_factory: Factory) -> None:
    server = stac_server_factory(five_dates(), post=False)
    original = server.landing

    def landing_without_methods() -> dict:
        doc = original()
        for link in doc["links"]:
            link.pop("method", None)
        return doc

    server.landing = landing_without_methods  # type: ignore[method-assign]
    scenes = search(["32TMT"], "2020-03-01", "2020-03-05", catalog=server.url)
    assert len(scenes) == 5
    assert [r.method for r in server.searches()] == ["POST", "GET", "GET", "GET"]


def test_cql2_filter_when_the_api_has_no_query_extension(stac_server_factory: Factory) -> None:
    conformance = [c for c in CONFORMANCE if "#query" not in c]
    server = stac_server_factory(five_dates(), conformance=conformance)
    assert len(search(["32TMT"], "2020-03-01", "2020-03-05", catalog=server.url)) == 5
    body = server.searches()[0].body
    assert body["filter-lang"] == "cql2-json"
    assert body["filter"]["args"][0] == {"op": "=", "args": [{"property": "grid:code"},
                                                             "MGRS-32TMT"]}


def test_a_bbox_of_the_tile_when_the_api_cannot_filter_properties(
        stac_server_factory: Factory) -> None:
    far = make_item("10SEG", "2020-03-03T10:00:00Z")
    server = stac_server_factory([*five_dates(), far], conformance=CONFORMANCE_BASIC)
    assert len(search(["32TMT"], "2020-03-01", "2020-03-05", catalog=server.url)) == 5
    body = server.searches()[0].body
    assert "query" not in body
    assert body["bbox"] == [5.0, 39.0, 13.0, 49.0]  # zone 32 x band T, widened by 1°


def test_a_catalog_without_grid_code_is_searched_again_by_location(
        stac_server_factory: Factory) -> None:
    items = five_dates()
    for item in items:  # Planetary Computer style: s2:mgrs_tile only
        props = item["properties"]
        for key in ("grid:code", "mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square"):
            del props[key]
        props["s2:mgrs_tile"] = "32TMT"
    server = stac_server_factory(items)
    scenes = search(["32TMT"], "2020-03-01", "2020-03-05", catalog=server.url)
    assert len(scenes) == 5
    assert "searched by location" in scenes.warnings[0]
    assert "bbox" in server.searches()[-1].body


def test_c1_is_preferred_and_l2a_fills_the_gaps(stac_server_factory: Factory,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    items = [
        make_item(collection=C1, when="2020-03-05T10:37:41.600Z", cloud=80.0),
        make_item(when="2020-03-05T10:37:41.587Z", sequence=1, cloud=10.0),
        make_item(when="2020-03-02T10:27:44.563Z", cloud=20.0),  # c1 lacks this one
        make_item(collection=C1, when="2020-03-04T10:00:00Z", cloud=1.0),
        make_item(collection="sentinel-2-l1c", when="2020-03-03T10:00:00Z"),
    ]
    server = stac_server_factory(items)
    monkeypatch.setattr(catalog, "EARTH_SEARCH_V1", server.url)
    scenes = search(["32TMT"], "2020-03-01", "2020-03-05")
    assert [(s.date, s.collection) for s in scenes] == [
        ("2020-03-02", L2A), ("2020-03-04", C1), ("2020-03-05", C1)]
    assert server.searches()[0].body["collections"] == [C1, L2A]
    # the c1 scene of 03-05 is too cloudy: the l2a run of the same scene does not replace it
    cloudy = search(["32TMT"], "2020-03-01", "2020-03-05", max_cloud=50)
    assert [(s.date, s.collection) for s in cloudy] == [("2020-03-02", L2A),
                                                       ("2020-03-04", C1)]


def test_an_unknown_collection_is_refused(stac_server_factory: Factory) -> None:
    server = stac_server_factory(five_dates())
    with pytest.raises(InvalidInput, match=r"has no collection.*landsat-c2-l2"):
        search(["32TMT"], "2020-03-01", "2020-03-05", catalog=server.url,
               collections=["landsat-c2-l2"])


def test_an_api_without_the_default_collections_is_searched_whole(
        stac_server_factory: Factory) -> None:
    items = five_dates()
    for item in items:
        item["collection"] = "s2"
    server = stac_server_factory(items)
    scenes = search(["32TMT"], "2020-03-01", "2020-03-05", catalog=server.url)
    assert len(scenes) == 5
    assert "collections" not in server.searches()[0].body
    assert "searching all its collections" in scenes.warnings[0]


# --- the same Scenes however the items are served --------------------------------------------

def test_api_static_catalog_and_item_collection_agree(stac_server_factory: Factory,
                                                      tmp_path: os.PathLike) -> None:
    items = [*two_runs(), *five_dates()[:2], make_item(collection=C1, cloud=70),
             make_item("32TNT", "2020-03-02T10:00:00Z", drop_bands=["scl"]),
             make_item("33UUP", "2020-03-02T10:00:00Z")]
    server = stac_server_factory(items, page_size=2)
    static = write_static_catalog(tmp_path / "static", items)
    collection_file = write_item_collection(tmp_path / "items.json", items)

    def run(where: str) -> list[dict]:
        found = search(["32TMT", "32TNT"], "2020-03-01", "2020-03-05", max_cloud=75,
                       catalog=where)
        return [scene.to_dict() for scene in found]

    expected = run(server.url)
    assert [s["item_id"] for s in expected] == [
        "S2A_32TMT_20200301_0_L2A", "S2A_32TMT_20200302_0_L2A", "S2A_32TNT_20200302_0_L2A",
        "S2A_T32TMT_20200305T103741_L2A"]
    assert run(static) == expected
    assert run(str(tmp_path / "static")) == expected  # the folder of catalog.json
    assert run("file://" + static) == expected
    assert run(collection_file) == expected


def test_relative_asset_hrefs_are_resolved_against_the_item(tmp_path: os.PathLike) -> None:
    item = make_item(collection=C1)
    for asset in item["assets"].values():
        asset["href"] = "./" + asset["href"].rsplit("/", 1)[1]
    static = write_static_catalog(tmp_path, [item])
    (scene,) = search(["32TMT"], "2020-03-05", "2020-03-05", catalog=static)
    folder = os.path.join(str(tmp_path), C1, item["id"])
    assert scene.bands["red"] == os.path.join(folder, "B04.tif")


def test_static_catalog_skips_collections_not_asked_for(tmp_path: os.PathLike) -> None:
    items = [make_item(), make_item(collection=C1)]
    static = write_static_catalog(tmp_path, items)
    scenes = search(["32TMT"], "2020-03-05", "2020-03-05", catalog=static, collections=[L2A])
    assert [s.collection for s in scenes] == [L2A]


# --- failures ----------------------------------------------------------------------------

def test_an_unreachable_catalog_is_a_catalog_error_in_time(refused_url: str) -> None:
    began = time.monotonic()
    with pytest.raises(CatalogError, match="connection refused") as caught:
        search(["32TMT"], "2020-03-01", "2020-03-05", catalog=refused_url, timeout=1)
    assert time.monotonic() - began < 2
    assert refused_url in str(caught.value)


def test_a_hanging_search_is_a_catalog_error_in_time(stac_server_factory: Factory) -> None:
    server = stac_server_factory(five_dates())
    server.fail("hang", path="/search", seconds=10, times=10)
    began = time.monotonic()
    with pytest.raises(CatalogError, match="no answer within"):
        search(["32TMT"], "2020-03-01", "2020-03-05", catalog=server.url, timeout=1)
    assert time.monotonic() - began < 2


def test_transient_search_failures_are_retried(stac_server_factory: Factory) -> None:
    server = stac_server_factory(five_dates())
    server.fail("status", path="/search", status=503, times=1)
    assert len(search(["32TMT"], "2020-03-01", "2020-03-05", catalog=server.url)) == 5
    assert len(server.searches()) == 4  # a failure + 3 pages


def test_a_garbage_search_page_is_a_catalog_error(stac_server_factory: Factory) -> None:
    server = stac_server_factory(five_dates())
    server.fail("garbage", path="/search")
    with pytest.raises(CatalogError, match="not JSON"):
        search(["32TMT"], "2020-03-01", "2020-03-05", catalog=server.url)


def test_a_url_without_search_is_not_a_stac_api(stac_server_factory: Factory) -> None:
    server = stac_server_factory(five_dates(), search=False)
    with pytest.raises(CatalogError, match="is not a STAC API") as caught:
        search(["32TMT"], "2020-03-01", "2020-03-05", catalog=server.url)
    assert f"{server.url}/search answered 404" in str(caught.value)


def test_a_url_that_404s_is_named(stac_server_factory: Factory) -> None:
    server = stac_server_factory()
    with pytest.raises(CatalogError, match="answered 404: there is no STAC catalog"):
        search(["32TMT"], "2020-03-01", "2020-03-05", catalog=server.origin + "/nothing")


def test_a_missing_catalog_file_is_named(tmp_path: os.PathLike) -> None:
    with pytest.raises(MissingInput, match=r"nowhere\.json does not exist"):
        search(["32TMT"], "2020-03-01", "2020-03-05", catalog=str(tmp_path / "nowhere.json"))


def test_proxies_pass_through_to_http(stac_server_factory: Factory,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    server = stac_server_factory(five_dates())
    scenes = search(["32TMT"], "2020-03-01", "2020-03-05", catalog="http://stac.example/v1",
                    proxies={"http": server.origin})
    assert len(scenes) == 5
    assert server.requests[0].proxied


# --- the core stays pure ---------------------------------------------------------------------

def test_the_catalog_imports_with_qgis_qt_and_rasterio_blocked() -> None:
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('qgis', 'PyQt5', 'PyQt6', 'rasterio', 'requests',
                                  'pystac_client', 'pystac', 'numpy', 'boto3'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import qgis_rsbatch.core.catalog, qgis_rsbatch.core.http, qgis_rsbatch.core.reflectance
print('ok')
"""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.stdout.strip() == "ok", done.stderr


def test_real_items_give_the_same_scenes_from_api_static_catalog_and_file(
        real_items: list[dict], real_items_file: str, stac_server_factory: Factory,
        tmp_path: os.PathLike) -> None:
    tiles = sorted({scene_from_item(item).tile for item in real_items})
    server = stac_server_factory(real_items, page_size=3)
    static = write_static_catalog(tmp_path, real_items)

    def run(where: str) -> list[dict]:
        found = search(tiles, "2020-01-01", "2025-12-31", max_cloud=99.9, catalog=where)
        return [scene.to_dict() for scene in found]

    expected = run(real_items_file)
    # 17 tile-dates; the newest runs of the four 2020-03-05 tile-dates are > 99.9 % cloudy
    assert len(expected) == 13
    assert not any(s["date"] == "2020-03-05" for s in expected)
    assert run(server.url) == expected
    assert run(static) == expected
    assert len(server.searches()) == 9  # 25 items, pages of 3
