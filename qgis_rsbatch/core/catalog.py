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
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.request import OpenerDirector

from . import reflectance
from .contract import normalize_tile, parse_date
from .errors import InvalidInput, MissingInput
from .http import HttpClient
from .products import BAND_KEYS, BAND_NAMES, BANDS
from .stac_io import (
    C1_L2A,
    DEFAULT_COLLECTIONS,
    EARTH_SEARCH_V1,
    L2A,
    Source,
    absolute_href,
    open_source,
    self_href,
)

log = logging.getLogger(__name__)

REQUIRED_BANDS = ("blue", "green", "red", "nir")
#: the requester-pays bucket of ESA's original JP2s
REQUESTER_PAYS_BUCKETS = ("sentinel-s2-l2a", "sentinel-s2-l1c")

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
    #: the item's footprint (GeoJSON, EPSG:4326) and its thumbnail's href, for the scene list
    geometry: Mapping[str, Any] | None = None
    thumbnail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tile": self.tile, "date": self.date, "datetime": self.datetime,
            "item_id": self.item_id, "collection": self.collection,
            "cloud_cover": self.cloud_cover, "bands": dict(self.bands), "scale": self.scale,
            "offset": self.offset, "offset_check": self.offset_check,
            "processing_baseline": self.processing_baseline, "sequence": self.sequence,
            "platform": self.platform, "epsg": self.epsg,
            "requester_pays": self.requester_pays, "corrections": list(self.corrections),
            "geometry": dict(self.geometry) if self.geometry else None,
            "thumbnail": self.thumbnail,
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
                geometry=dict(data["geometry"]) if data.get("geometry") else None,
                thumbnail=str(data["thumbnail"]) if data.get("thumbnail") else None,
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


def jp2_folder(band_id: str) -> str:
    """The resolution folder of a band in the sentinel-s2-l2a layout: each band at its native
    resolution (R10m/B04.jp2, R20m/B11.jp2, R20m/SCL.jp2)."""
    resolution = next((b.resolution for b in BANDS.values() if b.name == band_id.upper()), 10)
    return f"R{resolution}m"


def _fix_jp2(href: str) -> tuple[str, bool]:
    """sentinel-s2-l2a JP2 hrefs of v1 `sentinel-2-l2a` items lack their R10m/ folder and 404
    (earth-search #57): the real object is …/{seq}/R10m/B04.jp2 (20 m bands under R20m/)."""
    match = _JP2_RE.match(href)
    if not match or re.search(r"/R\d0m/", href):
        return href, False
    g = match.groupdict()
    folder = jp2_folder(g["file"])
    return (f"s3://sentinel-s2-l2a/tiles/{g['zone']}/{g['band']}/{g['square']}/{g['y']}/"
            f"{int(g['m'])}/{int(g['d'])}/{g['seq']}/{folder}/{g['file']}.jp2"), True






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
    bands, jp2, corrections, red_asset = _bands(item_id, assets, self_href(item))
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
        corrections=tuple(corrections), geometry=_footprint(item),
        thumbnail=_thumbnail(assets, self_href(item)),
    )


def _footprint(item: Mapping[str, Any]) -> dict | None:
    geometry = item.get("geometry")
    if isinstance(geometry, Mapping) and geometry.get("type") in ("Polygon", "MultiPolygon"):
        return dict(geometry)
    return None


def _thumbnail(assets: Mapping[str, Any], base: str | None) -> str | None:
    """The href of the item's thumbnail (role "thumbnail", else an asset named so), made
    absolute; None when it has none."""
    for name, asset in assets.items():
        if isinstance(asset, Mapping) and asset.get("href") and (
                "thumbnail" in (asset.get("roles") or ()) or name == "thumbnail"):
            return absolute_href(str(asset["href"]), base)
    return None


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
    for key in BAND_KEYS:  # optional bands (SCL, SWIR): any format will do if need be
        if key not in picks and (other := _pick_band(assets, key, not jp2)):
            picks[key] = other
    bands: dict[str, str] = {}
    fixed = False
    for key in BAND_KEYS:
        if key in picks:
            href, was_fixed = _fix_jp2(absolute_href(str(picks[key][1]["href"]), base))
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
    source = open_source(catalog or EARTH_SEARCH_V1, client,
                         warnings if warnings is not None else [])
    return _filtered(source, wanted, first, last, collections=collections, aoi=aoi)


def _filtered(source: Source, wanted: list[str], first: dt.date, last: dt.date, *,
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
