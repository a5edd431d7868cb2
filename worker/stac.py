"""The STAC item written beside a cell's products: what was made, from what, and how.

It records the reflectance offset actually applied and any correction of the catalog's
value (DESIGN.md "Reflectance"), and each asset's size, which the worker reads back to
decide that a cell's outputs are complete.
"""

from __future__ import annotations

import posixpath
from datetime import datetime, timezone
from typing import Any

from qgis_rsbatch.core import products
from qgis_rsbatch.core.contract import Cell, ReduceUnit
from qgis_rsbatch.core.geometry import densify_points

from .offset import OffsetDecision
from .reader import Grid

EXTENSIONS = [
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
    "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
]
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


def _footprint(grid: Grid) -> dict:
    from rasterio.warp import transform_geom

    t = grid.transform
    x0, y0 = t.c, t.f
    x1, y1 = x0 + grid.width * t.a, y0 + grid.height * t.e
    # eight points a side: the rectangle's edges bend once in longitude/latitude
    ring = densify_points([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)],
                          max(abs(x1 - x0), abs(y1 - y0)) / 8)
    return transform_geom(grid.crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})


def _bbox(geometry: dict) -> list[float]:
    xs = [p[0] for p in geometry["coordinates"][0]]
    ys = [p[1] for p in geometry["coordinates"][0]]
    return [min(xs), min(ys), max(xs), max(ys)]


def _raster_bands(product: str, stats: dict[int, dict[str, str]]) -> list[dict]:
    spec = products.get(product)
    if spec.is_index:
        bands: list[dict[str, Any]] = [{"data_type": spec.dtype, "nodata": "nan",
                                        "name": spec.name}]
    else:  # one band per input band, reflectance scaled
        bands = [{"data_type": spec.dtype, "nodata": spec.nodata, "scale": spec.scale,
                  "offset": 0.0, "unit": "reflectance", "name": products.BANDS[key].name}
                 for key in spec.bands]
    for index, band in enumerate(bands):
        s = stats.get(index, {})
        if "STATISTICS_MINIMUM" in s:
            band["statistics"] = {
                "minimum": float(s["STATISTICS_MINIMUM"]),
                "maximum": float(s["STATISTICS_MAXIMUM"]),
                "mean": float(s["STATISTICS_MEAN"]),
                "stddev": float(s["STATISTICS_STDDEV"]),
                "valid_percent": float(s["STATISTICS_VALID_PERCENT"]),
            }
    return bands


def cell_item(cell: Cell, grid: Grid, assets: dict[str, dict[str, Any]],
              decision: OffsetDecision, warnings: list[str], *,
              aoi_masked_pct: float | None = None,
              aoi_stats: dict[str, dict[str, Any]] | None = None,
              masks: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The item; `assets` maps product → {"uri", "size", "stats"}; `aoi_stats` product →
    the index's statistics over the AOI (aoistats.py); `masks` product → {"uri", "size"}
    of the cloud mask beside it (cloudflags.py)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        software = version("rsbatch")
    except PackageNotFoundError:
        software = "unknown"
    geometry = _footprint(grid)
    t = grid.transform
    epsg = grid.crs.to_epsg()
    item_dir = posixpath.dirname(cell.item_uri)
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": EXTENSIONS,
        "id": f"{cell.job_id}_{cell.cell_id}",
        "geometry": geometry,
        "bbox": _bbox(geometry),
        "properties": {
            "datetime": None,
            "start_datetime": f"{cell.date}T00:00:00Z",
            "end_datetime": f"{cell.date}T23:59:59Z",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "grid:code": f"MGRS-{cell.tile}",
            "proj:epsg": epsg,
            "proj:shape": [grid.height, grid.width],
            "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "processing:software": {"rsbatch": software},
            "rsbatch:job_id": cell.job_id,
            "rsbatch:cell_id": cell.cell_id,
            "rsbatch:source_item": cell.scene_id,
            "rsbatch:cloud_mask": cell.cloud_mask,
            "rsbatch:clipped_to_aoi": cell.aoi is not None,
            "rsbatch:reflectance": {"scale": cell.scale, **decision.to_dict()},
            "rsbatch:warnings": list(warnings),
            "rsbatch:aoi_masked_pct": round(aoi_masked_pct, 3)
            if aoi_masked_pct is not None else None,
            "rsbatch:max_aoi_cloud": cell.max_aoi_cloud,
            "rsbatch:aoi_stats": dict(aoi_stats or {}),
        },
        "links": [],
        "assets": {
            product: {
                "href": "./" + posixpath.relpath(info["uri"], item_dir),
                "type": COG_TYPE,
                "title": products.get(product).description,
                "roles": ["data"] if products.get(product).is_index else ["data", "visual"],
                "file:size": info["size"],
                "raster:bands": _raster_bands(product, info.get("stats", {})),
            }
            for product, info in assets.items()
        } | mask_assets(masks, item_dir),
    }


