"""Every AOI form a user may give comes back as GeoJSON in EPSG:4326, or as a clear error."""

from __future__ import annotations

import json
import sys

import pytest

from qgis_rsbatch.core import aoi
from qgis_rsbatch.core import geometry as planar
from qgis_rsbatch.core.aoi import parse_aoi
from qgis_rsbatch.core.errors import DependencyMissing, InvalidInput
from qgis_rsbatch.core.geometry import PlanarShape

SQUARE = {"type": "Polygon",
          "coordinates": [[[8.0, 47.0], [9.0, 47.0], [9.0, 48.0], [8.0, 48.0], [8.0, 47.0]]]}


def _lons(geometry: dict) -> list[float]:
    return [lon for lon, _ in aoi.iter_positions(geometry)]


# --- the accepted forms ---------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "POLYGON((8 47, 9 47, 9 48, 8 48, 8 47))",
    "polygon ((8 47,9 47,9 48,8 48,8 47))",
    "POLYGON Z ((8 47 1, 9 47 1, 9 48 1, 8 48 1, 8 47 1))",
    "SRID=4326;POLYGON((8 47, 9 47, 9 48, 8 48, 8 47))",
    "8,47,9,48",
    "8 47 9 48",
    "[8, 47, 9, 48]",
    json.dumps(SQUARE),
    json.dumps({"type": "Feature", "properties": {}, "geometry": SQUARE}),
])
def test_text_forms_give_the_same_polygon(text):
    assert parse_aoi(text) == SQUARE


def test_dict_and_bbox_list_forms():
    assert parse_aoi(SQUARE) == SQUARE
    assert parse_aoi([8, 47, 9, 48]) == SQUARE
    assert parse_aoi({"type": "Feature", "geometry": SQUARE, "properties": None}) == SQUARE


def test_open_ring_is_closed():
    open_ring = {"type": "Polygon", "coordinates": [SQUARE["coordinates"][0][:-1]]}
    assert parse_aoi(open_ring) == SQUARE


@pytest.mark.parametrize(("text", "expected"), [
    ("POINT (9 47)", {"type": "Point", "coordinates": [9.0, 47.0]}),
    ("POINT ZM (9 47 3 4)", {"type": "Point", "coordinates": [9.0, 47.0]}),
    ("MULTIPOINT (1 2, 3 4)", {"type": "MultiPoint", "coordinates": [[1.0, 2.0], [3.0, 4.0]]}),
    ("MULTIPOINT ((1 2), (3 4))",
     {"type": "MultiPoint", "coordinates": [[1.0, 2.0], [3.0, 4.0]]}),
    ("LINESTRING (8 47, 9 48)", {"type": "LineString", "coordinates": [[8.0, 47.0], [9.0, 48.0]]}),
    ("MULTIPOLYGON (((8 47, 9 47, 9 48, 8 47)), ((10 47, 11 47, 11 48, 10 47)))",
     {"type": "MultiPolygon", "coordinates": [
         [[[8.0, 47.0], [9.0, 47.0], [9.0, 48.0], [8.0, 47.0]]],
         [[[10.0, 47.0], [11.0, 47.0], [11.0, 48.0], [10.0, 47.0]]]]}),
    ("GEOMETRYCOLLECTION (POINT (1 2), LINESTRING (1 2, 3 4))",
     {"type": "GeometryCollection", "geometries": [
         {"type": "Point", "coordinates": [1.0, 2.0]},
         {"type": "LineString", "coordinates": [[1.0, 2.0], [3.0, 4.0]]}]}),
])
def test_wkt_types(text, expected):
    assert parse_aoi(text) == expected


def test_polygon_with_hole_keeps_the_hole():
    text = "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0), (4 4, 6 4, 6 6, 4 6, 4 4))"
    geometry = parse_aoi(text)
    assert len(geometry["coordinates"]) == 2


def test_feature_collection_file_becomes_one_multipolygon(tmp_path):
    other = {"type": "MultiPolygon", "coordinates": [
        [[[10.0, 47.0], [11.0, 47.0], [11.0, 48.0], [10.0, 47.0]]],
        [[[12.0, 47.0], [13.0, 47.0], [13.0, 48.0], [12.0, 47.0]]]]}
    collection = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "a"}, "geometry": SQUARE},
        {"type": "Feature", "properties": {"name": "b"}, "geometry": other}]}
    path = tmp_path / "fields.geojson"
    path.write_text(json.dumps(collection), encoding="utf-8")
    for value in (str(path), path):
        geometry = parse_aoi(value)
        assert geometry["type"] == "MultiPolygon"
        assert geometry["coordinates"] == [SQUARE["coordinates"], *other["coordinates"]]


