"""A small local STAC API for tests, plus Sentinel-2 items shaped like Earth Search's.

`StacServer` is a threaded http.server on 127.0.0.1:<free port> that serves fixture items
through `POST /search` and `GET /search` (paged: Earth Search's POST `next` links whose
`body` carries a `next` token, stac-fastapi's `token`, or GET `?page=`), `GET /`,
`/conformance`, `/collections` and `/collections/{id}`. It filters by collections, ids,
datetime, bbox/intersects (by bounding box), the `query` extension and simple CQL2-JSON,
so a client that leaves filtering to the server is tested against a real server's habits.

It can also misbehave on purpose (`fail`): answer 500s, a 429 with Retry-After, garbage
(HTML or truncated JSON), hang past the client's timeout, or drop the connection; and act
as an HTTP proxy (absolute request targets are served and recorded as `proxied`).
Every request is recorded in `requests`.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

CONFORMANCE = (
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
)
#: conformance of an API that can search but not filter by properties
CONFORMANCE_BASIC = CONFORMANCE[:2] + CONFORMANCE[-1:]
PAGING_STYLES = ("next", "token", "page")


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    proxied: bool = False


@dataclass
class Fault:
    """A misbehaviour served instead of the normal answer, `times` times, on `path`."""

    kind: str  # status | garbage | truncated | hang | drop
    path: str = "/search"
    method: str | None = None
    times: int = 1
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 5.0


class StacServer:
    """A STAC API on 127.0.0.1; use as a context manager or call start()/stop()."""

    def __init__(self, items: Iterable[Mapping[str, Any]] = (), *, page_size: int = 2,
                 paging: str = "next", conformance: Iterable[str] = CONFORMANCE,
                 prefix: str = "/v1", search: bool = True, post: bool = True,
                 collections: Iterable[str] | None = None) -> None:
        if paging not in PAGING_STYLES:
            raise ValueError(f"paging must be one of {PAGING_STYLES}")
        self.items = [copy.deepcopy(dict(item)) for item in items]
        self.page_size = page_size
        self.paging = paging
        self.conformance = list(conformance)
        self.prefix = prefix.rstrip("/")
        self.search_enabled = search
        self.post_enabled = post
        self.collection_ids = list(collections) if collections is not None else None
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> StacServer:
        handler = type("Handler", (_Handler,), {"stac": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # releases hanging handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> StacServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The API root (landing page) URL."""
        return self.origin + self.prefix

    # -- scripting -----------------------------------------------------------------------
    def fail(self, kind: str, **kwargs: Any) -> Fault:
        """Queue a misbehaviour, e.g. fail("status", status=500, times=2),
        fail("status", status=429, headers={"Retry-After": "1"}), fail("garbage"),
        fail("hang", seconds=5), fail("drop")."""
        fault = Fault(kind, **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def searches(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/search")]

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and path.endswith(fault.path) and (
                        fault.method in (None, method)):
                    fault.times -= 1
                    return fault
        return None

    # -- documents -------------------------------------------------------------------------
    def _collections(self) -> list[str]:
        if self.collection_ids is not None:
            return self.collection_ids
        return sorted({str(i.get("collection")) for i in self.items if i.get("collection")})

    def landing(self) -> dict:
        links = [
            {"rel": "self", "type": "application/json", "href": self.url},
            {"rel": "root", "type": "application/json", "href": self.url},
            {"rel": "conformance", "type": "application/json",
             "href": f"{self.url}/conformance"},
            {"rel": "data", "type": "application/json", "href": f"{self.url}/collections"},
        ]
        if self.search_enabled:
            links.append({"rel": "search", "type": "application/geo+json",
                          "href": f"{self.url}/search", "method": "GET"})
            if self.post_enabled:
                links.append({"rel": "search", "type": "application/geo+json",
                              "href": f"{self.url}/search", "method": "POST"})
        links += [{"rel": "child", "type": "application/json",
                   "href": f"{self.url}/collections/{c}"} for c in self._collections()]
        return {"type": "Catalog", "stac_version": "1.0.0", "id": "test-stac",
                "description": "rsbatch test STAC API", "conformsTo": self.conformance,
                "links": links}

    def collection(self, name: str) -> dict | None:
        if name not in self._collections():
            return None
        return {"type": "Collection", "stac_version": "1.0.0", "id": name,
                "description": f"test collection {name}", "license": "proprietary",
                "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                           "temporal": {"interval": [[None, None]]}},
                "links": [{"rel": "self", "href": f"{self.url}/collections/{name}"},
                          {"rel": "root", "href": self.url}]}

    def search(self, params: Mapping[str, Any], method: str) -> dict:
        """One page of results for `params` (a POST body, or GET parameters decoded)."""
        matched = [i for i in self.items if _matches(i, params)]
        matched.sort(key=lambda i: (i["properties"].get("datetime", ""), i["id"]),
                     reverse=True)
        limit = max(1, min(int(params.get("limit") or 10), self.page_size))
        start = 0
        if params.get("next"):  # Earth Search: "<datetime>,<id>,<collection>"
            last_id = str(params["next"]).split(",")[1]
            start = next(n for n, i in enumerate(matched) if i["id"] == last_id) + 1
        elif params.get("token"):
            start = int(str(params["token"]).split(":")[1])
        elif params.get("page"):
            start = (int(params["page"]) - 1) * limit
        page = matched[start:start + limit]
        links = [{"rel": "root", "href": self.url}]
        if start + limit < len(matched) and page:
            links.append(self._next_link(params, method, page[-1], start + limit,
                                         start // limit + 2))
        return {"type": "FeatureCollection", "features": page, "links": links,
                "numberMatched": len(matched), "numberReturned": len(page),
                "context": {"limit": limit, "matched": len(matched), "returned": len(page)}}

    def _next_link(self, params: Mapping[str, Any], method: str, last: Mapping[str, Any],
                   offset: int, page_number: int) -> dict:
        href = f"{self.url}/search"
        if self.paging == "next":
            extra = {"next": f"{last['properties']['datetime']},{last['id']},"
                             f"{last.get('collection')}"}
        elif self.paging == "token":
            extra = {"token": f"next:{offset}"}
        else:
            extra = {"page": page_number}
        if method == "POST":
            if self.paging == "next":  # the whole body again, plus the token
                return {"rel": "next", "href": href, "method": "POST",
                        "body": {**params, **extra}, "merge": False}
            return {"rel": "next", "href": href, "method": "POST", "body": extra,
                    "merge": True}
        query = {k: _encode_get(v) for k, v in params.items()
                 if k not in ("next", "token", "page")}
        return {"rel": "next", "href": f"{href}?{urlencode({**query, **extra})}",
                "method": "GET", "type": "application/geo+json"}


# --- filtering ---------------------------------------------------------------------------

def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _bbox_of(geometry: Mapping[str, Any]) -> list[float]:
    points: list[list[float]] = []

    def walk(coords: Any) -> None:
        if coords and isinstance(coords[0], (int, float)):
            points.append(coords)
        else:
            for part in coords:
                walk(part)

    walk(geometry.get("coordinates") or [])
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return [min(xs), min(ys), max(xs), max(ys)]


def _overlaps(a: list[float], b: list[float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


_QUERY_OPS = {
    "eq": lambda v, x: v == x, "neq": lambda v, x: v != x,
    "lt": lambda v, x: v is not None and v < x, "lte": lambda v, x: v is not None and v <= x,
    "gt": lambda v, x: v is not None and v > x, "gte": lambda v, x: v is not None and v >= x,
    "in": lambda v, x: v in x,
}


def _cql2(expr: Any, props: Mapping[str, Any]) -> Any:
    if isinstance(expr, Mapping) and "property" in expr:
        return props.get(expr["property"])
    if not isinstance(expr, Mapping) or "op" not in expr:
        return expr
    op, args = expr["op"], expr.get("args", [])
    if op == "and":
        return all(_cql2(a, props) for a in args)
    if op == "or":
        return any(_cql2(a, props) for a in args)
    if op == "not":
        return not _cql2(args[0], props)
    left, right = (_cql2(a, props) for a in args)
    table = {"=": "eq", "<>": "neq", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte",
             "in": "in"}
    return _QUERY_OPS[table[op]](left, right)


def _in_interval(when: str, interval: str) -> bool:
    instant = _instant(when)
    if "/" not in interval:
        return instant == _instant(interval)
    low, high = interval.split("/")
    return ((low in ("", "..") or instant >= _instant(low))
            and (high in ("", "..") or instant <= _instant(high)))


def _matches(item: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    props = item.get("properties") or {}
    footprint = item.get("bbox") or _bbox_of(item.get("geometry") or {})
    checks = [
        not params.get("collections") or item.get("collection") in params["collections"],
        not params.get("ids") or item.get("id") in params["ids"],
        not params.get("datetime") or _in_interval(props["datetime"], str(params["datetime"])),
        not params.get("bbox") or _overlaps(list(map(float, params["bbox"])), footprint),
        not params.get("intersects") or _overlaps(_bbox_of(params["intersects"]), footprint),
        all(_QUERY_OPS[op](props.get(name), value)
            for name, ops in (params.get("query") or {}).items() for op, value in ops.items()),
        not params.get("filter") or bool(_cql2(params["filter"], props)),
    ]
    return all(checks)


# --- the handler -------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    stac: StacServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet tests

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        stac = self.stac
        target = urlsplit(self.path)
        proxied = bool(target.scheme)  # a proxy receives absolute targets
        raw = b""
        if method == "POST":
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        query = {k: v[-1] for k, v in parse_qs(target.query).items()}
        stac.requests.append(Recorded(method, target.path, query, body,
                                      {k.lower(): v for k, v in self.headers.items()},
                                      proxied))
        fault = stac._take_fault(method, target.path)
        if fault is not None and self._misbehave(fault):
            return
        path = target.path
        if path.startswith(stac.prefix):
            path = path[len(stac.prefix):]
        status, doc = self._route(method, "/" + path.strip("/"), query, body)
        self._json(status, doc)

    def _route(self, method: str, path: str, query: Mapping[str, str],
               body: Any) -> tuple[int, Any]:
        stac = self.stac
        documents = {
            "/": stac.landing,
            "/conformance": lambda: {"conformsTo": stac.conformance},
            "/collections": lambda: {"collections": [stac.collection(c)
                                                     for c in stac._collections()]},
        }
        found: Any = None
        if path in documents:
            found = documents[path]()
        elif path.startswith("/collections/") and path.count("/") == 2:
            found = stac.collection(path.split("/")[2])
        elif path == "/search" and stac.search_enabled:
            if method == "POST" and not stac.post_enabled:
                return 405, {"code": "MethodNotAllowed"}
            params = body if method == "POST" else _decode_get(query)
            if not isinstance(params, dict):
                return 400, {"code": "BadRequest", "description": "body is not an object"}
            found = stac.search(params, method)
        if found is None:
            return 404, {"code": "NotFound", "description": f"no route {path}"}
        return 200, found

    def _misbehave(self, fault: Fault) -> bool:
        if fault.kind == "status":
            self._json(fault.status, {"code": "Injected", "description": "test fault"},
                       fault.headers)
        elif fault.kind == "garbage":
            self._send(200, b"<html><body>502 Bad Gateway from a captive portal</body></html>",
                       "text/html")
        elif fault.kind == "truncated":
            self._send(200, b'{"type": "FeatureCollection", "features": [', "application/json")
        elif fault.kind == "hang":
            self.stac._stop.wait(fault.seconds)
            self.close_connection = True
        elif fault.kind == "drop":
            self.close_connection = True
        else:
            raise ValueError(f"unknown fault {fault.kind}")
        return True

    def _json(self, status: int, doc: Any, headers: Mapping[str, str] | None = None) -> None:
        ctype = "application/geo+json" if doc.get("type") == "FeatureCollection" else (
            "application/json")
        self._send(status, json.dumps(doc).encode("utf-8"), ctype, headers)

    def _send(self, status: int, payload: bytes, ctype: str,
              headers: Mapping[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _encode_get(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return ",".join(str(v) for v in value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _decode_get(query: Mapping[str, str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in query.items():
        if key in ("collections", "ids"):
            params[key] = [v for v in value.split(",") if v]
        elif key == "bbox":
            params[key] = [float(v) for v in value.split(",")]
        elif key in ("intersects", "query", "filter"):
            params[key] = json.loads(value)
        else:
            params[key] = value
    return params


# --- items shaped like Earth Search v1's ------------------------------------------------------

_BANDS = {"blue": ("B02", 10, 0.49), "green": ("B03", 10, 0.56), "red": ("B04", 10, 0.665),
          "nir": ("B08", 10, 0.842), "swir16": ("B11", 20, 1.61), "swir22": ("B12", 20, 2.19),
          "scl": ("SCL", 20, None)}
_LAT_BANDS = "CDEFGHJKLMNPQRSTUVWX"


def tile_bbox(tile: str) -> list[float]:
    """A small lon/lat box inside the tile's UTM zone and latitude band (good enough for
    bbox filtering in tests; not the tile's true footprint)."""
    zone, band = int(tile[:-3]), tile[-3]
    west = -180 + 6 * (zone - 1) + 1 + (ord(tile[-2]) % 4) * 0.9
    south = -80 + 8 * _LAT_BANDS.index(band) + 1 + (ord(tile[-1]) % 6) * 0.9
    return [west, south, west + 1.4, south + 1.0]


def _raster(offset: float | None, scl: bool, resolution: int) -> list[dict]:
    if scl:
        return [{"nodata": 0, "data_type": "uint8", "spatial_resolution": resolution}]
    band: dict[str, Any] = {"nodata": 0, "data_type": "uint16", "bits_per_sample": 15,
                            "spatial_resolution": resolution, "scale": 0.0001}
    if offset is not None:
        band["offset"] = offset
    return [band]


def make_item(tile: str = "32TMT", when: str = "2020-03-05T10:37:41.587000Z", *,
              collection: str = "sentinel-2-l2a", sequence: int = 0,
              baseline: str | None = "05.00", cloud: float | None = 10.0,
              boa_offset_applied: bool | None = True, raster_offset: float | None = -0.1,
              raster_bands: bool = True, cog: bool = True, jp2: bool = True,
              jp2_folders: bool = False, band_ids: bool = False, platform: str = "sentinel-2a",
              created: str | None = None, product_uri: bool = True,
              drop_bands: Iterable[str] = ()) -> dict:
    """A Sentinel-2 L2A item like Earth Search v1's.

    collection "sentinel-2-l2a" gives the old pipeline's shape (id S2A_32TMT_20200305_0_L2A,
    sentinel-cogs COGs, `*-jp2` assets in sentinel-s2-l2a lacking R10m/ unless
    `jp2_folders`, the earthsearch:boa_offset_applied flag); "sentinel-2-c1-l2a" the
    Collection 1 shape (id S2A_T32TMT_20200305T103021_L2A, no sequence, no flag, no JP2).
    Any other collection gets the c1 shape under that name. `band_ids` names the assets
    B02…SCL instead of blue…scl.
    """
    zone, lat_band, square = tile[:-3], tile[-3], tile[-2:]
    day = when[:10].replace("-", "")
    year, month, dom = int(when[:4]), int(when[5:7]), int(when[8:10])
    sensing = f"{day}T{when[11:13]}{when[14:16]}{when[17:19]}"
    old = collection == "sentinel-2-l2a"
    sat = "S2A" if platform.lower().endswith("a") else "S2B"
    item_id = f"{sat}_{tile}_{day}_{sequence}_L2A" if old else f"{sat}_T{tile}_{sensing}_L2A"
    props: dict[str, Any] = {
        "created": created or f"{year + 2}-01-01T00:00:00.000Z", "platform": platform,
        "constellation": "sentinel-2", "instruments": ["msi"], "proj:epsg":
            (32600 if lat_band >= "N" else 32700) + int(zone),
        "mgrs:utm_zone": int(zone), "mgrs:latitude_band": lat_band,
        "mgrs:grid_square": square, "grid:code": f"MGRS-{tile}",
        "s2:product_type": "S2MSI2A", "datetime": when,
    }
    if cloud is not None:
        props["eo:cloud_cover"] = cloud
    if baseline is not None:
        props["s2:processing_baseline"] = baseline
    if product_uri and baseline is not None:
        props["s2:product_uri"] = (f"{sat}_MSIL2A_{sensing}_N{baseline.replace('.', '')}_R108_"
                                   f"T{tile}_{year + 2}0101T000000.SAFE")
    if old:
        props["s2:sequence"] = str(sequence)
        props["earthsearch:s3_path"] = (f"s3://sentinel-cogs/sentinel-s2-l2a-cogs/{zone}/"
                                        f"{lat_band}/{square}/{year}/{month}/{item_id}")
        if boa_offset_applied is not None:
            props["earthsearch:boa_offset_applied"] = boa_offset_applied
    if old:
        cog_root = (f"https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/"
                    f"{zone}/{lat_band}/{square}/{year}/{month}/{item_id}")
    else:
        cog_root = (f"https://e84-earth-search-sentinel-data.s3.us-west-2.amazonaws.com/"
                    f"{collection}/{zone}/{lat_band}/{square}/{year}/{month}/{item_id}")
    jp2_root = f"s3://sentinel-s2-l2a/tiles/{zone}/{lat_band}/{square}/{year}/{month}/{dom}/"
    jp2_root += f"{sequence}/"
    assets: dict[str, Any] = {}
    for key, (band_id, res, wavelength) in _BANDS.items():
        if key in drop_bands:
            continue
        name = band_id if band_ids else key
        common: dict[str, Any] = {}
        if wavelength is not None:
            common["eo:bands"] = [{"name": band_id if not old else key, "common_name": key,
                                   "center_wavelength": wavelength}]
        raster = ({"raster:bands": _raster(raster_offset, key == "scl", res)}
                  if raster_bands else {})
        if cog:
            assets[name] = {"href": f"{cog_root}/{band_id}.tif",
                            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                            "title": f"{band_id}", "roles": ["data", "reflectance"],
                            "gsd": res, **common, **raster}
        if jp2 and old:
            folder = f"R{res}m/" if jp2_folders else ""
            assets[f"{name}-jp2"] = {"href": f"{jp2_root}{folder}{band_id}.jp2",
                                     "type": "image/jp2", "roles": ["data", "reflectance"],
                                     "gsd": res, **common, **raster}
    assets["thumbnail"] = {"href": f"{cog_root}/thumbnail.jpg", "type": "image/jpeg",
                           "roles": ["thumbnail"]}
    west, south, east, north = tile_bbox(tile)
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": collection,
        "bbox": [west, south, east, north],
        "geometry": {"type": "Polygon", "coordinates": [[[west, south], [east, south],
                                                         [east, north], [west, north],
                                                         [west, south]]]},
        "properties": props, "assets": assets,
        "links": [{"rel": "self", "type": "application/geo+json",
                   "href": f"https://earth-search.aws.element84.com/v1/collections/"
                           f"{collection}/items/{item_id}"}]
        if old else [],
    }


def write_static_catalog(folder: Any, items: Iterable[Mapping[str, Any]]) -> str:
    """A static catalog in `folder`: catalog.json → one collection.json per collection →
    one item JSON each, with relative child/item links. Returns catalog.json's path."""
    root = str(folder)
    by_collection: dict[str, list[Mapping[str, Any]]] = {}
    for item in items:
        by_collection.setdefault(str(item.get("collection") or "misc"), []).append(item)
    children = []
    for name, members in sorted(by_collection.items()):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        links = [{"rel": "root", "href": "../catalog.json"},
                 {"rel": "parent", "href": "../catalog.json"}]
        for item in members:
            os.makedirs(os.path.join(root, name, item["id"]), exist_ok=True)
            with open(os.path.join(root, name, item["id"], f"{item['id']}.json"), "w",
                      encoding="utf-8") as handle:
                json.dump(item, handle)
            links.append({"rel": "item", "href": f"./{item['id']}/{item['id']}.json",
                          "type": "application/geo+json"})
        with open(os.path.join(root, name, "collection.json"), "w", encoding="utf-8") as f:
            json.dump({"type": "Collection", "stac_version": "1.0.0", "id": name,
                       "description": name, "license": "proprietary", "links": links,
                       "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                                  "temporal": {"interval": [[None, None]]}}}, f)
        children.append({"rel": "child", "href": f"./{name}/collection.json",
                         "type": "application/json"})
    path = os.path.join(root, "catalog.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"type": "Catalog", "stac_version": "1.0.0", "id": "test-static",
                   "description": "rsbatch test static catalog",
                   "links": [{"rel": "root", "href": "./catalog.json"}, *children]}, handle)
    return path


def write_item_collection(path: Any, items: Iterable[Mapping[str, Any]]) -> str:
    """The items as one GeoJSON FeatureCollection file (an ItemCollection)."""
    with open(str(path), "w", encoding="utf-8") as handle:
        json.dump({"type": "FeatureCollection", "features": list(items)}, handle)
    return str(path)
