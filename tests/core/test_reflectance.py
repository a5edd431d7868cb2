"""DESIGN.md's "Reflectance" table, one test per row, and the real Earth Search items."""

from __future__ import annotations

import pytest

from qgis_rsbatch.core import reflectance as r

RB_SHIFTED = {"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": -0.1}
RB_ZERO = {"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": 0}


def props(baseline: str | None = None, uri: str | None = None, **extra: object) -> dict:
    found: dict = dict(extra)
    if baseline is not None:
        found["s2:processing_baseline"] = baseline
    if uri is not None:
        found["s2:product_uri"] = uri
    return found


# --- the baseline -----------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("05.00", (5, 0)), ("04.00", (4, 0)), ("02.14", (2, 14)), (" 5.9 ", (5, 9)),
    ("N0400", None), ("", None), (None, None), (4.0, (4, 0)),
])
def test_parse_baseline(value: object, expected: tuple | None) -> None:
    assert r.parse_baseline(value) == expected


def test_baseline_comes_from_the_property_first_then_the_product_uri() -> None:
    uri = "S2A_MSIL2A_20200305T103021_N0500_R108_T32TMT_20230630T022413.SAFE"
    assert r.baseline_of(props("02.14", uri)) == "02.14"
    assert r.baseline_of(props(uri=uri)) == "05.00"
    assert r.baseline_of({"productName": "S2B_MSIL2A_20220201T100129_N0400_R122_T33UUP"
                                         "_20220201T121040"}) == "04.00"
    assert r.baseline_of(props()) is None
    assert r.baseline_of(props("garbage", "no-baseline-here.SAFE")) is None


@pytest.mark.parametrize(("baseline", "carries"), [
    ("03.99", False), ("02.14", False), ("04.00", True), ("05.00", True), ("05.11", True),
    (None, None),
])
def test_the_offset_starts_at_baseline_04_00(baseline: str | None,
                                             carries: bool | None) -> None:
    assert r.has_boa_offset(baseline) is carries


def test_baseline_rule() -> None:
    assert r.baseline_rule("04.00") == r.Reflectance(0.0001, -0.1, False, ())
    assert r.baseline_rule("03.01") == r.Reflectance(0.0001, 0.0, False, ())
    unknown = r.baseline_rule(None)
    assert (unknown.offset, unknown.offset_check) == (0.0, True)
    assert "no processing baseline" in unknown.corrections[0]


# --- row: Earth Search sentinel-2-c1-l2a ------------------------------------------------

def test_c1_uses_raster_bands_as_given() -> None:
    assert r.for_c1(props("05.10"), RB_SHIFTED) == r.Reflectance(0.0001, -0.1, False, ())
    # whatever raster:bands says is meant to be applied, even against the baseline
    assert r.for_c1(props("05.10"), RB_ZERO) == r.Reflectance(0.0001, 0.0, False, ())


@pytest.mark.parametrize(("baseline", "offset"), [("05.00", -0.1), ("02.14", 0.0)])
def test_c1_without_raster_bands_falls_back_to_the_baseline_rule(baseline: str,
                                                                 offset: float) -> None:
    assert r.for_c1(props(baseline), None) == r.Reflectance(0.0001, offset, False, ())
    # an entry with a scale but no offset counts as "without"
    assert r.for_c1(props(baseline), {"scale": 0.0001}).offset == offset


def test_c1_baseline_may_come_from_the_product_uri_alone() -> None:
    uri = "S2B_MSIL2A_20230623T070629_N0509_R106_T39QTA_20230623T092612.SAFE"
    assert r.for_c1(props(uri=uri), None).offset == -0.1


# --- row: Earth Search sentinel-2-l2a -----------------------------------------------------

def test_l2a_before_baseline_04_has_no_offset() -> None:
    assert r.for_earth_search_l2a(
        props("02.14", **{"earthsearch:boa_offset_applied": False}), RB_ZERO
    ) == r.Reflectance(0.0001, 0.0, False, ())


def test_l2a_before_baseline_04_overrides_a_wrong_raster_offset() -> None:
    result = r.for_earth_search_l2a(props("03.00"), RB_SHIFTED)
    assert (result.offset, result.offset_check) == (0.0, False)
    assert "baseline 03.00 < 04.00" in result.corrections[0]


def test_l2a_with_boa_offset_applied_is_zero_although_raster_bands_says_minus_0_1() -> None:
    result = r.for_earth_search_l2a(
        props("05.00", **{"earthsearch:boa_offset_applied": True}), RB_SHIFTED)
    assert (result.scale, result.offset, result.offset_check) == (0.0001, 0.0, False)
    assert len(result.corrections) == 1
    assert "boa_offset_applied is true" in result.corrections[0]
    assert "#9" in result.corrections[0]


def test_l2a_baseline_04_with_flag_false_keeps_minus_0_1_and_asks_for_a_check() -> None:
    result = r.for_earth_search_l2a(
        props("05.00", **{"earthsearch:boa_offset_applied": False}), RB_SHIFTED)
    assert result == r.Reflectance(0.0001, -0.1, True, ())


def test_l2a_baseline_04_without_the_flag_is_treated_like_flag_false() -> None:
    result = r.for_earth_search_l2a(props("04.00"), RB_ZERO)
    assert (result.offset, result.offset_check) == (-0.1, True)
    assert "replaced by -0.1" in result.corrections[0]