def test_wkt_file(tmp_path):
    path = tmp_path / "aoi.wkt"
    path.write_text("POLYGON((8 47, 9 47, 9 48, 8 48, 8 47))\n", encoding="utf-8")
    assert parse_aoi(str(path)) == SQUARE


# --- other CRSs -----------------------------------------------------------------------------
def _pyproj_to_wgs84(epsg: int, x: float, y: float) -> tuple[float, float]:
    pyproj = pytest.importorskip("pyproj")
    return pyproj.Transformer.from_crs(epsg, 4326, always_xy=True).transform(x, y)


@pytest.mark.parametrize("crs", ["EPSG:32632", 32632, "32632", "urn:ogc:def:crs:EPSG::32632"])
def test_bbox_in_utm_is_densified_and_exact(crs):
    # the 109.8 km square of tile 32TMT
    geometry = parse_aoi("399960,5190240,509760,5300040", crs=crs)
    ring = geometry["coordinates"][0]
    assert len(ring) > 200  # straight in metres, curved in degrees
    for x, y in [(399960, 5190240), (509760, 5190240), (509760, 5300040), (399960, 5300040)]:
        lon, lat = _pyproj_to_wgs84(32632, x, y)
        assert min(abs(p[0] - lon) + abs(p[1] - lat) for p in ring) < 1e-9
    # a point half-way along the south edge lies on the curve, not on the lon/lat chord
    lon, lat = _pyproj_to_wgs84(32632, 454860, 5190240)
    assert min(abs(p[0] - lon) + abs(p[1] - lat) for p in ring) < 1e-9


def test_southern_utm_point():
    geometry = parse_aoi("POINT (300000 9500020)", crs="EPSG:32724")
    expected = _pyproj_to_wgs84(32724, 300000, 9500020)
    assert geometry["coordinates"] == pytest.approx(list(expected), abs=1e-9)


def test_geojson_legacy_crs_member(tmp_path):
    data = {"type": "FeatureCollection",
            "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32632"}},
            "features": [{"type": "Feature", "properties": {},
                          "geometry": {"type": "Point", "coordinates": [500000, 5200000]}}]}
    path = tmp_path / "utm.geojson"
    path.write_text(json.dumps(data), encoding="utf-8")
    geometry = parse_aoi(str(path))
    assert geometry["type"] == "MultiPoint"
    expected = _pyproj_to_wgs84(32632, 500000, 5200000)
    assert geometry["coordinates"][0] == pytest.approx(list(expected), abs=1e-9)


def test_other_crs_goes_through_pyproj():
    geometry = parse_aoi({"type": "Point", "coordinates": [1000000.0, 6000000.0]},
                         crs="EPSG:3857")
    expected = _pyproj_to_wgs84(3857, 1000000.0, 6000000.0)
    assert geometry["coordinates"] == pytest.approx(list(expected), abs=1e-9)


def test_other_crs_without_pyproj_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyproj", None)  # import pyproj now raises ImportError
    with pytest.raises(DependencyMissing, match="pip install pyproj"):
        parse_aoi("POINT (1000000 6000000)", crs="EPSG:3857")
    # UTM and EPSG:4326 never need it
    assert parse_aoi("POINT (500000 5200000)", crs="EPSG:32632")["type"] == "Point"


def test_unknown_crs_is_invalid_input():
    pytest.importorskip("pyproj")
    with pytest.raises(InvalidInput, match="EPSG:999999"):
        parse_aoi("POINT (1000000 6000000)", crs="EPSG:999999")


def test_crs84_and_parse_crs_spellings():
    assert parse_aoi("POINT (9 47)", crs="urn:ogc:def:crs:OGC:1.3:CRS84")["coordinates"] == [9, 47]
    assert aoi.parse_crs("epsg:4326") == 4326
    assert aoi.parse_crs("http://www.opengis.net/def/crs/EPSG/0/32632") == 32632
    assert aoi.parse_crs(None) == 4326


# --- the antimeridian -----------------------------------------------------------------------
def test_bbox_across_the_antimeridian_is_split():
    geometry = parse_aoi("170,-20,-170,-10")
    assert geometry["type"] == "MultiPolygon"
    assert all(-180 <= lon <= 180 for lon in _lons(geometry))
    spans = sorted((min(p[0] for p in poly[0]), max(p[0] for p in poly[0]))
                   for poly in geometry["coordinates"])
    assert spans == [(-180.0, -170.0), (170.0, 180.0)]