def mask_assets(masks: dict[str, dict[str, Any]] | None, item_dir: str) -> dict[str, Any]:
    """The assets of the cloud masks beside outputs that keep their clouds ("rgb_clouds")."""
    from .cloudflags import DESCRIPTION

    return {f"{product}_clouds": {
        "href": "./" + posixpath.relpath(info["uri"], item_dir), "type": COG_TYPE,
        "title": DESCRIPTION, "roles": ["cloud"], "file:size": info["size"],
    } for product, info in (masks or {}).items()}


def recorded_aoi_facts(item: Any) -> dict[str, Any]:
    """The AOI cloud share and statistics an earlier run wrote into its item."""
    properties = item.get("properties", {}) if isinstance(item, dict) else {}
    return {"aoi_masked_pct": properties.get("rsbatch:aoi_masked_pct"),
            "stats": dict(properties.get("rsbatch:aoi_stats") or {})}


def complete_products(item: Any, cell: Cell) -> dict[str, int]:
    """Products an existing item lists for this cell, with the size each should have."""
    properties = item.get("properties", {}) if isinstance(item, dict) else {}
    if properties.get("rsbatch:cell_id") != cell.cell_id:
        return {}
    found = {}
    for product, asset in (item.get("assets") or {}).items():
        if product in cell.products and isinstance(asset.get("file:size"), int):
            found[product] = asset["file:size"]
    return found


def mask_sizes(item: Any) -> dict[str, int]:
    """product → size of the cloud mask an existing item lists beside it."""
    assets = (item.get("assets") or {}) if isinstance(item, dict) else {}
    return {key.removesuffix("_clouds"): asset["file:size"] for key, asset in assets.items()
            if key.endswith("_clouds") and isinstance(asset.get("file:size"), int)}


def unit_item(unit: ReduceUnit, grid: Grid, asset: dict[str, Any], warnings: list[str],
              lacking: list[str]) -> dict[str, Any]:
    """The item of a mosaic or composite; `asset` holds its "uri", "size", "stats" (band
    tags) and "aoi_stats" (a mosaic's index over the AOI)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        software = version("rsbatch")
    except PackageNotFoundError:
        software = "unknown"
    spec = products.get(unit.product)
    stats = asset.get("stats", {})
    bands = _raster_bands(unit.product, stats)
    title = f"{spec.description}, mosaic of {unit.date}"
    if unit.kind == "composite":
        first, last = unit.dates
        title = f"{spec.title}, per-pixel {unit.method} of {first} … {last}"
        count: dict[str, Any] = {"data_type": spec.dtype, "name": "count",
                 "description": "valid observations"}
        s = stats.get(len(bands), {})
        if "STATISTICS_MAXIMUM" in s:
            count["statistics"] = {"minimum": float(s["STATISTICS_MINIMUM"]),
                                   "maximum": float(s["STATISTICS_MAXIMUM"])}
        bands.append(count)
    geometry = _footprint(grid)
    t = grid.transform
    first, last = unit.dates
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": EXTENSIONS[:4],
        "id": f"{unit.job_id}_{unit.unit_id}",
        "geometry": geometry,
        "bbox": _bbox(geometry),
        "properties": {
            "datetime": None,
            "start_datetime": f"{first}T00:00:00Z",
            "end_datetime": f"{last}T23:59:59Z",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "proj:epsg": grid.crs.to_epsg(),
            "proj:shape": [grid.height, grid.width],
            "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            "processing:software": {"rsbatch": software},
            "rsbatch:job_id": unit.job_id,
            "rsbatch:unit_id": unit.unit_id,
            "rsbatch:kind": unit.kind,
            "rsbatch:inputs": list(unit.inputs),
            "rsbatch:lacking_inputs": list(lacking),
            "rsbatch:clipped_to_aoi": unit.aoi is not None,
            "rsbatch:warnings": list(warnings),
            "rsbatch:aoi_stats": dict(asset.get("aoi_stats") or {}),
        },
        "links": [],
        "assets": {
            unit.product: {
                "href": "./" + posixpath.relpath(asset["uri"], posixpath.dirname(unit.item_uri)),
                "type": COG_TYPE,
                "title": title,
                "roles": ["data"] if spec.is_index else ["data", "visual"],
                "file:size": asset["size"],
                "raster:bands": bands,
            }
        } | mask_assets(asset.get("masks"), posixpath.dirname(unit.item_uri)),
    }