def test_l2a_with_no_baseline_and_no_flag_assumes_the_offset_and_says_so() -> None:
    result = r.for_earth_search_l2a(props(), None)
    assert (result.offset, result.offset_check) == (-0.1, True)
    assert "no processing baseline" in result.corrections[-1]


def test_l2a_baseline_from_product_uri_when_the_property_is_absent() -> None:
    uri = "S2A_MSIL2A_20200305T103021_N0214_R108_T32TMT_20200305T134552.SAFE"
    result = r.for_earth_search_l2a(props(uri=uri), RB_SHIFTED)
    assert (result.offset, result.offset_check) == (0.0, False)


# --- row: any other STAC catalog ----------------------------------------------------------

def test_other_catalogs_use_raster_bands_when_present() -> None:
    assert r.for_other(props("05.00"), RB_ZERO) == r.Reflectance(0.0001, 0.0, False, ())
    assert r.for_other(props("02.14"), RB_SHIFTED).offset == -0.1
    assert r.for_other(props(), {"scale": 0.0002, "offset": -0.2}) == r.Reflectance(
        0.0002, -0.2, False, ())


@pytest.mark.parametrize(("baseline", "offset"), [("04.00", -0.1), ("03.01", 0.0)])
def test_other_catalogs_without_raster_bands_use_the_baseline(baseline: str,
                                                              offset: float) -> None:
    assert r.for_other(props(baseline), None).offset == offset


def test_other_catalogs_without_any_baseline_verify_from_pixels() -> None:
    result = r.for_other(props(), None)
    assert (result.offset, result.offset_check) == (0.0, True)


def test_a_nonsense_scale_falls_back_to_the_l2a_quantification() -> None:
    assert r.for_other(props("05.00"), {"scale": 0, "offset": -0.1}).scale == 0.0001
    assert r.for_other(props("05.00"), {"scale": "x", "offset": -0.1}).scale == 0.0001
    assert r.raster_value({"offset": True}, "offset") is None


# --- row: the seed's JP2 (sentinel-s2-l2a) --------------------------------------------------

@pytest.mark.parametrize(("name", "offset"), [
    ("S2B_MSIL2A_20220201T100129_N0400_R122_T33UUP_20220201T121040", -0.1),
    ("S2A_MSIL2A_20200801T033541_N0214_R061_T48RXT_20200801T081316", 0.0),
])
def test_seed_jp2_baseline_from_the_product_name(name: str, offset: float) -> None:
    assert r.for_sentinel_s2_l2a(product_name=name) == r.Reflectance(0.0001, offset, False, ())


def test_seed_jp2_metadata_xml_states_the_offset_outright() -> None:
    xml = """<n1:Level-2A_User_Product><QUANTIFICATION_VALUES_LIST>
      <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
      </QUANTIFICATION_VALUES_LIST><BOA_ADD_OFFSET_VALUES_LIST>
      <BOA_ADD_OFFSET band_id="0">-1000</BOA_ADD_OFFSET>
      <BOA_ADD_OFFSET band_id="1">-1000</BOA_ADD_OFFSET></BOA_ADD_OFFSET_VALUES_LIST>"""
    result = r.for_sentinel_s2_l2a(metadata_xml=xml, product_name="…_N0214_…")
    assert result.scale == pytest.approx(0.0001)
    assert result.offset == pytest.approx(-0.1)
    assert result.offset_check is False
    old = "<BOA_QUANTIFICATION_VALUE>10000</BOA_QUANTIFICATION_VALUE>"
    assert r.for_sentinel_s2_l2a(metadata_xml=old).offset == 0.0


def test_seed_jp2_with_nothing_known_is_verified_from_pixels() -> None:
    result = r.for_sentinel_s2_l2a()
    assert (result.offset, result.offset_check) == (0.0, True)
    assert r.for_sentinel_s2_l2a(baseline="05.00").offset == -0.1


# --- the real items ----------------------------------------------------------------------------

def test_every_real_item_follows_the_l2a_row(real_items: list[dict]) -> None:
    """All 25 real Earth Search `sentinel-2-l2a` items: offset 0 and scale 0.0001 for every
    one (newest runs have the flag true despite raster:bands -0.1; old runs are 02.14)."""
    assert len(real_items) == 25
    for item in real_items:
        properties = item["properties"]
        raster = item["assets"]["red"]["raster:bands"][0]
        result = r.for_earth_search_l2a(properties, raster)
        assert (result.scale, result.offset, result.offset_check) == (0.0001, 0.0, False), (
            item["id"])
        overridden = raster["offset"] != 0
        assert bool(result.corrections) == overridden, item["id"]
        if r.has_boa_offset(r.baseline_of(properties)):
            assert properties["earthsearch:boa_offset_applied"] is True
            assert overridden  # the metadata really does say -0.1 on those


def test_the_real_items_original_jp2s_still_carry_the_offset(real_items: list[dict]) -> None:
    """ESA's JP2s of the same runs were never shifted: baseline 05.xx → -0.1, 02.14 → 0."""
    for item in real_items:
        baseline = r.baseline_of(item["properties"])
        expected = -0.1 if baseline >= "04.00" else 0.0
        assert r.for_sentinel_s2_l2a(baseline=baseline).offset == expected, item["id"]