def test_unwrapped_polygon_is_split_the_same_way():
    unwrapped = parse_aoi("POLYGON ((170 -20, 190 -20, 190 -10, 170 -10, 170 -20))")
    assert sorted(map(str, unwrapped["coordinates"])) == \
        sorted(map(str, parse_aoi("170,-20,-170,-10")["coordinates"]))


def test_utm_aoi_across_the_antimeridian_is_split():
    # zone 60 bbox reaching 1° beyond 180° near Fiji
    geometry = parse_aoi("800000,8000000,950000,8150000", crs="EPSG:32760")
    assert geometry["type"] == "MultiPolygon"
    assert all(-180 <= lon <= 180 for lon in _lons(geometry))


def test_edge_jumping_across_the_map_is_refused():
    with pytest.raises(InvalidInput, match="spans more than 180° of longitude"):
        parse_aoi("POLYGON ((170 0, -170 0, -170 1, 170 1, 170 0))")


def test_world_wide_bbox_is_allowed():
    geometry = parse_aoi("-180,-10,180,10")
    assert min(_lons(geometry)) == -180
    assert max(_lons(geometry)) == 180


# --- bad inputs -----------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "message"), [
    ("", "the AOI is empty"),
    ("   ", "the AOI is empty"),
    ("POLYGON EMPTY", "empty"),
    ('{"type": "FeatureCollection", "features": []}', "has no features"),
    ('{"type": "Feature", "geometry": null}', "has no geometry"),
    ('{"type": "Polygon"', "does not parse"),
    ('{"type": "Circle", "coordinates": [1, 2]}', "'Circle'"),
    ("hello world", "is not WKT, GeoJSON, a bbox"),
    ("/no/such/file.geojson", "is not WKT, GeoJSON, a bbox"),
    ("POINT (9 95)", r"\(9, 95\) is not a longitude/latitude"),
    ("POINT (500000 5200000)", "pass the AOI's crs"),
    ("9,48,8,49", "it spans 359° of longitude"),
    ("8,48,9,47", "miny 48.0 >= maxy 47.0"),
    ("8,47,8,48", "no width"),
    ("POLYGON ((8 47, 9 47))", "fewer than 3 distinct positions"),
    ("POLYGON ((8 47, 9 47, 10 47, 8 47))", "zero area"),
    ("LINESTRING (8 47)", "fewer than 2 positions"),
    ("POLYGON ((8 47, 9 47, 9 48, 8 48, 8 47)", r"where '\)' was expected"),
    ("POLYGON ((8 47, 9 47, 9 48, 8 48, 8 47)) junk", "unexpected text"),
    ("POINT (a b)", "not a number"),
    ("POINT (1)", "fewer than 2 coordinates"),
    ('{"type": "Point", "coordinates": ["9", 47]}', "two finite numbers"),
    ('{"type": "Point", "coordinates": {"x": 9}}', "fewer than 2 numbers"),
    ('{"type": "Point", "coordinates": [null, 47]}', "malformed coordinates"),
    ('{"type": "Polygon", "coordinates": [9, 47]}', "empty or malformed part"),
])
def test_bad_inputs_say_what_is_wrong(value, message):
    with pytest.raises(InvalidInput, match=message):
        parse_aoi(value)


def test_bbox_minx_above_maxx_in_utm_is_refused():
    with pytest.raises(InvalidInput, match="only an EPSG:4326 bbox"):
        parse_aoi("509760,5190240,399960,5300040", crs="EPSG:32632")


def test_lonlat_given_with_a_projected_crs_is_refused():
    with pytest.raises(InvalidInput, match="look like longitude/latitude, not EPSG:32632"):
        parse_aoi("8,47,9,48", crs="EPSG:32632")


@pytest.mark.parametrize(("value", "where"), [
    # asymmetric bow-tie: the lobes' areas do not cancel, so it used to pass silently
    ("POLYGON ((-74.1 40.6, -73.9 40.8, -73.9 40.6, -74.1 40.7, -74.1 40.6))",
     "-74.033333, 40.666667"),
    # symmetric bow-tie: the lobes cancel, and it used to be called "zero area"
    ("POLYGON ((8 47, 9 48, 9 47, 8 48, 8 47))", "8.5, 47.5"),
    # a crossing in a hole, in the second polygon of a MultiPolygon
    ('{"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]], '
     '[[[10, 10], [20, 10], [20, 20], [10, 20], [10, 10]], '
     '[[12, 12], [14, 14], [14, 12], [12, 14], [12, 12]]]]}', "13, 13"),
])
def test_self_intersecting_polygon_is_refused_with_the_crossing(value, where):
    with pytest.raises(InvalidInput, match=f"self-intersecting at {where};"):
        parse_aoi(value)


