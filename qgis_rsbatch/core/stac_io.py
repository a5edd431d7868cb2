"""Where STAC items come from: a STAC API (searched page by page), a static catalog (walked
through its child and item links) or an ItemCollection file, behind one small interface.

Each source only yields raw items; `catalog` filters and interprets them identically,
whatever the source filtered itself. Standard library only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit
from urllib.request import url2pathname

from .errors import CatalogError, InvalidInput, MissingInput
from .http import HttpClient

log = logging.getLogger(__name__)

EARTH_SEARCH_V1 = "https://earth-search.aws.element84.com/v1"
C1_L2A = "sentinel-2-c1-l2a"
L2A = "sentinel-2-l2a"
#: in order of preference: a tile-date found in both is taken from the first
DEFAULT_COLLECTIONS = (C1_L2A, L2A)
PAGE_LIMIT = 100
#: tiles per search request; a long grid:code list is fine in a POST body
TILES_PER_REQUEST = 100


def absolute_href(href: str, base: str | None) -> str:
    if not base or "://" in href or os.path.isabs(href):
        return href
    if "://" in base:
        return urljoin(base, href)
    return os.path.normpath(os.path.join(os.path.dirname(base), href))


def self_href(item: Mapping[str, Any]) -> str | None:
    for link in item.get("links") or ():
        if isinstance(link, Mapping) and link.get("rel") == "self" and link.get("href"):
            return str(link["href"])
    return None


def coarse_bbox(tiles: Sequence[str]) -> list[float]:
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


# --- sources -------------------------------------------------------------------------------

class Source:
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
    # a local file's content is what the user pointed at: when it is wrong, retrying cannot
    # help, so it is bad input (exit code 2), unlike a server that failed to answer
    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except FileNotFoundError as exc:
        raise MissingInput(f"{what} {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise InvalidInput(f"{what} {path} is a folder without catalog.json or "
                           "collection.json") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{what} {path} is not JSON (it is not even text)") from exc
    except OSError as exc:
        raise CatalogError(f"{what} {path} cannot be read: {exc.strerror or exc}") from exc
    if not text.strip():
        raise InvalidInput(f"{what} {path} is empty")
    try:
        return json.loads(text)
    except ValueError as exc:
        looks = " (it looks like HTML)" if text.lstrip()[:1] == "<" else ""
        raise InvalidInput(f"{what} {path} is not JSON{looks}: {exc}") from exc


def open_source(catalog: str, client: HttpClient, warnings: list[str]) -> Source:
    """The source a catalog location names (URL, path, folder, file:// URI)."""
    location = str(catalog).strip()
    if not _is_url(location):
        location = _path_of(location)
        if os.path.isdir(location):
            for name in ("catalog.json", "collection.json"):
                if os.path.exists(os.path.join(location, name)):
                    location = os.path.join(location, name)
                    break
    doc = _load(location, client, "STAC catalog, API or item collection")
    if not isinstance(doc, dict):
        raise InvalidInput(f"{location} is not a STAC document (a JSON object)")
    if doc.get("type") == "FeatureCollection":
        return _ItemCollection(location, doc)
    links = [link for link in doc.get("links") or () if isinstance(link, Mapping)]
    has_search = any(link.get("rel") == "search" for link in links)
    if _is_url(location) and (has_search or "conformsTo" in doc):
        return _Api(location, doc, client, warnings)
    if doc.get("type") in ("Catalog", "Collection") or links:
        return _Static(location, doc, client)
    raise InvalidInput(f"{location} is neither a STAC API, a static catalog nor an "
                       "ItemCollection")


class _ItemCollection(Source):
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
    base = self_href(item) or location
    if "://" not in base and not os.path.isabs(base):
        base = location
    fixed = {name: ({**a, "href": absolute_href(str(a["href"]), base)}
                    if isinstance(a, Mapping) and a.get("href") else a)
             for name, a in assets.items()}
    return {**item, "assets": fixed}


class _Static(Source):
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
                rel, target = link.get("rel"), absolute_href(str(link["href"]), location)
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


class _Api(Source):
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
            spatial = dict(base) if aoi else {**base, "bbox": coarse_bbox(chunk)}
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
