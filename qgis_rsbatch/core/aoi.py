"""Areas of interest: whatever a user types or points at, as GeoJSON in EPSG:4326.

`parse_aoi` takes WKT, GeoJSON (text, dict, or a file holding a geometry, Feature or
FeatureCollection), or a bbox, in EPSG:4326, a WGS 84 / UTM zone (handled by `utm`, no
pyproj), or any other CRS (pyproj, imported only then). Straight edges in the source CRS
are densified before they are transformed, because a straight line in metres is a curve
in degrees. An AOI crossing the antimeridian comes back as a MultiPolygon split at ±180
(RFC 7946 §3.1.9), so the cell contract's [-180, 180] check holds.

The planar geometry underneath (parts, clipping, densifying, shapes) is in `geometry`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Union

from . import utm
from .errors import InvalidInput, require
from .geometry import (
    Part,
    clip_part_x,
    densify_geometry,
    densify_points,
    flatten,
    geometry_from_parts,
    ring_area,
    ring_crossing,
    translate_part,
)

WGS84 = 4326
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_BBOX_RE = re.compile(rf"^\s*({_NUMBER})\s*[,; ]\s*({_NUMBER})\s*[,; ]\s*({_NUMBER})"
                      rf"\s*[,; ]\s*({_NUMBER})\s*$")
_WKT_RE = re.compile(r"^\s*(SRID=(\d+)\s*;)?\s*(POINT|MULTIPOINT|LINESTRING|MULTILINESTRING|"
                     r"POLYGON|MULTIPOLYGON|GEOMETRYCOLLECTION)\b", re.IGNORECASE)
_WKT_TOKEN = re.compile(rf"\s*(?:(\()|(\))|(,)|({_NUMBER})|([A-Za-z]+))")
_EPSG_RE = re.compile(r"^(?:EPSG:{1,2}|urn:ogc:def:crs:EPSG:[\d.]*:|"
                      r"https?://www\.opengis\.net/def/crs/EPSG/[\d.]+/)?(\d{4,6})$", re.I)
_CRS84 = {"crs84", "ogc:crs84", "urn:ogc:def:crs:ogc:1.3:crs84", "urn:ogc:def:crs:ogc::crs84",
          "http://www.opengis.net/def/crs/ogc/1.3/crs84", "wgs84"}
_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")
CrsLike = Union[str, int, None]


# --- CRS ------------------------------------------------------------------------------------
def parse_crs(crs: CrsLike) -> int | str:
    """EPSG code for 'EPSG:32632', 32632, '4326', OGC URNs/URLs and CRS84; else the text."""
    if crs is None or crs == "":
        return WGS84
    if isinstance(crs, bool):
        raise InvalidInput(f"crs {crs!r} is not a coordinate reference system")
    if isinstance(crs, int):
        return crs
    text = str(crs).strip()
    if text.lower() in _CRS84:
        return WGS84
    match = _EPSG_RE.match(text)
    return int(match.group(1)) if match else text


def crs_label(crs: int | str) -> str:
    return f"EPSG:{crs}" if isinstance(crs, int) else str(crs)


# --- parsing --------------------------------------------------------------------------------
def parse_aoi(value: str | os.PathLike | Mapping[str, Any] | Sequence[float],
              crs: CrsLike = None) -> dict:
    """Any AOI form → a GeoJSON geometry in EPSG:4326 (lon, lat); InvalidInput says what is wrong.

    `value`: WKT (optionally 'SRID=…;'), GeoJSON text or dict (geometry, Feature,
    FeatureCollection), a path to a GeoJSON/WKT file, or a bbox 'minx,miny,maxx,maxy'.
    `crs` overrides the CRS; the default is the GeoJSON's legacy "crs" member, else EPSG:4326.
    A FeatureCollection of polygons becomes one MultiPolygon holding all of them (overlaps are
    kept, not dissolved). A bbox in EPSG:4326 with minx > maxx crosses the antimeridian.
    """
    geometry, member_crs, bbox = _read(value)
    source = parse_crs(crs) if crs not in (None, "") else parse_crs(member_crs)
    if bbox is not None:
        geometry = _bbox_polygon(bbox, source)
    geometry = clean_geometry(geometry)
    if source == WGS84:
        check_lonlat(geometry)
        check_longitude_jumps(geometry)
    else:
        geometry = _to_wgs84(geometry, source)
    return split_antimeridian(geometry)


def _read(value: Any) -> tuple[dict, Any, tuple[float, ...] | None]:
    """(geometry, legacy crs member, bbox) from any accepted input form."""
    if isinstance(value, Mapping):
        return (*_from_geojson(value), None)
    if isinstance(value, os.PathLike):
        return _read_file(os.fspath(value))
    if isinstance(value, (list, tuple)):
        if len(value) == 4 and all(_is_number(v) for v in value):
            return {}, None, tuple(float(v) for v in value)
        raise InvalidInput("an AOI given as a list must be a bbox [minx, miny, maxx, maxy]")
    if not isinstance(value, str):
        raise InvalidInput(f"cannot read an AOI from a {type(value).__name__}")
    return _read_text(value)


def _read_text(value: str) -> tuple[dict, Any, tuple[float, ...] | None]:
    text = value.strip()
    if not text:
        raise InvalidInput("the AOI is empty")
    if text[0] in "{[":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"the AOI looks like JSON but does not parse: {exc}") from exc
        return _read(data)
    if _WKT_RE.match(text):
        geometry, srid = parse_wkt(text)
        return geometry, srid, None
    match = _BBOX_RE.match(text)
    if match:
        return {}, None, tuple(float(g) for g in match.groups())
    path = os.path.expanduser(text)
    if os.path.isfile(path):
        return _read_file(path)
    short = text if len(text) <= 60 else text[:57] + "..."
    raise InvalidInput(f"AOI '{short}' is not WKT, GeoJSON, a bbox 'minx,miny,maxx,maxy' "
                       "or an existing file")


def _read_file(path: str) -> tuple[dict, Any, tuple[float, ...] | None]:
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read AOI file {path}: {exc}") from exc
    if not text.strip():
        raise InvalidInput(f"AOI file {path} is empty")
    try:
        return _read(text)
    except InvalidInput as exc:
        if os.path.splitext(path)[1].lower() in (".shp", ".gpkg", ".kml", ".gml"):
            raise InvalidInput(f"AOI file {path}: only GeoJSON or WKT files are read here; "
                               "export the layer as GeoJSON") from exc
        raise InvalidInput(f"AOI file {path}: {exc}") from exc


def geometry_of(data: Mapping[str, Any]) -> dict:
    """The geometry of a GeoJSON geometry, Feature or FeatureCollection (see parse_aoi)."""
    return _from_geojson(data)[0]


def _from_geojson(data: Mapping[str, Any]) -> tuple[dict, Any]:
    """A geometry, Feature or FeatureCollection → (geometry, legacy "crs" member name)."""
    member = data.get("crs")
    crs = member.get("properties", {}).get("name") if isinstance(member, Mapping) else None
    kind = data.get("type")
    if kind == "Feature":
        if not isinstance(data.get("geometry"), Mapping):
            raise InvalidInput("the GeoJSON Feature has no geometry")
        return _from_geojson({"crs": member, **data["geometry"]})[0], crs
    if kind == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list) or not features:
            raise InvalidInput("the GeoJSON FeatureCollection has no features")
        geometries = []
        for index, feature in enumerate(features):
            if not isinstance(feature, Mapping) or not isinstance(feature.get("geometry"),
                                                                  Mapping):
                raise InvalidInput(f"feature {index} of the FeatureCollection has no geometry")
            geometries.append(dict(feature["geometry"]))
        return _merge(geometries), crs
    if kind in _TYPES or kind == "GeometryCollection":
        return {k: v for k, v in data.items() if k != "crs"}, crs
    raise InvalidInput(f"GeoJSON type {kind!r} is not a geometry, Feature or FeatureCollection")


def _merge(geometries: list[dict]) -> dict:
    """All polygons → one MultiPolygon (likewise points, lines); mixed kinds → a collection."""
    kinds = {g.get("type", "").replace("Multi", "") for g in geometries}
    if len(kinds) == 1 and kinds <= {"Polygon", "Point", "LineString"}:
        kind = kinds.pop()
        coords: list = []
        for g in geometries:
            single = g["type"] == kind
            coords.extend([g.get("coordinates")] if single else g.get("coordinates") or [])
        return {"type": f"Multi{kind}", "coordinates": coords}
    return {"type": "GeometryCollection", "geometries": geometries}


def parse_wkt(text: str) -> tuple[dict, int | None]:
    """WKT/EWKT (2D, Z, M or ZM; extra ordinates dropped) → (GeoJSON geometry, SRID or None)."""
    match = _WKT_RE.match(text)
    if not match:
        raise InvalidInput("the AOI is not WKT")
    srid = int(match.group(2)) if match.group(2) else None
    tokens = []
    position = match.end(1) if match.group(1) else 0
    body = text[position:].rstrip().rstrip(";")
    for token in _WKT_TOKEN.finditer(body):
        tokens.append(token.group(0).strip().upper())
    if "".join(t for t in tokens) != re.sub(r"\s+", "", body).upper():
        raise InvalidInput("the WKT has characters that are not part of a geometry")
    tokens.reverse()
    geometry = _wkt_geometry(tokens)
    if tokens:
        raise InvalidInput(f"the WKT has unexpected text after the geometry: {tokens[-1]!r}")
    return geometry, srid


def _wkt_geometry(tokens: list[str]) -> dict:
    if not tokens:
        raise InvalidInput("the WKT ends early")
    name = tokens.pop()
    kinds = {k.upper(): k for k in (*_TYPES, "GeometryCollection")}
    if name not in kinds:
        raise InvalidInput(f"the WKT has {name!r} where a geometry type was expected")
    while tokens and tokens[-1] in ("Z", "M", "ZM"):
        tokens.pop()
    if tokens and tokens[-1] == "EMPTY":
        tokens.pop()
        key = "geometries" if name == "GEOMETRYCOLLECTION" else "coordinates"
        return {"type": kinds[name], key: []}
    if name == "GEOMETRYCOLLECTION":
        _expect(tokens, "(")
        parts = [_wkt_geometry(tokens)]
        while tokens and tokens[-1] == ",":
            tokens.pop()
            parts.append(_wkt_geometry(tokens))
        _expect(tokens, ")")
        return {"type": kinds[name], "geometries": parts}
    depth = {"POINT": 0, "LINESTRING": 1, "MULTIPOINT": 1, "POLYGON": 2,
             "MULTILINESTRING": 2, "MULTIPOLYGON": 3}[name]
    coords = _wkt_nested(tokens, depth)
    if name == "POINT":
        coords = coords[0]
    elif name == "MULTIPOINT":  # both MULTIPOINT (1 2, 3 4) and MULTIPOINT ((1 2), (3 4))
        coords = [c[0] if isinstance(c[0], list) else c for c in coords]
    return {"type": kinds[name], "coordinates": coords}


def _wkt_nested(tokens: list[str], depth: int) -> list:
    """A parenthesised list; depth 0 holds positions (numbers separated by spaces)."""
    _expect(tokens, "(")
    items: list = []
    while True:
        if depth == 0 or (tokens and tokens[-1] != "("):
            numbers = []
            while tokens and tokens[-1] not in ("(", ")", ","):
                try:
                    numbers.append(float(tokens.pop()))
                except ValueError as exc:
                    raise InvalidInput("the WKT has a coordinate that is not a number") from exc
            if len(numbers) < 2:
                raise InvalidInput("the WKT has a position with fewer than 2 coordinates")
            items.append(numbers[:2])
        else:
            items.append(_wkt_nested(tokens, depth - 1))
        if tokens and tokens[-1] == ",":
            tokens.pop()
            continue
        _expect(tokens, ")")
        return items


def _expect(tokens: list[str], token: str) -> None:
    if not tokens or tokens[-1] != token:
        found = repr(tokens[-1]) if tokens else "the end"
        raise InvalidInput(f"the WKT has {found} where '{token}' was expected")
    tokens.pop()


def _bbox_polygon(bbox: tuple[float, ...], crs: int | str) -> dict:
    minx, miny, maxx, maxy = bbox
    if not all(math.isfinite(v) for v in bbox):
        raise InvalidInput(f"bbox {list(bbox)} has a value that is not a finite number")
    if miny >= maxy:
        raise InvalidInput(f"bbox {list(bbox)} has miny {miny} >= maxy {maxy}; "
                           "the order is minx,miny,maxx,maxy")
    if minx == maxx:
        raise InvalidInput(f"bbox {list(bbox)} has no width (minx == maxx)")
    if minx > maxx:
        if crs != WGS84 or not (-180 <= maxx < minx <= 180):
            raise InvalidInput(f"bbox {list(bbox)} has minx {minx} > maxx {maxx}; only an "
                               "EPSG:4326 bbox may do that (to cross the antimeridian)")
        if maxx + 360.0 - minx >= 180.0:
            raise InvalidInput(f"bbox {list(bbox)} has minx {minx} > maxx {maxx}: read as "
                               f"crossing the antimeridian it spans {maxx + 360 - minx:g}° of "
                               "longitude; swap minx and maxx if that is not meant")
        maxx += 360.0  # unwrapped; split at ±180 later
    ring = [[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]
    if crs == WGS84:  # no edge may span 180° or more of longitude (see check_longitude_jumps)
        ring = densify_points(ring, 90.0)
    return {"type": "Polygon", "coordinates": [ring]}


# --- validation -----------------------------------------------------------------------------
def clean_geometry(geometry: Mapping[str, Any]) -> dict:
    """Check structure and numbers, drop Z, close rings; InvalidInput on anything malformed."""
    kind = geometry.get("type")
    if kind == "GeometryCollection":
        members = geometry.get("geometries")
        if not isinstance(members, list) or not members:
            raise InvalidInput("the AOI is empty (a GeometryCollection with no geometries)")
        return {"type": kind, "geometries": [clean_geometry(g) for g in members]}
    if kind not in _TYPES:
        raise InvalidInput(f"the AOI has geometry type {kind!r}; expected one of "
                           f"{', '.join(_TYPES)}")
    depth = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2,
             "Polygon": 2, "MultiPolygon": 3}[kind]
    coords = geometry.get("coordinates")
    if coords is None or (isinstance(coords, list) and not coords):
        raise InvalidInput(f"the AOI is empty (a {kind} without coordinates)")
    try:
        cleaned = _clean(coords, depth, kind)
    except InvalidInput:
        raise
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise InvalidInput(f"the AOI {kind} has malformed coordinates") from exc
    return {"type": kind, "coordinates": cleaned}


def _clean(coords: Any, depth: int, kind: str) -> Any:
    if depth == 0:
        if isinstance(coords, (str, bytes)) or len(coords) < 2:
            raise InvalidInput(f"the AOI {kind} has a position with fewer than 2 numbers")
        x, y = float(coords[0]), float(coords[1])
        if not (math.isfinite(x) and math.isfinite(y)) or not all(map(_is_number, coords[:2])):
            raise InvalidInput(f"the AOI {kind} has a position {list(coords)} that is not "
                               "two finite numbers")
        return [x, y]
    if not isinstance(coords, list) or not coords:
        raise InvalidInput(f"the AOI {kind} has an empty or malformed part")
    items = [_clean(c, depth - 1, kind) for c in coords]
    is_ring = kind in ("Polygon", "MultiPolygon") and depth == 1
    if is_ring:
        if items[0] != items[-1]:
            items.append(list(items[0]))
        if len({tuple(p) for p in items}) < 3:
            raise InvalidInput(f"the AOI {kind} has a ring with fewer than 3 distinct positions")
    if kind in ("Polygon", "MultiPolygon") and depth == 2:
        for ring in items:
            crossing = ring_crossing(ring)
            if crossing is not None:  # in the AOI's own coordinates: lon, lat in EPSG:4326
                raise InvalidInput(f"the AOI {kind} is self-intersecting at "
                                   f"{_coordinate(crossing[0])}, {_coordinate(crossing[1])}; "
                                   "draw it without crossing edges (or split it in two)")
    if kind in ("Polygon", "MultiPolygon") and depth == 2 and ring_area(items[0]) == 0:
        raise InvalidInput(f"the AOI {kind} has a polygon with zero area")
    if kind in ("LineString", "MultiLineString") and depth == 1 and len(items) < 2:
        raise InvalidInput(f"the AOI {kind} has a line with fewer than 2 positions")
    return items


def _coordinate(value: float) -> str:
    """A coordinate to 6 decimals (10 cm in degrees), without trailing zeros."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_lonlat(geometry: Mapping[str, Any]) -> None:
    """InvalidInput for positions that cannot be longitude/latitude (lat 95, x 500000…)."""
    for lon, lat in iter_positions(geometry):
        if abs(lat) > 90 or abs(lon) > 360:
            hint = ("it looks like projected metres: pass the AOI's crs (e.g. 'EPSG:32632')"
                    if max(abs(lon), abs(lat)) > 1000 else
                    "coordinates must be longitude, latitude (x, y) in EPSG:4326")
            raise InvalidInput(f"AOI position ({lon:g}, {lat:g}) is not a longitude/latitude; "
                               f"{hint}")