def test_self_intersection_is_found_in_a_long_ring():
    import math

    circle = [[10 + math.cos(2 * math.pi * k / 5000), 45 + math.sin(2 * math.pi * k / 5000)]
              for k in range(5000)]
    assert planar.ring_crossing([*circle, circle[0]]) is None
    twisted = [*circle[:2500], [11.5, 46.5], [8.5, 43.5], *circle[2500:], circle[0]]
    crossing = planar.ring_crossing(twisted)
    assert crossing is not None
    x, y = crossing
    assert abs(y - 45 - (x - 10)) < 1e-9  # on the inserted diagonal


@pytest.mark.parametrize("ring", [
    [[0, 0], [4, 0], [4, 4], [3, 4], [3, 1], [1, 1], [1, 4], [0, 4], [0, 0]],  # a U, concave
    [[0, 0], [2, 0], [1, 1], [2, 2], [0, 2], [1, 1], [0, 0]],  # touches itself at a vertex
])
def test_concave_and_self_touching_rings_are_not_crossings(ring):
    assert planar.ring_crossing(ring) is None


def test_shapefile_path_gets_a_hint(tmp_path):
    path = tmp_path / "fields.shp"
    path.write_bytes(b"\x00\x00\x27\x0a binary")
    with pytest.raises(InvalidInput, match="export the layer as GeoJSON"):
        parse_aoi(str(path))


# --- the planar helpers the grid uses -------------------------------------------------------
def _shape(geometry: dict) -> PlanarShape:
    return PlanarShape(planar.flatten(geometry))


def test_rect_tests_cover_every_way_of_meeting():
    ring = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]
    hole = [[4, 4], [6, 4], [6, 6], [4, 6], [4, 4]]
    donut = _shape({"type": "Polygon", "coordinates": [ring, hole]})
    assert donut.intersects_rect(1, 1, 2, 2)  # rect inside the polygon
    assert donut.intersects_rect(-5, -5, 20, 20)  # polygon inside the rect
    assert donut.intersects_rect(-1, 5, 1, 6)  # edge crossing
    assert donut.intersects_rect(10, 10, 12, 12)  # touching a corner counts
    assert not donut.intersects_rect(4.5, 4.5, 5.5, 5.5)  # inside the hole
    assert not donut.intersects_rect(11, 0, 12, 1)  # outside
    line = _shape({"type": "LineString", "coordinates": [[0, 0], [10, 10]]})
    assert line.intersects_rect(4, 4.5, 6, 5)
    assert not line.intersects_rect(0, 5, 4, 10)  # a line has no inside
    point = _shape({"type": "Point", "coordinates": [3, 3]})
    assert point.intersects_rect(3, 3, 4, 4)
    assert not point.intersects_rect(3.1, 3, 4, 4)


def test_contains_point_in_concave_polygon():
    ring = [[0, 0], [10, 0], [10, 10], [5, 2], [0, 10], [0, 0]]
    shape = _shape({"type": "Polygon", "coordinates": [ring]})
    assert shape.contains_point(1, 1)
    assert not shape.contains_point(5, 8)


def test_clip_to_a_longitude_strip():
    part = ("polygon", [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]])
    (kind, rings), = planar.clip_part_x(part, 2, 5)
    assert kind == "polygon"
    assert {x for x, _ in rings[0]} == {2, 5}
    assert planar.clip_part_x(part, 20, 30) == []
    pieces = planar.clip_part_x(("line", [[0, 0], [10, 0], [10, 5], [0, 5]]), 2, 5)
    assert [piece[1] for piece in pieces] == [[[2, 0], [5, 0]], [[5, 5], [2, 5]]]


def test_densify_bounds_every_step():
    dense = planar.densify_points([[0, 0], [1, 0], [1, 0.3]], 0.1)
    assert len(dense) == 1 + 10 + 3
    steps = [max(abs(b[0] - a[0]), abs(b[1] - a[1])) for a, b in zip(dense, dense[1:])]
    assert max(steps) <= 0.1 + 1e-12
