"""Scene search: Sentinel-2 tiles x a date range → one `Scene` per tile-date, with band hrefs
and the scale/offset that make its digital numbers reflectance.

The default catalog is the Earth Search STAC API v1: collection `sentinel-2-c1-l2a`, with
`sentinel-2-l2a` filling the scenes c1 lacks (each misses scenes the other has,
earth-search #65, #70). Any STAC API, a static catalog (catalog.json walked through its
child/item links) or an ItemCollection file works the same way, because every source only
yields raw items and everything after that (local tile/date filtering, choosing the newest
processing run, the cloud limit, bands, reflectance) is done here, identically.

Standard library only: QGIS's Python has neither requests nor pystac-client.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit
from urllib.request import OpenerDirector, url2pathname

from . import reflectance
from .contract import BAND_KEYS, BAND_NAMES, normalize_tile, parse_date
from .errors import CatalogError, InvalidInput, MissingInput
from .http import HttpClient

log = logging.getLogger(__name__)

EARTH_SEARCH_V1 = "https://earth-search.aws.element84.com/v1"
C1_L2A = "sentinel-2-c1-l2a"
L2A = "sentinel-2-l2a"
#: in order of preference: a tile-date found in both is taken from the first
DEFAULT_COLLECTIONS = (C1_L2A, L2A)
REQUIRED_BANDS = ("blue", "green", "red", "nir")
#: the requester-pays bucket of ESA's original JP2s
REQUESTER_PAYS_BUCKETS = ("sentinel-s2-l2a", "sentinel-s2-l1c")
PAGE_LIMIT = 100
#: tiles per search request; a long grid:code list is fine in a POST body
TILES_PER_REQUEST = 100

_JP2_RE = re.compile(
    r"^s3://sentinel-s2-l2a/tiles/(?P<zone>\d{1,2})/(?P<band>[A-Z])/(?P<square>[A-Z]{2})/"
    r"(?P<y>\d{4})/(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<seq>\d+)/(?:R\d0m/)?(?P<file>\w+)\.jp2$"
)
_ID_TILE_RE = re.compile(r"_T?(\d{1,2}[C-HJ-NP-X][A-HJ-NP-Z][A-HJ-NP-V])_")
_ID_SEQ_RE = re.compile(r"_(\d{1,2})_L2A$")
_DT_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Scene:
    """One acquisition of one tile (its newest processing run): what a cell is planned from."""

    tile: str
    date: str  # "YYYY-MM-DD", the UTC calendar day of the sensing time
    datetime: str
    item_id: str
    collection: str
    cloud_cover: float | None
    bands: Mapping[str, str]  # blue green red nir [scl] -> href
    scale: float
    offset: float
    offset_check: bool
    processing_baseline: str | None = None
    sequence: int | None = None
    platform: str | None = None
    epsg: int | None = None
    requester_pays: bool = False
    corrections: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "tile": self.tile, "date": self.date, "datetime": self.datetime,
            "item_id": self.item_id, "collection": self.collection,
            "cloud_cover": self.cloud_cover, "bands": dict(self.bands), "scale": self.scale,
            "offset": self.offset, "offset_check": self.offset_check,
            "processing_baseline": self.processing_baseline, "sequence": self.sequence,
            "platform": self.platform, "epsg": self.epsg,
            "requester_pays": self.requester_pays, "corrections": list(self.corrections),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scene:
        try:
            return cls(
                tile=normalize_tile(data["tile"]), date=parse_date(data["date"]),
                datetime=str(data["datetime"]), item_id=str(data["item_id"]),
                collection=str(data.get("collection") or ""),
                cloud_cover=None if data.get("cloud_cover") is None
                else float(data["cloud_cover"]),
                bands={str(k): str(v) for k, v in dict(data["bands"]).items() if v},
                scale=float(data["scale"]), offset=float(data["offset"]),
                offset_check=bool(data.get("offset_check", False)),
                processing_baseline=data.get("processing_baseline"),
                sequence=None if data.get("sequence") is None else int(data["sequence"]),
                platform=data.get("platform"),
                epsg=None if data.get("epsg") is None else int(data["epsg"]),
                requester_pays=bool(data.get("requester_pays", False)),
                corrections=tuple(str(c) for c in data.get("corrections") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidInput):
                raise
            raise InvalidInput(f"not a scene: {exc!r}") from exc


class SceneList(list[Scene]):
    """search()'s result: a plain list of Scenes plus the warnings a person should read
    (items left out for a missing band, runs replaced, catalog fallbacks)."""

    def __init__(self, scenes: Iterable[Scene] = (), warnings: Iterable[str] = ()) -> None:
        super().__init__(scenes)
        self.warnings: list[str] = list(warnings)


# --- reading one item ------------------------------------------------------------------

def parse_datetime(text: Any) -> dt.datetime:
    """An RFC 3339 timestamp as an aware UTC datetime (any fraction length, 'Z' or ±hh:mm)."""
    match = _DT_RE.match(str(text or "").strip())
    if not match:
        raise InvalidInput(f"'{text}' is not an RFC 3339 date-time")
    y, mo, d, h, mi, s, frac, zone = match.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    tz = dt.timezone.utc
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    value = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=tz)
    return value.astimezone(dt.timezone.utc)


def item_tile(item: Mapping[str, Any]) -> str | None:
    """The MGRS tile of an item: mgrs:* properties, grid:code, s2:mgrs_tile, or its id."""
    props = item.get("properties") or {}
    candidates = []
    if props.get("mgrs:utm_zone") is not None:
        candidates.append(f"{props.get('mgrs:utm_zone')}{props.get('mgrs:latitude_band', '')}"
                          f"{props.get('mgrs:grid_square', '')}")
    code = str(props.get("grid:code") or "")
    if code.upper().startswith("MGRS-"):
        candidates.append(code[5:])
    for key in ("s2:mgrs_tile", "sentinel:tile", "tile"):
        if props.get(key):
            candidates.append(str(props[key]))
    for text in (str(item.get("id") or ""), str(props.get("s2:product_uri") or "")):
        match = _ID_TILE_RE.search(text)
        if match:
            candidates.append(match.group(1))
    for candidate in candidates:
        try:
            return normalize_tile(candidate)
        except InvalidInput:
            continue
    return None


def item_datetime(item: Mapping[str, Any]) -> dt.datetime | None:
    props = item.get("properties") or {}
    for key in ("datetime", "start_datetime"):
        if props.get(key):
            try:
                return parse_datetime(props[key])
            except InvalidInput:
                return None
    return None


def _sequence(item: Mapping[str, Any]) -> int | None:
    value = (item.get("properties") or {}).get("s2:sequence")
    if value is not None and str(value).strip().isdigit():
        return int(str(value).strip())
    match = _ID_SEQ_RE.search(str(item.get("id") or ""))
    return int(match.group(1)) if match else None


def _epsg(props: Mapping[str, Any], asset: Mapping[str, Any] | None) -> int | None:
    for source in (props, asset or {}):
        if isinstance(source.get("proj:epsg"), int):
            return int(source["proj:epsg"])
        code = str(source.get("proj:code") or "")
        if code.upper().startswith("EPSG:") and code[5:].isdigit():
            return int(code[5:])
    return None


def _is_jp2(asset: Mapping[str, Any]) -> bool:
    return "jp2" in str(asset.get("type") or "").lower() or str(
        asset.get("href") or "").lower().endswith(".jp2")


def _asset_bands(asset: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    bands = asset.get("eo:bands") or asset.get("bands") or []
    return [b for b in bands if isinstance(b, Mapping)] if isinstance(bands, list) else []


def _match_rank(name: str, asset: Mapping[str, Any], key: str) -> int | None:
    """How surely asset `name` is band `key`: 0 by key, 1 by band id, 2 by eo:bands name,
    3 by common name; None when it is not that band (or holds several bands, like TCI)."""
    band_id = BAND_NAMES[key]
    base = name.lower()
    for suffix in ("-jp2", "_jp2", ".jp2", "-cog", "_10m", "_20m", "_60m"):
        base = base.removesuffix(suffix)
    if base == key:
        return 0
    if base == band_id.lower():
        return 1
    described = _asset_bands(asset)
    if len(described) != 1:
        return None
    band = described[0]
    if str(band.get("name") or "").upper() == band_id:
        return 2
    common = band.get("common_name") or band.get("eo:common_name")
    if key != "scl" and common == key:
        return 3
    return None


def _resolution(name: str, asset: Mapping[str, Any]) -> float:
    for source in [asset, *(asset.get("raster:bands") or [])]:
        if isinstance(source, Mapping):
            value = source.get("gsd") or source.get("spatial_resolution")
            if isinstance(value, (int, float)):
                return float(value)
    found = re.search(r"(\d+)m$", name)
    return float(found.group(1)) if found else 0.0


def _pick_band(assets: Mapping[str, Any], key: str, jp2: bool) -> tuple[str, Mapping] | None:
    best = None
    for name, asset in assets.items():
        if not isinstance(asset, Mapping) or not asset.get("href") or _is_jp2(asset) != jp2:
            continue
        if set(asset.get("roles") or ()) & {"thumbnail", "overview", "visual"}:
            continue
        rank = _match_rank(name, asset, key)
        if rank is None:
            continue
        href = str(asset["href"])
        score = (rank, 0 if href.startswith("https://") else 1, _resolution(name, asset))
        if best is None or score < best[0]:
            best = (score, name, asset)
    return (best[1], best[2]) if best else None


def _fix_jp2(href: str) -> tuple[str, bool]:
    """sentinel-s2-l2a JP2 hrefs of v1 `sentinel-2-l2a` items lack their R10m/ folder and 404
    (earth-search #57): the real object is …/{seq}/R10m/B04.jp2 (SCL under R20m/)."""
    match = _JP2_RE.match(href)
    if not match or re.search(r"/R\d0m/", href):
        return href, False
    g = match.groupdict()
    folder = "R20m" if g["file"].upper() == "SCL" else "R10m"
    return (f"s3://sentinel-s2-l2a/tiles/{g['zone']}/{g['band']}/{g['square']}/{g['y']}/"
            f"{int(g['m'])}/{int(g['d'])}/{g['seq']}/{folder}/{g['file']}.jp2"), True


def _absolute(href: str, base: str | None) -> str:
    if not base or "://" in href or os.path.isabs(href):
        return href
    if "://" in base:
        return urljoin(base, href)
    return os.path.normpath(os.path.join(os.path.dirname(base), href))


def _self_href(item: Mapping[str, Any]) -> str | None:
    for link in item.get("links") or ():
        if isinstance(link, Mapping) and link.get("rel") == "self" and link.get("href"):
            return str(link["href"])
    return None


def _is_earth_search(item: Mapping[str, Any]) -> bool:
    props = item.get("properties") or {}
    if any(str(k).startswith("earthsearch:") for k in props):
        return True
    hrefs = [str(link.get("href") or "") for link in item.get("links") or ()
             if isinstance(link, Mapping)]
    return any("earth-search.aws.element84.com" in h for h in hrefs)


def scene_from_item(item: Mapping[str, Any], collection: str | None = None) -> Scene:
    """A Scene from one STAC item (pure). The bands all come from one kind of file (COGs if
    the item has all four, else JP2s) so one scale/offset fits them all; the rule for that
    scale/offset is DESIGN.md's table (see reflectance.py).

    Raises MissingInput naming the item and band when blue, green, red or nir is absent,
    InvalidInput when the item has no tile or sensing time. SCL is optional: without it the
    scene has no "scl" key and cloud masking is impossible.
    """
    if not isinstance(item, Mapping) or not isinstance(item.get("properties"), Mapping):
        raise InvalidInput("a STAC item must be a JSON object with properties")
    item_id = str(item.get("id") or "?")
    props = item["properties"]
    collection = str(collection or item.get("collection") or "")
    tile = item_tile(item)
    if tile is None:
        raise InvalidInput(f"item {item_id} names no Sentinel-2 MGRS tile")
    when = item_datetime(item)
    if when is None:
        raise InvalidInput(f"item {item_id} has no valid datetime")
    assets = item.get("assets")
    if not isinstance(assets, Mapping):
        assets = {}
    bands, jp2, corrections, red_asset = _bands(item_id, assets, _self_href(item))
    requester_pays = any(h.startswith(tuple(f"s3://{b}/" for b in REQUESTER_PAYS_BUCKETS))
                         for h in bands.values())
    refl = _reflectance(item, collection, red_asset, jp2_original=jp2 and requester_pays)
    corrections.extend(refl.corrections)
    baseline = reflectance.baseline_of(props)
    cloud = props.get("eo:cloud_cover")
    platform = props.get("platform")
    return Scene(
        tile=tile, date=when.date().isoformat(),
        datetime=when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        item_id=item_id, collection=collection,
        cloud_cover=float(cloud) if isinstance(cloud, (int, float)) and not isinstance(
            cloud, bool) else None,
        bands=bands, scale=refl.scale, offset=refl.offset, offset_check=refl.offset_check,
        processing_baseline=baseline, sequence=_sequence(item),
        platform=str(platform).lower() if platform else None,
        epsg=_epsg(props, red_asset), requester_pays=requester_pays,
        corrections=tuple(corrections),
    )


def _bands(item_id: str, assets: Mapping[str, Any], base: str | None
           ) -> tuple[dict[str, str], bool, list[str], Mapping[str, Any]]:
    """Band hrefs, whether they are JP2s, notes, and the red asset (whose raster:bands
    decide the offset). All four required bands come from one kind of file (COGs when the
    item has all four, else JP2s) so one offset fits them all."""
    picks: dict[str, tuple[str, Mapping]] = {}
    jp2 = False
    for use_jp2 in (False, True):
        found = {k: p for k in BAND_KEYS if (p := _pick_band(assets, k, use_jp2))}
        if all(k in found for k in REQUIRED_BANDS):
            picks, jp2 = found, use_jp2
            break
        picks = picks or found  # keep the COG attempt for the error message
    missing = [k for k in REQUIRED_BANDS if k not in picks]
    if missing:
        names = ", ".join(f"{k} ({BAND_NAMES[k]})" for k in missing)
        raise MissingInput(f"item {item_id} has no asset for band(s) {names}; left out")
    if "scl" not in picks:  # any format will do for a classification
        other = _pick_band(assets, "scl", not jp2)
        if other:
            picks["scl"] = other
    bands: dict[str, str] = {}
    fixed = False
    for key in BAND_KEYS:
        if key in picks:
            href, was_fixed = _fix_jp2(_absolute(str(picks[key][1]["href"]), base))
            bands[key] = href
            fixed = fixed or was_fixed
    notes = []
    if fixed:
        notes.append("JP2 hrefs lacked their R10m/ or R20m/ folder (earth-search #57); "
                     "using the real sentinel-s2-l2a paths")
    return bands, jp2, notes, picks["red"][1]


def _reflectance(item: Mapping[str, Any], collection: str, red_asset: Mapping[str, Any], *,
                 jp2_original: bool) -> reflectance.Reflectance:
    """DESIGN.md's row for this item, applied to the red band's raster:bands."""
    props = item.get("properties") or {}
    raster = (red_asset.get("raster:bands") or [None])[0]
    raster = raster if isinstance(raster, Mapping) else None
    if jp2_original:  # ESA's original JP2s: ESA's DNs, whatever the item's COGs went through
        baseline = reflectance.baseline_of(props)
        refl = reflectance.for_sentinel_s2_l2a(baseline=baseline)
        claimed = reflectance.raster_value(raster, "offset")
        if claimed is not None and abs(claimed - refl.offset) > 1e-12:
            note = (f"raster:bands offset {claimed:g} replaced by {refl.offset:g}: the bands "
                    f"are ESA's original JP2s of baseline {baseline}")
            return replace(refl, corrections=(note, *refl.corrections))
        return refl
    if _is_earth_search(item) and collection in (L2A, "sentinel-s2-l2a-cogs"):
        return reflectance.for_earth_search_l2a(props, raster)
    if collection == C1_L2A:
        return reflectance.for_c1(props, raster)
    return reflectance.for_other(props, raster)


def _run_rank(item: Mapping[str, Any], scene: Scene, order: Sequence[str]) -> tuple:
    """Sort key: higher is preferred. The preferred collection first (c1 over l2a), then
    the newest processing run: s2:sequence, baseline, generation time, created."""
    props = item.get("properties") or {}
    preference = order.index(scene.collection) if scene.collection in order else len(order)
    baseline = reflectance.parse_baseline(scene.processing_baseline) or (-1, -1)
    return (-preference, scene.sequence if scene.sequence is not None else -1, baseline,
            str(props.get("s2:generation_time") or ""), str(props.get("created") or ""),
            scene.datetime, scene.item_id)


# --- searching ---------------------------------------------------------------------------

def _tiles(tiles: Iterable[str] | str) -> list[str]:
    if isinstance(tiles, str):
        tiles = [t for t in re.split(r"[,\s]+", tiles) if t]
    wanted = sorted({normalize_tile(t) for t in tiles})
    if not wanted:
        raise InvalidInput("no tiles to search: give at least one Sentinel-2 tile id")
    return wanted


def _date_range(start: str, end: str) -> tuple[dt.date, dt.date]:
    if not start or not str(start).strip():
        raise InvalidInput("start date is empty: give a date like 2020-08-01")
    if not end or not str(end).strip():
        raise InvalidInput("end date is empty: give a date like 2020-08-31")
    first = dt.date.fromisoformat(parse_date(start, "start date"))
    last = dt.date.fromisoformat(parse_date(end, "end date"))
    if last < first:
        raise InvalidInput(f"date range {first} to {last} is reversed: the start date is "
                           "after the end date")
    return first, last


def _coarse_bbox(tiles: Sequence[str]) -> list[float]:
    """A lon/lat box sure to hold these tiles: their UTM zones x latitude bands, plus 1°
    (a tile's 109.8 km square may stick out of its zone). Only for catalogs that cannot
    filter by tile."""
    west, south, east, north = 180.0, 90.0, -180.0, -90.0
    for tile in tiles:
        zone, band = int(tile[:-3]), tile[-3]
        index = "CDEFGHJKLMNPQRSTUVWX".index(band)
        lat0 = -80.0 + 8 * index
        lat1 = 84.0 if band == "X" else lat0 + 8
        lon0 = -180.0 + 6 * (zone - 1)
        west, east = min(west, lon0 - 1), max(east, lon0 + 7)
        south, north = min(south, lat0 - 1), max(north, lat1 + 1)
    return [max(west, -180.0), max(south, -90.0), min(east, 180.0), min(north, 90.0)]


def iter_items(tiles: Iterable[str] | str, start: str, end: str, *, catalog: str | None = None,
               collections: Sequence[str] | None = None, aoi: dict | None = None,
               timeout: float = 30, opener: OpenerDirector | None = None,
               proxies: Mapping[str, str] | None = None,
               warnings: list[str] | None = None) -> Iterator[dict]:
    """The catalog's raw items for these tiles and days, page by page (never the whole
    catalogue in memory), already filtered locally by tile, day and collection because
    servers vary in what they filter. Arguments are checked before the first page."""
    wanted = _tiles(tiles)
    first, last = _date_range(start, end)
    if isinstance(collections, str):
        collections = [collections]
    client = HttpClient(timeout=timeout, opener=opener, proxies=proxies)
    source = _open_source(catalog, client, warnings if warnings is not None else [])
    return _filtered(source, wanted, first, last, collections=collections, aoi=aoi)


def _filtered(source: _Source, wanted: list[str], first: dt.date, last: dt.date, *,
              collections: Sequence[str] | None, aoi: dict | None) -> Iterator[dict]:
    tiles = set(wanted)
    for item in source.items(wanted, first, last, collections, aoi):
        if not isinstance(item, dict) or item.get("type", "Feature") != "Feature":
            continue
        when = item_datetime(item)
        if item_tile(item) not in tiles or when is None or not first <= when.date() <= last:
            continue
        if collections and item.get("collection") not in collections:
            continue
        yield item


def search(tiles: Iterable[str] | str, start: str, end: str, *, max_cloud: float | None = None,
           catalog: str | None = None, collections: Sequence[str] | None = None,
           aoi: dict | None = None, timeout: float = 30, opener: OpenerDirector | None = None,
           proxies: Mapping[str, str] | None = None) -> SceneList:
    """Scenes of `tiles` sensed from `start` to `end` (UTC days, both inclusive), one per
    tile-date, sorted by date then tile.

    The runs of a tile-date (reprocessings, `_0_`/`_1_`, and c1 vs l2a) collapse to the
    preferred newest one FIRST; only then does `max_cloud` (eo:cloud_cover ≤ N) apply, so an
    older run is never substituted for a newer one that is too cloudy. A run without all
    four bands is passed over for the next (with a warning). Scenes without a cloud cover
    are kept and say so. Warnings are in the result's `.warnings`.

    `catalog`: None for Earth Search v1 (c1, then l2a), a STAC API root URL, a static
    catalog.json (path, folder or URL) or an ItemCollection file. `collections` in order of
    preference. `aoi`: a GeoJSON geometry in EPSG:4326, sent as `intersects`. `timeout`:
    seconds one request may take with all its retries, so an unreachable catalog fails
    (CatalogError) within about that long. `opener` or `proxies` reach the network the
    caller's way (the plugin passes QGIS's proxy settings).
    """
    if max_cloud is not None and (
            isinstance(max_cloud, bool) or not isinstance(max_cloud, (int, float))
            or math.isnan(max_cloud) or not 0 <= max_cloud <= 100):
        raise InvalidInput(f"cloud limit {max_cloud!r} must be a percentage from 0 to 100")
    if isinstance(collections, str):
        collections = [collections]
    result = SceneList()
    order = list(collections or DEFAULT_COLLECTIONS)
    groups: dict[tuple[str, str], list[tuple[tuple, Scene]]] = {}
    for item in iter_items(tiles, start, end, catalog=catalog, collections=collections,
                           aoi=aoi, timeout=timeout, opener=opener, proxies=proxies,
                           warnings=result.warnings):
        try:
            scene = scene_from_item(item)
        except InvalidInput as exc:
            result.warnings.append(str(exc))
            continue
        groups.setdefault((scene.tile, scene.date), []).append(
            (_run_rank(item, scene, order), scene))
    for key in sorted(groups, key=lambda k: (k[1], k[0])):
        runs = sorted(groups[key], key=lambda pair: pair[0], reverse=True)
        scene = runs[0][1]
        if max_cloud is not None:
            if scene.cloud_cover is None:
                scene = replace(scene, corrections=(
                    *scene.corrections,
                    f"no eo:cloud_cover: kept although the cloud limit is {max_cloud:g}%"))
            elif scene.cloud_cover > max_cloud:
                log.debug("%s: newest run %s is %.1f%% cloudy", key, scene.item_id,
                          scene.cloud_cover)
                continue
        result.append(scene)
    return result


# --- sources -------------------------------------------------------------------------------

class _Source:
    """Something that yields raw items (filtered afterwards, whatever it filtered itself)."""

    def items(self, tiles: list[str], first: dt.date, last: dt.date,
              collections: Sequence[str] | None, aoi: dict | None) -> Iterator[dict]:
        raise NotImplementedError


def _is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def _path_of(text: str) -> str:
    if text.lower().startswith("file://"):
        return url2pathname(urlsplit(text).path)
    return os.path.abspath(os.path.expanduser(text))


def _load(location: str, client: HttpClient, what: str = "STAC document") -> Any:
    """JSON from a URL or a local path; errors name the location."""
    if _is_url(location):
        response = client.request("GET", location)
        if response.status == 404:
            raise CatalogError(f"{location} answered 404: there is no {what} at this address")
        return response.check().json()
    path = _path_of(location)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return json.load(handle)
    except FileNotFoundError as exc:
        raise MissingInput(f"{what} {path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{what} {path} is not readable JSON: {exc}") from exc


def _open_source(catalog: str | None, client: HttpClient, warnings: list[str]) -> _Source:
    location = str(catalog).strip() if catalog else EARTH_SEARCH_V1
    if not _is_url(location):
        location = _path_of(location)
        if os.path.isdir(location):
            for name in ("catalog.json", "collection.json"):
                if os.path.exists(os.path.join(location, name)):
                    location = os.path.join(location, name)
                    break
    doc = _load(location, client, "STAC catalog, API or item collection")
    if not isinstance(doc, dict):
        raise CatalogError(f"{location} is not a STAC document (a JSON object)")
    if doc.get("type") == "FeatureCollection":
        return _ItemCollection(location, doc)
    links = [link for link in doc.get("links") or () if isinstance(link, Mapping)]
    has_search = any(link.get("rel") == "search" for link in links)
    if _is_url(location) and (has_search or "conformsTo" in doc):
        return _Api(location, doc, client, warnings)
    if doc.get("type") in ("Catalog", "Collection") or links:
        return _Static(location, doc, client)
    raise CatalogError(f"{location} is neither a STAC API, a static catalog nor an "
                       "ItemCollection")


class _ItemCollection(_Source):
    def __init__(self, location: str, doc: dict) -> None:
        self.location, self.doc = location, doc

    def items(self, tiles: list[str], first: dt.date, last: dt.date,
              collections: Sequence[str] | None, aoi: dict | None) -> Iterator[dict]:
        for feature in self.doc.get("features") or ():
            if isinstance(feature, dict):
                yield _with_absolute_assets(feature, self.location)


def _with_absolute_assets(item: dict, location: str) -> dict:
    """A copy whose relative asset hrefs are resolved against where the item was read."""
    assets = item.get("assets")
    if not isinstance(assets, Mapping) or not any(
            isinstance(a, Mapping) and "://" not in str(a.get("href", "")) for a in
            assets.values()):
        return item
    base = _self_href(item) or location
    if "://" not in base and not os.path.isabs(base):
        base = location
    fixed = {name: ({**a, "href": _absolute(str(a["href"]), base)}
                    if isinstance(a, Mapping) and a.get("href") else a)
             for name, a in assets.items()}
    return {**item, "assets": fixed}


class _Static(_Source):
    """A static catalog: walk child and item links depth-first, one document at a time."""

    def __init__(self, location: str, doc: dict, client: HttpClient) -> None:
        self.location, self.doc, self.client = location, doc, client

    def items(self, tiles: list[str], first: dt.date, last: dt.date,
              collections: Sequence[str] | None, aoi: dict | None) -> Iterator[dict]:
        stack: list[tuple[str, dict, str | None]] = [(self.location, self.doc, None)]
        seen = {self.location}
        while stack:
            location, doc, parent_collection = stack.pop()
            if doc.get("type") == "Collection":
                parent_collection = str(doc.get("id") or parent_collection or "")
                if collections and parent_collection not in collections:
                    continue
            children = []
            for link in doc.get("links") or ():
                if not isinstance(link, Mapping) or not link.get("href"):
                    continue
                rel, target = link.get("rel"), _absolute(str(link["href"]), location)
                if rel == "item":
                    item = _load(target, self.client, "STAC item")
                    if isinstance(item, dict):
                        if parent_collection and not item.get("collection"):
                            item = {**item, "collection": parent_collection}
                        yield _with_absolute_assets(item, target)
                elif rel == "child" and target not in seen:
                    seen.add(target)
                    children.append(target)
            for target in reversed(children):
                child = _load(target, self.client, "STAC catalog")
                if isinstance(child, dict):
                    stack.append((target, child, parent_collection))


class _Api(_Source):
    """A STAC API: POST /search (GET when POST is refused), following `next` links."""

    def __init__(self, root: str, landing: dict, client: HttpClient,
                 warnings: list[str]) -> None:
        self.root, self.landing, self.client, self.warnings = root, landing, client, warnings
        self.earth_search = "earth-search.aws.element84.com" in root
        links = [link for link in landing.get("links") or () if isinstance(link, Mapping)]
        searches = [link for link in links if link.get("rel") == "search" and link.get("href")]
        searches.sort(key=lambda link: str(link.get("method", "")).upper() != "POST")
        self.search_url = (urljoin(root, str(searches[0]["href"])) if searches
                           else root.rstrip("/") + "/search")
        # a landing page that offers only GET search gets GET; otherwise POST first
        self.use_get = {str(link.get("method") or "").upper() for link in searches} == {"GET"}
        conforms = " ".join(str(c) for c in landing.get("conformsTo") or ())
        self.tile_filter = ("query" if "item-search#query" in conforms or self.earth_search
                            else "filter" if "item-search#filter" in conforms else None)

    # -- collections -------------------------------------------------------------------------
    def _existing(self, names: Sequence[str]) -> list[str] | None:
        """Which of these collections the API has (None when it cannot tell)."""
        present = []
        for name in names:
            response = self.client.request(
                "GET", f"{self.root.rstrip('/')}/collections/{name}")
            if response.status == 404:
                continue
            if not response.ok:
                return None
            present.append(name)
        return present

    def _collections(self, collections: Sequence[str] | None) -> list[str] | None:
        if collections:
            present = self._existing(collections)
            missing = [c for c in collections if present is not None and c not in present]
            if missing:
                raise InvalidInput(f"catalog {self.root} has no collection(s) "
                                   f"{', '.join(missing)}")
            return list(collections)
        present = self._existing(DEFAULT_COLLECTIONS)
        if present is None:
            return list(DEFAULT_COLLECTIONS)
        if not present:
            self.warnings.append(
                f"catalog {self.root} has neither {' nor '.join(DEFAULT_COLLECTIONS)}; "
                "searching all its collections")
            return None
        return present

    # -- search --------------------------------------------------------------------------------
    def items(self, tiles: list[str], first: dt.date, last: dt.date,
              collections: Sequence[str] | None, aoi: dict | None) -> Iterator[dict]:
        names = self._collections(collections)
        base: dict[str, Any] = {
            "datetime": f"{first.isoformat()}T00:00:00Z/"
                        f"{(last + dt.timedelta(days=1)).isoformat()}T00:00:00Z",
            "limit": PAGE_LIMIT,
        }
        if names:
            base["collections"] = names
        if aoi:
            base["intersects"] = aoi
        for start in range(0, len(tiles), TILES_PER_REQUEST):
            chunk = tiles[start:start + TILES_PER_REQUEST]
            spatial = dict(base) if aoi else {**base, "bbox": _coarse_bbox(chunk)}
            if self.tile_filter is None:
                yield from self._pages(spatial)
                continue
            count = 0
            try:
                for item in self._pages({**base, **self._tile_filter(chunk)}, refusable=True):
                    count += 1
                    yield item
            except _Refused as exc:
                self.warnings.append(f"{self.search_url} refused the grid:code filter "
                                     f"({exc}); searching by location instead")
                yield from self._pages(spatial)
                continue
            if count == 0 and not self.earth_search:
                # other catalogs may name the tile differently (s2:mgrs_tile, …)
                self.warnings.append(f"{self.search_url} found nothing by grid:code; "
                                     "searched by location instead")
                yield from self._pages(spatial)

    def _tile_filter(self, tiles: Sequence[str]) -> dict[str, Any]:
        codes = [f"MGRS-{tile}" for tile in tiles]
        if self.tile_filter == "query":
            return {"query": {"grid:code": {"in": codes}}}
        return {"filter-lang": "cql2-json", "filter": {"op": "or", "args": [
            {"op": "=", "args": [{"property": "grid:code"}, code]} for code in codes]}}

    def _get_url(self, body: Mapping[str, Any]) -> str:
        params = {}
        for key, value in body.items():
            if key in ("collections", "bbox", "ids"):
                params[key] = ",".join(str(v) for v in value)
            elif isinstance(value, (dict, list)):
                params[key] = json.dumps(value, separators=(",", ":"))
            else:
                params[key] = str(value)
        return f"{self.search_url}?{urlencode(params)}"

    def _pages(self, body: dict[str, Any], refusable: bool = False) -> Iterator[dict]:
        method, url, payload = ("GET", self._get_url(body), None) if self.use_get else (
            "POST", self.search_url, body)
        seen: set[str] = set()
        headers: Mapping[str, str] | None = None
        while True:
            response = self.client.request(method, url, payload, headers)
            if method == "POST" and response.status == 405 and not seen:
                self.use_get = True
                method, url, payload = "GET", self._get_url(body), None
                continue
            if response.status == 404 and not seen:
                raise CatalogError(
                    f"{url} answered 404: {self.root} is not a STAC API (it has no item "
                    "search). For a static catalog, give the address of its catalog.json")
            if response.status == 400 and refusable and not seen:
                raise _Refused(f"HTTP 400 {response.body[:200]!r}")
            page = response.check().json()
            features = page.get("features") if isinstance(page, dict) else None
            if not isinstance(features, list):
                raise CatalogError(f"{method} {url} answered JSON without a 'features' list: "
                                   "not a STAC item search response")
            yield from (f for f in features if isinstance(f, dict))
            link = next((lk for lk in page.get("links") or () if isinstance(lk, Mapping)
                         and lk.get("rel") == "next" and lk.get("href")), None)
            if link is None or not features:
                return
            method = str(link.get("method") or "GET").upper()
            url = urljoin(url, str(link["href"]))
            headers = link.get("headers") if isinstance(link.get("headers"), Mapping) else None
            if method == "POST":
                given = link.get("body") if isinstance(link.get("body"), Mapping) else None
                payload = ({**(payload or body), **(given or {})} if link.get("merge")
                           else dict(given) if given is not None else payload or body)
            else:
                payload = None
            key = json.dumps([method, url, payload], sort_keys=True)
            if key in seen:
                raise CatalogError(f"{self.search_url} sent the same next page twice "
                                   f"({url}): stopping instead of looping")
            seen.add(key)


class _Refused(Exception):
    """The API rejected a search body (HTTP 400), e.g. a filter it does not support."""
