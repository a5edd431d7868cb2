"""The Sentinel-2 tile grid, offline and exact: tile id ↔ CRS, pixel grid, footprint; AOI → tiles.

A tile is the MGRS 100 km square of the UTM zone named in its id, widened to 109,800 m
(10980 x 10980 pixels of 10 m) towards the east and the south, so neighbours overlap by
9.8 km and tiles reach past their zone's edge. Rules, each checked against real data
(tests/core/test_grid.py reads 25 Earth Search items; tile lists published by Element 84
and by users of Google Earth Engine confirm the naming):

* Pixel grid: the upper-left corner is the square's north-west corner snapped *outwards*
  to the 60 m grid of the zone (x0 = 60·floor(E/60), y0 = 60·ceil(N/60) in true northing,
  i.e. counted from the equator). 60 m is the coarsest Sentinel-2 band, so the 10, 20 and
  60 m rasters of a tile share one origin and every pixel edge lies on whole metres of a
  grid anchored at the projection's origin, not at the MGRS square. Real: 32TMT starts at
  (399960, 5300040), not (400000, 5300000).
* Lettering: columns cycle A-H, J-R, S-Z with the zone (1, 2, 3 …); rows A-V (no I, O)
  repeat every 2,000 km, shifted by five letters (start F) in even zones. The latitude
  band (C…X, 8°, X 12°) tells which 2,000 km cycle a row letter means.
* Band of a square that straddles a band boundary: the band holding the latitude of the
  100 km square's centre (not its south-west corner, not its north edge, not the 109.8 km
  tile's centre). Real: 32UMU (47.85°-48.75°N, centre in U), 27VVL (63.13°-64.02°N, in V
  although its north edge is in W), 23KMP (24.41°-23.51°S, centre 23.96°S in K, where the
  tile's centre would say J). Each square has exactly one name: no duplicate tiles.
* Which squares exist: those of zone z that overlap zone z in any band, however thinly
  (real 33UTT overlaps zone 33 by ~5 km; real 33WYV, named W by its centre, reaches zone 33
  only above 72°N, where 33X is widened to 21°E). Special zones: 32V is widened to
  3°-12°E (real 32VKK…32VKQ lie west of 6°E) while 31V keeps its full 0°-6°E (real 31VEF,
  31VFL lie east of 3°E); band X uses the Svalbard zones 31X 0°-9°E, 33X 9°-21°E, 35X
  21°-33°E, 37X 33°-42°E, and 32X, 34X, 36X do not exist.
* Coverage: the UTM part of MGRS, 80°S to 84°N (the polar caps use UPS, which has no
  Sentinel-2 tiles). A square straddling 84°N (80°S) with its centre beyond is still named
  X (C), so the grid reaches the limits Sentinel-2 promises; no real tile there was at hand
  to confirm it (acquisitions stop near 82.8°N). The catalog decides what was imaged.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from . import aoi as aoi_mod
from . import geometry as planar
from . import utm
from .contract import normalize_tile
from .errors import InvalidInput

TILE_SIZE = 109800  # metres: 10980 pixels of 10 m
SQUARE = 100000  # metres: the MGRS 100 km square
PIXEL_GRID = 60  # metres: the coarsest band; every tile origin lies on this grid
SOUTH_LIMIT, NORTH_LIMIT = -80.0, 84.0
BANDS = "CDEFGHJKLMNPQRSTUVWX"
ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"
COLUMN_SETS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
_SVALBARD = {31: (0.0, 9.0), 33: (9.0, 21.0), 35: (21.0, 33.0), 37: (33.0, 42.0)}
_FOOTPRINT_POINTS = 20  # per side: a tile's edges are curves in lon/lat
_DENSIFY_DEG = 0.05  # AOI edges are straight in lon/lat, curves in UTM


@dataclass(frozen=True)
class Tile:
    """One Sentinel-2 tile: its id, UTM CRS, 10 m pixel-grid origin and footprint."""

    tile: str
    epsg: int
    origin: tuple[float, float]
    #: GeoJSON Polygon in EPSG:4326 (lon, lat), 20 points per side; a MultiPolygon split at
    #: ±180 (RFC 7946) for the few tiles of zones 1 and 60 that cross the antimeridian
    footprint: dict = field(compare=False, repr=False)

    @property
    def zone(self) -> int:
        return self.epsg % 100

    @property
    def band(self) -> str:
        return self.tile[-3]

    @property
    def square(self) -> str:
        return self.tile[-2:]

    def bounds(self) -> tuple[float, float, float, float]:
        """minx, miny, maxx, maxy in the tile's EPSG (a 109,800 m square)."""
        x0, y0 = self.origin
        return x0, y0 - TILE_SIZE, x0 + TILE_SIZE, y0

    def transform(self, resolution: float = 10) -> tuple[float, ...]:
        """Affine 6-tuple (res, 0, x0, 0, -res, y0): rasterio's Affine order and STAC's
        proj:transform (GDAL's geotransform is (x0, res, 0, y0, 0, -res))."""
        res = float(resolution)
        if res <= 0:
            raise InvalidInput(f"resolution must be positive, got {resolution}")
        return (res, 0.0, self.origin[0], 0.0, -res, self.origin[1])

    def shape(self, resolution: float = 10) -> tuple[int, int]:
        """(rows, cols) at `resolution` metres: (10980, 10980) at 10 m, (1830, 1830) at 60 m."""
        count = TILE_SIZE / float(resolution) if resolution > 0 else 0.5
        if abs(count - round(count)) > 1e-9:
            raise InvalidInput(f"resolution {resolution} m does not divide the {TILE_SIZE} m "
                               "tile")
        return round(count), round(count)

    def to_dict(self) -> dict[str, Any]:
        return {"tile": self.tile, "epsg": self.epsg, "origin": list(self.origin),
                "bounds": list(self.bounds()), "footprint": copy.deepcopy(self.footprint)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tile:
        """Rebuilt from the id (the grid is the one source); InvalidInput if the rest differs."""
        tile = tile_info(str(data.get("tile", "")))
        if "epsg" in data and int(data["epsg"]) != tile.epsg:
            raise InvalidInput(f"tile {tile.tile} is in EPSG:{tile.epsg}, not {data['epsg']}")
        if "origin" in data and tuple(map(float, data["origin"])) != tile.origin:
            raise InvalidInput(f"tile {tile.tile} has origin {list(tile.origin)}, "
                               f"not {data['origin']}")
        return tile


# --- the lettering and the squares ---------------------------------------------------------
def band_of(lat: float) -> str | None:
    """Latitude band letter, None outside 80°S…84°N."""
    if not SOUTH_LIMIT <= lat < NORTH_LIMIT:
        return None
    return BANDS[min(19, int((lat - SOUTH_LIMIT) // 8))]


def zone_extent(zone: int, band: str) -> tuple[float, float] | None:
    """Longitude range of UTM zone `zone` in latitude band `band`; None if it does not exist."""
    if band == "X" and zone in (32, 34, 36):
        return None
    if band == "X" and zone in _SVALBARD:
        return _SVALBARD[zone]
    if band == "V" and zone == 32:
        return 3.0, 12.0
    west = -180.0 + 6.0 * (zone - 1)
    return west, west + 6.0


def _widest_extent(zone: int) -> tuple[float, float]:
    extents = [zone_extent(zone, b) for b in ("V", "X", "N")]
    return min(e[0] for e in extents if e), max(e[1] for e in extents if e)


def _letters(zone: int, col: int, row: int) -> str:
    """MGRS square letters of column `col` (easting / 100 km, 1…8) and row `row` (true
    northing / 100 km; the southern false northing is a whole number of 2,000 km cycles)."""
    offset = 5 if zone % 2 == 0 else 0
    return COLUMN_SETS[(zone - 1) % 3][col - 1] + ROW_LETTERS[(row + offset) % 20]


@cache
def _square_band(col: int, row: int) -> str | None:
    """Band of the latitude of the square's centre (the same in every zone). A square whose
    centre lies beyond 84°N (80°S) but which still reaches below (above) it is X (C): the
    grid covers the whole UTM part of MGRS, as Sentinel-2's "up to 84°N" promises."""
    lat = utm.inverse_tm((col + 0.5) * SQUARE, (row + 0.5) * SQUARE, 0.0)[1]
    band = band_of(lat)
    if band is None:
        # the edge nearer the equator, at the corner farther from the central meridian
        x_far = col * SQUARE if abs(col * SQUARE - 5e5) > abs((col + 1) * SQUARE - 5e5) \
            else (col + 1) * SQUARE
        near = utm.inverse_tm(x_far, (row if lat > 0 else row + 1) * SQUARE, 0.0)[1]
        if lat >= NORTH_LIMIT > near and lat < 89:
            return "X"
        if lat < SOUTH_LIMIT < near and lat > -89:
            return "C"
    return band


@cache
def _square_outline(col: int, row: int) -> tuple[tuple[float, float], ...]:
    """The square's boundary as (latitude, longitude from the central meridian), closed."""
    n = 16
    x0, y0 = col * SQUARE, row * SQUARE
    xy = ([(x0 + k * SQUARE / n, y0) for k in range(n)]
          + [(x0 + SQUARE, y0 + k * SQUARE / n) for k in range(n)]
          + [(x0 + SQUARE - k * SQUARE / n, y0 + SQUARE) for k in range(n)]
          + [(x0, y0 + SQUARE - k * SQUARE / n) for k in range(n)])
    outline = [utm.inverse_tm(x, y, 0.0)[::-1] for x, y in xy]
    return (*outline, outline[0])


def _square_exists(zone: int, col: int, row: int, band: str) -> bool:
    """Named by its centre's band, the square exists if that zone/band exists and the square
    overlaps the zone in *any* band (real 33WYV reaches zone 33 only above 72°N, where 33X is
    widened to 21°E)."""
    if zone_extent(zone, band) is None:
        return False
    outline = [list(p) for p in _square_outline(col, row)]
    lon0 = utm.central_meridian(zone)
    lats = [lat for lat, _ in outline]
    for index, letter in enumerate(BANDS):
        south = SOUTH_LIMIT + 8 * index
        north = NORTH_LIMIT if letter == "X" else south + 8
        extent = zone_extent(zone, letter)
        if extent is None or north <= min(lats) or south >= max(lats):
            continue
        for _, rings in planar.clip_part_x(("polygon", [outline]), south, north):
            lons = [lon0 + lon for _, lon in rings[0]]
            if min(lons) < extent[1] and max(lons) > extent[0]:
                return True
    return False


def _origin(col: int, row: int) -> tuple[int, int]:
    """Upper-left corner in true northing: snapped outwards to the 60 m grid (see above)."""
    x0 = (col * SQUARE // PIXEL_GRID) * PIXEL_GRID
    y0 = -((-(row + 1) * SQUARE) // PIXEL_GRID) * PIXEL_GRID
    return x0, y0


@cache
def _footprint_ring(col: int, row: int) -> tuple[tuple[float, float], ...]:
    """The tile's boundary, densified, as (longitude from the central meridian, latitude):
    the same for every zone, so a continent-sized AOI computes each row's shapes once."""
    x0, y0 = _origin(col, row)
    step = TILE_SIZE / _FOOTPRINT_POINTS
    y1 = y0 - TILE_SIZE
    ring_xy = ([(x0 + k * step, y1) for k in range(_FOOTPRINT_POINTS)]
               + [(x0 + TILE_SIZE, y1 + k * step) for k in range(_FOOTPRINT_POINTS)]
               + [(x0 + TILE_SIZE - k * step, y0) for k in range(_FOOTPRINT_POINTS)]
               + [(x0, y0 - k * step) for k in range(_FOOTPRINT_POINTS)])
    ring = [utm.inverse_tm(x, y, 0.0) for x, y in ring_xy]
    return (*ring, ring[0])


def _make_tile(zone: int, col: int, row: int, band: str) -> Tile:
    south = band < "N"
    x0, y0 = _origin(col, row)
    lon0 = utm.central_meridian(zone)
    ring = [[round(lon0 + lon, 9), round(lat, 9)] for lon, lat in _footprint_ring(col, row)]
    footprint = aoi_mod.split_antimeridian({"type": "Polygon", "coordinates": [ring]})
    false_northing = utm.FALSE_NORTHING_SOUTH if south else 0.0
    return Tile(tile=f"{zone}{band}{_letters(zone, col, row)}",
                epsg=utm.epsg_code(zone, south),
                origin=(float(x0), float(y0 + false_northing)), footprint=footprint)


# --- tile id → tile -------------------------------------------------------------------------
def tile_info(tile_id: str) -> Tile:
    """The tile named `tile_id` ('39QTA', 'T39QTA'); InvalidInput if the grid has no such tile."""
    tile = normalize_tile(tile_id)
    zone, band, col_letter, row_letter = int(tile[:-3]), tile[-3], tile[-2], tile[-1]
    columns = COLUMN_SETS[(zone - 1) % 3]
    if col_letter not in columns:
        raise InvalidInput(f"{tile} is not a Sentinel-2 tile: zone {zone} uses column letters "
                           f"{columns[0]}-{columns[-1]}")
    if zone_extent(zone, band) is None:
        raise InvalidInput(f"{tile} is not a Sentinel-2 tile: zone {zone} has no band X "
                           "(zones 31X, 33X, 35X and 37X are widened over Svalbard instead)")
    col = columns.index(col_letter) + 1
    offset = 5 if zone % 2 == 0 else 0
    first = (ROW_LETTERS.index(row_letter) - offset) % 20
    rows = [r for r in range(first - 100, 100, 20) if _square_band(col, r) == band]
    if not rows:
        raise InvalidInput(f"{tile} is not a Sentinel-2 tile: row {row_letter} of zone {zone} "
                           f"never lies in latitude band {band}")
    if not _square_exists(zone, col, rows[0], band):
        west, east = zone_extent(zone, band) or (0.0, 0.0)
        raise InvalidInput(f"{tile} is not a Sentinel-2 tile: square {col_letter}{row_letter} "
                           f"lies outside zone {zone}{band} ({west:g}° to {east:g}°)")
    return _make_tile(zone, col, rows[0], band)


# --- AOI → tiles ----------------------------------------------------------------------------
def tiles_for_aoi(aoi: Mapping[str, Any]) -> list[Tile]:
    """Every tile whose 109.8 km square meets the AOI, sorted by zone, band, square.

    `aoi` is a GeoJSON geometry (any type, also a Feature or FeatureCollection) in EPSG:4326;
    longitudes beyond ±180 (an unwrapped AOI) and MultiPolygons split at ±180 both work.
    Tiles of neighbouring zones are included where they reach the AOI. InvalidInput if the
    AOI reaches beyond 80°S…84°N or meets no tile.
    """
    if not isinstance(aoi, Mapping):
        raise InvalidInput(f"the AOI must be a GeoJSON geometry, got {type(aoi).__name__}")
    geometry = aoi_mod.clean_geometry(aoi_mod.geometry_of(aoi))
    aoi_mod.check_lonlat(geometry)
    aoi_mod.check_longitude_jumps(geometry)
    lats = [lat for _, lat in aoi_mod.iter_positions(geometry)]
    if max(lats) > NORTH_LIMIT or min(lats) < SOUTH_LIMIT:
        extreme = max(lats) if max(lats) > NORTH_LIMIT else min(lats)
        raise InvalidInput(f"the AOI reaches latitude {extreme:.2f}°; Sentinel-2 tiles cover "
                           "80°S to 84°N (the polar caps use UPS, which has no tiles)")
    per_zone: dict[int, list[planar.Part]] = {}
    for part in planar.flatten(geometry):
        for zone, west, east in _zone_strips(part):
            lon0 = utm.central_meridian(zone)
            for piece in planar.clip_part_x(part, west, east):
                dense = planar.densify_part(piece, _DENSIFY_DEG)
                per_zone.setdefault(zone, []).append(_project(dense, lon0))
    found: dict[str, Tile] = {}
    for zone, parts in per_zone.items():
        for col, row, band in _zone_hits(zone, planar.PlanarShape(parts)):
            tile = _make_tile(zone, col, row, band)
            found[tile.tile] = tile
    if not found:
        raise InvalidInput("the AOI meets no Sentinel-2 tile (is it beyond 80°S…84°N, or "
                           "empty?)")
    return sorted(found.values(), key=lambda t: (t.zone, t.tile[-3:]))


def _zone_strips(part: planar.Part) -> list[tuple[int, float, float]]:
    """(zone, west, east): zones whose tiles may reach the part, and the longitude strip (in the
    part's own, possibly unwrapped, longitudes) outside which no tile of the zone can reach.

    A tile touches its zone, so every point of it is within ~155 km (its diagonal) of the
    zone; in degrees of longitude that widens towards the poles.
    """
    positions = planar.part_positions(part)
    lons = [p[0] for p in positions]
    top = max(abs(p[1]) for p in positions)
    margin = 155.0 / (111.32 * math.cos(math.radians(min(top + 2.0, 86.0)))) + 0.5
    strips = []
    for zone in range(1, 61):
        west, east = _widest_extent(zone)
        for shift in (-720.0, -360.0, 0.0, 360.0, 720.0):
            lo, hi = west + shift - margin, east + shift + margin
            if lo <= max(lons) and hi >= min(lons):
                strips.append((zone, lo, hi))
    return strips


def _project(part: planar.Part, lon0: float) -> planar.Part:
    kind, coords = part
    if kind == "point":
        return kind, list(utm.forward_tm(coords[0], coords[1], lon0))
    if kind == "line":
        return kind, [list(utm.forward_tm(x, y, lon0)) for x, y in coords]
    return kind, [[list(utm.forward_tm(x, y, lon0)) for x, y in ring] for ring in coords]


def _zone_hits(zone: int, shape: planar.PlanarShape) -> list[tuple[int, int, str]]:
    """(col, row, band) of the zone's tiles whose 109.8 km square meets the projected AOI."""
    if shape.empty:
        return []
    xmin, ymin, xmax, ymax = shape.bbox
    cols = range(max(1, math.floor((xmin - TILE_SIZE) / SQUARE)),
                 min(8, math.floor((xmax + PIXEL_GRID) / SQUARE)) + 1)
    rows = range(math.floor((ymin - SQUARE) / SQUARE) - 1, math.floor(ymax / SQUARE) + 2)
    hits = []
    for row in rows:
        for col in cols:
            band = _square_band(col, row)
            if band is None or not _square_exists(zone, col, row, band):
                continue
            x0, y0 = _origin(col, row)
            if shape.intersects_rect(x0, y0 - TILE_SIZE, x0 + TILE_SIZE, y0):
                hits.append((col, row, band))
    return hits
