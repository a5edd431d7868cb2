"""The Sentinel-2 grid: real tiles' CRS and pixel origin, lettering, and AOI → tiles."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from qgis_rsbatch.core import grid, utm
from qgis_rsbatch.core.aoi import parse_aoi
from qgis_rsbatch.core.errors import InvalidInput
from qgis_rsbatch.core.geometry import PlanarShape, flatten

REAL_ITEMS = (Path(__file__).resolve().parents[3] / "shared" / "real-data" / "earth-search-v1"
              / "earth_search_v1_items.json")


def _real_items() -> list[dict]:
    if not REAL_ITEMS.is_file():
        return []
    return json.loads(REAL_ITEMS.read_text(encoding="utf-8"))["features"]


needs_real = pytest.mark.skipif(not REAL_ITEMS.is_file(), reason=f"{REAL_ITEMS} is absent")


def _ids(aoi: dict) -> list[str]:
    return [t.tile for t in grid.tiles_for_aoi(aoi)]


def _point(lon: float, lat: float) -> dict:
    return {"type": "Point", "coordinates": [lon, lat]}


def _utm_point(zone: int, x: float, y: float, south: bool = False) -> dict:
    return _point(*utm.inverse(x, y, zone, south))


# --- real tiles -----------------------------------------------------------------------------
@needs_real
@pytest.mark.parametrize("item", _real_items(), ids=lambda item: item["id"])
def test_real_item_crs_and_origin(item):
    props = item["properties"]
    tile = grid.tile_info(f"{props['mgrs:utm_zone']}{props['mgrs:latitude_band']}"
                          f"{props['mgrs:grid_square']}")
    red = item["assets"]["red"]
    assert tile.tile == item["id"].split("_")[1]
    assert tile.epsg == props["proj:epsg"]
    assert tile.origin == (red["proj:transform"][2], red["proj:transform"][5])
    assert list(tile.transform(10)) == red["proj:transform"][:6]
    assert list(tile.shape(10)) == red["proj:shape"]


@needs_real
@pytest.mark.parametrize("item", _real_items(), ids=lambda item: item["id"])
def test_real_item_geometry_lies_in_the_tile_and_finds_it(item):
    tile = grid.tile_info(item["id"].split("_")[1])
    xmin, ymin, xmax, ymax = tile.bounds()
    for lon, lat in item["geometry"]["coordinates"][0]:
        x, y = utm.forward(lon, lat, tile.zone, tile.epsg > 32700)
        assert xmin - 1 <= x <= xmax + 1
        assert ymin - 1 <= y <= ymax + 1
    lon0, lat0, lon1, lat1 = item["bbox"]
    footprint = PlanarShape(flatten(tile.footprint))
    assert footprint.intersects_rect(lon0, lat0, lon1, lat1)
    assert tile.tile in _ids(item["geometry"])


@pytest.mark.parametrize(("tile_id", "epsg", "origin"), [
    # recorded from Earth Search v1 items (proj:transform of the 10 m assets)
    ("32TMT", 32632, (399960, 5300040)), ("32TNT", 32632, (499980, 5300040)),
    ("32UMU", 32632, (399960, 5400000)), ("32UNU", 32632, (499980, 5400000)),
    ("39QTA", 32639, (199980, 2100000)), ("39QUA", 32639, (300000, 2100000)),
    ("20EPT", 32720, (600000, 3300040)), ("24MUV", 32724, (300000, 9500020)),
    ("24MVV", 32724, (399960, 9500020)), ("24MWV", 32724, (499980, 9500020)),
    ("24MXV", 32724, (600000, 9500020)), ("24MUA", 32724, (300000, 9600040)),
])
def test_origin_snaps_outwards_to_the_60m_grid(tile_id, epsg, origin):
    tile = grid.tile_info(tile_id)
    assert (tile.epsg, tile.origin) == (epsg, origin)
    assert tile.origin[0] % 60 == 0
    assert (tile.origin[1] - (1e7 if epsg > 32700 else 0)) % 60 == 0


# --- lettering and which tiles exist --------------------------------------------------------
@pytest.mark.parametrize("tile_id", [
    "48RXT",  # the seed's tile: zone 48 uses columns S-Z, so X is 600 km
    "31TCJ", "30TYN", "31UDQ",  # Toulouse, its western neighbour, Paris
    "32UMU", "32UNU",  # 47.85°-48.75°N: straddles 48°N, centre in U
    "27VVL", "26WPS",  # 63.13°-64.02°N is V; 63.99°-64.89°N is W (centre rule, not north edge)
    "23KMP", "22KDU",  # 24.41°-23.51°S: centre in K, the 109.8 km tile's centre would say J
    "13SFR", "50TMK",  # the squares MGRS converters name 13RFR and 50SMK
    "33UTP", "33UTT",  # overlap zone 33 by ~24 km and ~5 km only (Munich, Leipzig)
    "33WYV",  # named W, reaches zone 33 only above 72°N where 33X is widened
    "32VKM", "32VLK",  # Norway: 32V widened west of 6°E
    "31VEF", "31VFL",  # ... while 31V keeps its squares east of 3°E
    "31XEA", "33XVG", "37XEJ",  # Svalbard zones
])
def test_real_tile_names_exist(tile_id):
    assert grid.tile_info(tile_id).tile == tile_id
    assert grid.tile_info("T" + tile_id.lower()).tile == tile_id


@pytest.mark.parametrize(("tile_id", "message"), [
    ("13RFR", "row R of zone 13 never lies in latitude band R"),
    ("50SMK", "never lies in latitude band S"),
    ("32TMU", "never lies in latitude band T"),
    ("23JMP", "never lies in latitude band J"),
    ("27WVL", "never lies in latitude band W"),
    ("32XMA", "zone 32 has no band X"),
    ("34XEA", "zone 34 has no band X"),
    ("36XVA", "zone 36 has no band X"),
    ("32TAU", "zone 32 uses column letters J-R"),
    ("39QAA", "zone 39 uses column letters S-Z"),
    ("31TAK", "square AK lies outside zone 31T"),
    ("48XXA", "never lies in latitude band X"),
    ("32UMI", "is not a Sentinel-2 tile id"),
    ("61UMU", "is not a Sentinel-2 tile id"),
])
def test_invalid_tile_ids_say_why(tile_id, message):
    with pytest.raises(InvalidInput, match=message):
        grid.tile_info(tile_id)


def test_each_square_has_exactly_one_name():
    # row letters repeat every 2,000 km; with the band each id means one square, and
    # every real square found for an AOI is named back to itself
    for tile in grid.tiles_for_aoi(parse_aoi("5,45,15,60")):
        assert grid.tile_info(tile.tile) == tile


# --- the Tile value -------------------------------------------------------------------------
def test_tile_geometry_helpers():
    tile = grid.tile_info("39QTA")
    assert tile.bounds() == (199980.0, 1990200.0, 309780.0, 2100000.0)
    assert tile.transform() == (10.0, 0.0, 199980.0, 0.0, -10.0, 2100000.0)
    assert tile.transform(60)[0] == 60.0
    assert tile.shape(20) == (5490, 5490)
    assert tile.shape(60) == (1830, 1830)
    assert (tile.zone, tile.band, tile.square) == (39, "Q", "TA")
    with pytest.raises(InvalidInput, match="does not divide"):
        tile.shape(7)
    with pytest.raises(InvalidInput, match="does not divide"):
        tile.shape(0)
    with pytest.raises(InvalidInput, match="positive"):
        tile.transform(0)


def test_footprint_is_a_densified_lonlat_polygon_around_the_tile():
    tile = grid.tile_info("32TMT")
    ring = tile.footprint["coordinates"][0]
    assert tile.footprint["type"] == "Polygon"
    assert len(ring) == 4 * 20 + 1
    assert ring[0] == ring[-1]
    centre = utm.inverse(399960 + 54900, 5300040 - 54900, 32)
    assert PlanarShape(flatten(tile.footprint)).contains_point(*centre)
    for lon, lat in ring:  # every footprint point lies on the tile's UTM boundary
        x, y = utm.forward(lon, lat, 32)
        assert min(abs(x - 399960), abs(x - 509760), abs(y - 5190240),
                   abs(y - 5300040)) < 1e-3


def test_footprint_across_the_antimeridian_is_split():
    tile = grid.tile_info("60KZG")
    assert tile.footprint["type"] == "MultiPolygon"
    lons = [p[0] for poly in tile.footprint["coordinates"] for p in poly[0]]
    assert min(lons) == -180.0 or max(lons) == 180.0
    assert all(-180.0 <= lon <= 180.0 for lon in lons)


def test_to_dict_and_back():
    tile = grid.tile_info("20EPT")
    data = json.loads(json.dumps(tile.to_dict()))
    assert data["tile"] == "20EPT"
    assert data["epsg"] == 32720
    assert data["origin"] == [600000.0, 3300040.0]
    assert data["footprint"]["type"] == "Polygon"
    assert grid.Tile.from_dict(data) == tile
    assert hash(grid.Tile.from_dict(data)) == hash(tile)
    with pytest.raises(InvalidInput, match="has origin"):
        grid.Tile.from_dict({**data, "origin": [600000, 3300000]})


# --- AOI → tiles: hand-checked cases --------------------------------------------------------
def test_point_in_the_four_tile_overlap_of_a_corner():
    # 32TMT/32TNT overlap for x in [499980, 509760]; 32TMT/32TMS for y in [5190240, 5200000]
    assert _ids(_utm_point(32, 505000, 5195000)) == ["32TMS", "32TMT", "32TNS", "32TNT"]


def test_point_in_a_two_tile_overlap_and_in_one_tile_only():
    assert _ids(_utm_point(32, 505000, 5250000)) == ["32TMT", "32TNT"]
    assert _ids(_utm_point(32, 450000, 5250000)) == ["32TMT"]


def test_39qta_from_a_point_inside_its_footprint():
    tile = grid.tile_info("39QTA")
    lon, lat = utm.inverse(199980 + 54900, 2100000 - 54900, 39)
    found = grid.tiles_for_aoi(_point(lon, lat))
    assert "39QTA" in [t.tile for t in found]
    for other in found:  # zone 38's edge tiles reach past 48°E too
        assert PlanarShape(flatten(other.footprint)).contains_point(lon, lat)
    assert tile in found


def test_aoi_across_zone_boundary_at_6e_has_tiles_of_both_zones():
    ids = _ids(parse_aoi("5.8,47.2,6.2,47.4"))
    assert {i[:2] for i in ids} == {"31", "32"}
    assert "31TGN" in ids
    assert "32TKT" in ids


def test_aoi_across_zone_boundary_at_12e_has_tiles_of_both_zones():
    ids = _ids(parse_aoi("LINESTRING (11.9 48.1, 12.1 48.1)"))
    assert {i[:2] for i in ids} == {"32", "33"}
    assert "33UTP" in ids


def test_aoi_across_9e_meets_both_columns_of_zone_32():
    assert _ids(parse_aoi("8.9,47.0,9.1,47.0001")) == ["32TMT", "32TNT"]


def test_norway_gets_the_widened_32v_and_31v():
    ids = _ids(_point(4.8, 60.5))
    assert any(i.startswith("32V") for i in ids)
    assert any(i.startswith("31V") for i in ids)


def test_svalbard_has_no_32x_34x_36x():
    for lon in (7.0, 9.0, 12.0, 20.0, 21.0, 33.0):
        ids = _ids(_point(lon, 78.5))
        assert ids
        assert {i[:3] for i in ids} <= {"31X", "33X", "35X", "37X"}, (lon, ids)


def test_top_row_below_84n_is_covered():
    assert _ids(_point(15.0, 83.95))


# --- AOI → tiles: exhaustive consistency ----------------------------------------------------
def _containing_tiles(lon: float, lat: float) -> set[str]:
    """Brute force: every valid id (zones ±3, bands ±1) whose 109.8 km square holds the point."""
    home = int((lon + 180) // 6) % 60 + 1
    band = grid.BANDS.index(grid.band_of(lat) or "X")
    found = set()
    for offset in range(-3, 4):
        zone = (home - 1 + offset) % 60 + 1
        x, y = utm.forward_tm(lon, lat, utm.central_meridian(zone))
        for col in range(1, 9):
            for row in range(int(y // 1e5) - 2, int(y // 1e5) + 2):
                # the brief's origin rule, restated: skip squares far from the point
                x0, y0 = 60 * math.floor(col * 1e5 / 60), 60 * math.ceil((row + 1) * 1e5 / 60)
                if not (x0 <= x <= x0 + grid.TILE_SIZE and y0 - grid.TILE_SIZE <= y <= y0):
                    continue
                letters = grid._letters(zone, col, row)
                for letter in grid.BANDS[max(0, band - 1):band + 2]:
                    try:
                        tile = grid.tile_info(f"{zone}{letter}{letters}")
                    except InvalidInput:
                        continue
                    xmin, ymin, xmax, ymax = tile.bounds()
                    true_y = y + (1e7 if tile.epsg > 32700 else 0)
                    if xmin <= x <= xmax and ymin <= true_y <= ymax:
                        found.add(tile.tile)
    return found


def test_random_points_get_exactly_the_tiles_that_contain_them():
    rng = random.Random(2026)
    points = [(rng.uniform(-180, 180), rng.uniform(-80, 84)) for _ in range(120)]
    points += [(5.99, 47.0), (6.01, 61.0), (3.2, 59.0), (12.0, 72.1), (8.9, 71.9),
               (179.95, -16.0), (-179.95, 65.0), (-103.0, 31.96), (116.38, 39.98),
               (-46.0, -24.0), (0.0, 0.0), (9.0, 55.97), (4.0, 56.1), (40.0, 83.99),
               (-150.0, -79.99), (21.0, 72.0), (42.0, 75.0)]
    for lon, lat in points:
        assert set(_ids(_point(lon, lat))) == _containing_tiles(lon, lat), (lon, lat)


# --- the antimeridian, the poles, bad AOIs --------------------------------------------------
def test_antimeridian_in_every_spelling_gives_zones_60_and_1():
    split = parse_aoi("179.5,-17.5,-179.5,-16.5")
    unwrapped = {"type": "Polygon", "coordinates": [
        [[179.5, -17.5], [180.5, -17.5], [180.5, -16.5], [179.5, -16.5], [179.5, -17.5]]]}
    ids = _ids(split)
    assert ids == _ids(unwrapped)
    assert {i[:-3] for i in ids} == {"1", "60"}
    assert "60KZG" in ids
    assert "1KAB" in ids


def test_edge_jumping_across_the_map_is_refused():
    with pytest.raises(InvalidInput, match="spans more than 180°"):
        grid.tiles_for_aoi({"type": "LineString", "coordinates": [[179.5, 0], [-179.5, 0]]})


@pytest.mark.parametrize(("aoi", "message"), [
    (_point(10.0, 85.0), "reaches latitude 85.00°"),
    (_point(-60.0, -81.0), "reaches latitude -81.00°"),
    ({"type": "Polygon", "coordinates": [[[0, 83], [10, 83], [10, 86], [0, 83]]]},
     "80°S to 84°N"),
    ({"type": "Point", "coordinates": [9, 95]}, "not a longitude/latitude"),
    ({"type": "GeometryCollection", "geometries": []}, "empty"),
    ({"type": "Polygon", "coordinates": []}, "empty"),
    ("POINT (9 47)", "must be a GeoJSON geometry"),
])
def test_aois_without_tiles_are_refused(aoi, message):
    with pytest.raises(InvalidInput, match=message):
        grid.tiles_for_aoi(aoi)


def test_feature_collections_are_accepted():
    collection = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": _utm_point(32, 450000, 5250000)}]}
    assert _ids(collection) == ["32TMT"]


# --- scale and isolation --------------------------------------------------------------------
FRANCE = [[-1.8, 43.4], [-1.4, 46.2], [-2.2, 47.1], [-4.7, 47.9], [-4.6, 48.6], [-1.6, 48.7],
          [-1.9, 49.7], [0.2, 49.7], [1.6, 50.9], [2.5, 51.1], [4.2, 49.9], [5.9, 49.5],
          [8.2, 49.0], [7.6, 47.6], [6.8, 47.4], [6.0, 46.2], [7.0, 45.9], [6.6, 45.1],
          [7.0, 44.2], [7.5, 43.8], [6.2, 43.1], [4.3, 43.5], [3.1, 43.1], [3.0, 42.5],
          [1.7, 42.5], [0.7, 42.8], [-1.8, 43.4]]


def test_country_sized_aoi_is_complete():
    # how long it takes is measured by `make bench` (bench/grid_bench.py), not asserted here
    tiles = grid.tiles_for_aoi({"type": "Polygon", "coordinates": [FRANCE]})
    ids = [t.tile for t in tiles]
    assert ids == sorted(ids, key=lambda i: (int(i[:-3]), i[-3:]))
    assert {"31UDQ", "31TCJ", "32ULU", "30UUU", "30TXN"} <= set(ids)
    assert 80 < len(ids) < 140


def test_core_grid_needs_only_the_standard_library():
    code = (
        "import sys\n"
        "for name in ('qgis', 'PyQt5', 'PyQt6', 'rasterio', 'pyproj', 'shapely', 'numpy'):\n"
        "    sys.modules[name] = None\n"
        "from qgis_rsbatch.core import grid, aoi\n"
        "assert [t.tile for t in grid.tiles_for_aoi(aoi.parse_aoi('POINT (9 47)'))]\n"
        "assert aoi.parse_aoi('500000,5200000,510000,5210000', crs='EPSG:32632')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