def check_longitude_jumps(geometry: Mapping[str, Any]) -> None:
    """An edge spanning more than 180° of longitude almost surely meant to cross ±180."""
    for _kind, coords in _edge_sequences(geometry):
        for (x1, y1), (x2, y2) in zip(coords, coords[1:]):
            if abs(x2 - x1) > 180:
                raise InvalidInput(
                    f"AOI edge ({x1:g}, {y1:g}) → ({x2:g}, {y2:g}) spans more than 180° of "
                    "longitude; to cross the antimeridian give longitudes beyond 180 (e.g. "
                    "190 for -170) or split the polygon at ±180 (RFC 7946)")


def iter_positions(geometry: Mapping[str, Any]) -> Iterable[tuple[float, float]]:
    for _kind, coords in _edge_sequences(geometry):
        yield from ((x, y) for x, y in coords)


def _edge_sequences(geometry: Mapping[str, Any]) -> Iterable[tuple[str, list]]:
    for kind, coords in flatten(geometry):
        if kind == "point":
            yield kind, [coords]
        elif kind == "line":
            yield kind, coords
        else:
            yield from ((kind, ring) for ring in coords)


# --- transforms -----------------------------------------------------------------------------
def _to_wgs84(geometry: dict, crs: int | str) -> dict:
    """Densify in the source CRS, transform every position, return lon/lat (unwrapped)."""
    label = crs_label(crs)
    zone = utm.parse_epsg(crs) if isinstance(crs, int) else None
    positions = list(iter_positions(geometry))
    if all(abs(x) <= 180 and abs(y) <= 90 for x, y in positions):
        raise InvalidInput(f"the AOI coordinates look like longitude/latitude, not {label}; "
                           "leave crs empty (EPSG:4326) or give projected coordinates")
    xs = [x for x, _ in positions]
    ys = [y for _, y in positions]
    step = max(math.hypot(max(xs) - min(xs), max(ys) - min(ys)) / 256, 1e-9)
    dense = densify_geometry(geometry, step)
    if zone is not None:
        number, south = zone
        lon0 = utm.central_meridian(number)
        if not all(-1e6 < x < 2e6 and -1e6 < y < 2e7 for x, y in positions):
            raise InvalidInput(f"the AOI coordinates are not plausible {label} metres "
                               f"(eastings near 500000, northings 0…10000000)")
        false_northing = utm.FALSE_NORTHING_SOUTH if south else 0.0

        def transform(x: float, y: float) -> list[float]:
            return list(utm.inverse_tm(x, y - false_northing, lon0))
    else:
        pyproj = require("pyproj", f"an AOI in {label}")
        try:
            transformer = pyproj.Transformer.from_crs(label if isinstance(crs, int) else crs,
                                                      "EPSG:4326", always_xy=True)
        except pyproj.exceptions.CRSError as exc:
            raise InvalidInput(f"crs {label} is not a coordinate reference system pyproj "
                               f"knows: {exc}") from exc

        def transform(x: float, y: float) -> list[float]:
            lon, lat = transformer.transform(x, y)
            return [lon, lat]
    result = unwrap_longitudes(map_positions(dense, transform))
    for lon, lat in iter_positions(result):
        if not (math.isfinite(lon) and math.isfinite(lat)) or abs(lat) > 90:
            raise InvalidInput(f"the AOI does not transform from {label} to longitude/latitude "
                               "(coordinates outside the CRS's area?)")
    return result


def map_positions(geometry: Mapping[str, Any], fn: Callable[[float, float], list]) -> dict:
    """A copy of `geometry` with fn(x, y) applied to every position."""
    kind = geometry["type"]
    if kind == "GeometryCollection":
        return {"type": kind, "geometries": [map_positions(g, fn) for g in
                                             geometry["geometries"]]}

    def walk(coords: Any) -> Any:
        if coords and not isinstance(coords[0], list):
            return fn(coords[0], coords[1])
        return [walk(c) for c in coords]
    return {"type": kind, "coordinates": walk(geometry["coordinates"])}


def unwrap_longitudes(geometry: dict) -> dict:
    """Make each line or ring continuous in longitude (steps below 180°) after a transform."""
    def fix(coords: list) -> list:
        out = [list(coords[0])]
        for lon, lat in coords[1:]:
            out.append([lon + 360.0 * round((out[-1][0] - lon) / 360.0), lat])
        return out

    def walk(kind: str, coords: Any) -> Any:
        if kind in ("LineString",):
            return fix(coords)
        if kind in ("Polygon", "MultiLineString"):
            return [fix(c) for c in coords]
        if kind == "MultiPolygon":
            return [[fix(r) for r in p] for p in coords]
        return coords
    if geometry["type"] == "GeometryCollection":
        return {"type": "GeometryCollection",
                "geometries": [unwrap_longitudes(g) for g in geometry["geometries"]]}
    return {"type": geometry["type"], "coordinates": walk(geometry["type"],
                                                          geometry["coordinates"])}


def split_antimeridian(geometry: dict) -> dict:
    """Longitudes beyond ±180 → parts cut at ±180 and shifted into [-180, 180] (RFC 7946)."""
    if all(-180 <= lon <= 180 for lon, _ in iter_positions(geometry)):
        return geometry
    parts: list[Part] = []
    for shift in (-720.0, -360.0, 0.0, 360.0, 720.0):
        for part in flatten(geometry):
            for piece in clip_part_x(part, -180.0 - shift, 180.0 - shift):
                parts.append(translate_part(piece, shift))
    return geometry_from_parts(parts)
