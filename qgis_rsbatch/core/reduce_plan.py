"""From a job's cells to its reduce units: per-date mosaics and period composites.

A cell is one tile on one date; an analyst asks about an area. The planner adds, per date and
product, a mosaic of that date's tiles on one grid covering the AOI, and, when asked, per
period and product a composite reading that period's mosaics (or its cells when mosaics are
off). Every unit of a job shares one grid, so composites stack mosaics pixel for pixel.

The grid's CRS is the UTM zone holding most of the AOI by area (each zone's share measured
in its own projection), or an EPSG code the analyst names; its pixels are 10 m with edges on
multiples of 10 m, as the Sentinel-2 tiles' own, so a tile of that zone is copied, not
resampled. Pure Python (utm, geometry); pyproj only for a CRS other than UTM.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import aoi as aoi_mod
from . import geometry as planar
from . import grid, utm
from . import products as registry
from .contract import (
    COMPOSITE_METHODS,
    MOSAIC_RESOLUTION,
    Job,
    ReduceUnit,
    TargetGrid,
    composite_unit_id,
    mosaic_unit_id,
)
from .errors import InvalidInput, require

#: how the dates of a job are grouped into composites: the whole range, calendar months,
#: or consecutive windows of N days from the job's first day
PERIOD_CHOICES = ("all", "month", "Nd")
_DAYS_RE = re.compile(r"^([1-9][0-9]{0,3})d$")
_DENSIFY_DEG = 0.01  # ~1 km: AOI edges are straight in lon/lat, curves in the projection


@dataclass(frozen=True)
class ReducePlan:
    """The reduce units of a job and what the planner has to say about them."""

    units: tuple[ReduceUnit, ...]
    grid: TargetGrid | None
    notes: tuple[str, ...] = field(default=())


def parse_period(text: str) -> str:
    """'all', 'month' or 'Nd' (N days, e.g. '16d'); InvalidInput otherwise."""
    value = str(text).strip().lower()
    if value in ("all", "month") or _DAYS_RE.match(value):
        return value
    raise InvalidInput(f"composite period '{text}' must be 'all', 'month' or a number of days "
                       "like '16d'")


def periods(start: str, end: str, period: str) -> list[tuple[str, str]]:
    """The periods (first, last) covering [start, end], cut to it at both ends."""
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    if last < first:
        raise InvalidInput(f"the date range is empty: {end} is before {start}")
    period = parse_period(period)
    if period == "all":
        return [(start, end)]
    out = []
    if period == "month":
        day = first
        while day <= last:
            month_end = day.replace(day=calendar.monthrange(day.year, day.month)[1])
            out.append((day.isoformat(), min(month_end, last).isoformat()))
            day = month_end + dt.timedelta(days=1)
        return out
    days = int(period[:-1])
    day = first
    while day <= last:
        stop = min(day + dt.timedelta(days=days - 1), last)
        out.append((day.isoformat(), stop.isoformat()))
        day = stop + dt.timedelta(days=1)
    return out


# --- the grid -------------------------------------------------------------------------------
def _polygon_parts(geometry: Mapping[str, Any]) -> list[planar.Part]:
    return [p for p in planar.flatten(dict(geometry)) if p[0] == "polygon"]


def _zone_strips(part: planar.Part) -> list[tuple[int, float, float]]:
    """(zone, west, east) of the 6° zones a part's (possibly unwrapped) longitudes cross."""
    lons = [p[0] for p in planar.part_positions(part)]
    first, last = math.floor((min(lons) + 180) / 6), math.floor((max(lons) + 180) / 6)
    return [(k % 60 + 1, -180.0 + 6 * k, -174.0 + 6 * k) for k in range(first, last + 1)]


def _projected_area(part: planar.Part, lon0: float) -> float:
    rings = planar.densify_part(part, _DENSIFY_DEG)[1]
    areas = [abs(planar.ring_area([utm.forward_tm(x, y, lon0) for x, y, *_ in ring]))
             for ring in rings]
    return areas[0] - sum(areas[1:]) if areas else 0.0


def majority_zone(geometry: Mapping[str, Any]) -> int:
    """The WGS 84 / UTM EPSG code of the zone holding most of the geometry's polygons, by area
    (ties: the lower zone); north or south by the middle of the geometry's latitudes."""
    parts = _polygon_parts(geometry)
    if not parts:
        raise InvalidInput("the mosaic area has no polygon")
    shares: dict[int, float] = {}
    for part in parts:
        for zone, west, east in _zone_strips(part):
            for piece in planar.clip_part_x(part, west, east):
                area = _projected_area(piece, utm.central_meridian(zone))
                shares[zone] = shares.get(zone, 0.0) + area
    zone = max(sorted(shares), key=lambda z: shares[z])
    lats = [p[1] for part in parts for p in planar.part_positions(part)]
    return utm.epsg_code(zone, (min(lats) + max(lats)) / 2 < 0)


def _projector(epsg: int) -> Any:
    parsed = utm.parse_epsg(epsg)
    if parsed is not None:
        zone, south = parsed
        return lambda lon, lat: utm.forward(lon, lat, zone, south)
    pyproj = require("pyproj", f"a mosaic in EPSG:{epsg}")
    try:
        crs = pyproj.CRS.from_epsg(epsg)
    except pyproj.exceptions.CRSError as exc:
        raise InvalidInput(f"EPSG:{epsg} is not a CRS pyproj knows: {exc}") from exc
    units = {axis.unit_name for axis in crs.axis_info}
    if not crs.is_projected or units - {"metre"}:
        raise InvalidInput(f"EPSG:{epsg} ({crs.name}) is not a projected CRS in metres; the "
                           "mosaic grid is 10 m pixels")
    transformer = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return transformer.transform


def mosaic_grid(geometry: Mapping[str, Any], epsg: int | None = None) -> TargetGrid:
    """The 10 m grid, edges on multiples of 10 m, covering the geometry's polygons in `epsg`
    (default: `majority_zone`), one pixel of margin around them."""
    epsg = int(epsg) if epsg is not None else majority_zone(geometry)
    project = _projector(epsg)
    xs, ys = [], []
    for part in _polygon_parts(geometry):
        for ring in planar.densify_part(part, _DENSIFY_DEG)[1]:
            for lon, lat, *_ in ring:
                x, y = project(lon, lat)
                xs.append(x)
                ys.append(y)
    if not xs or not all(math.isfinite(v) for v in xs + ys):
        raise InvalidInput(f"the mosaic area does not project to EPSG:{epsg}")
    res = MOSAIC_RESOLUTION
    x0 = res * (math.floor(min(xs) / res) - 1)
    y0 = res * (math.ceil(max(ys) / res) + 1)
    width = math.ceil(max(xs) / res) + 1 - x0 // res
    height = y0 // res - (math.floor(min(ys) / res) - 1)
    return TargetGrid(epsg, (float(res), 0.0, float(x0), 0.0, -float(res), float(y0)),
                      int(width), int(height))


def _area_of(job: Job, aoi: Mapping[str, Any] | None) -> dict:
    """The AOI's polygons, or, when there are none (a point, a line, no AOI), the footprints
    of the job's tiles: the mosaic then covers the tiles whole, as the cells do."""
    if aoi is not None:
        geometry = aoi_mod.geometry_of(dict(aoi))
        parts = _polygon_parts(geometry)
        if parts:
            return planar.geometry_from_parts(parts)
    tiles = sorted({cell.tile for cell in job.cells})
    parts = [p for t in tiles for p in _polygon_parts(grid.tile_info(t).footprint)]
    return planar.geometry_from_parts(parts)


# --- the units ------------------------------------------------------------------------------
def plan_reduce(job: Job, *, aoi: Mapping[str, Any] | None = None, mosaic: bool = True,
                composite: str | None = None, composite_period: str = "all",
                mosaic_epsg: int | None = None, start: str | None = None,
                end: str | None = None) -> ReducePlan:
    """The reduce units of `job`: per date and product a mosaic (unless `mosaic` is off), and
    with `composite="median"` per period and product a composite.

    `aoi` (default: the job's request AOI) decides the grid; the units are clipped to the
    cells' own AOI. Periods run from `start` to `end` (default: the job's request range,
    else its first and last dates); a period without any date gets no unit, and a note.
    """
    if composite is not None and composite not in COMPOSITE_METHODS:
        raise InvalidInput(f"composite must be one of {', '.join(COMPOSITE_METHODS)} (or none), "
                           f"got '{composite}'")
    if not job.cells or (not mosaic and composite is None):
        return ReducePlan((), None)
    params = job.params or {}
    grid_ = mosaic_grid(_area_of(job, aoi if aoi is not None else params.get("aoi")),
                        mosaic_epsg)
    clip = job.cells[0].aoi
    output = job.cells[0].output
    by_date: dict[tuple[str, str], list[str]] = {}
    for cell in job.cells:
        for product in cell.products:
            by_date.setdefault((cell.date, product), []).append(cell.cell_id)
    common = {"job_id": job.job_id, "grid": grid_.to_dict(), "aoi": clip, "output": output}
    units: list[ReduceUnit] = []
    if mosaic:
        for (day, product), cells in sorted(by_date.items()):
            units.append(ReduceUnit.from_dict({**common, "kind": "mosaic", "product": product,
                                               "date": day, "inputs": sorted(cells)}))
    notes: list[str] = []
    if composite is not None:
        dates = sorted({day for day, _ in by_date})
        first = start or params.get("start") or dates[0]
        last = end or params.get("end") or dates[-1]
        products = [p for p in registry.NAMES if any(k[1] == p for k in by_date)]
        for low, high in periods(first, last, composite_period):
            for product in products:
                inside = [d for d in dates if low <= d <= high and (d, product) in by_date]
                if not inside:
                    notes.append(f"no acquisition of {product} between {low} and {high}: no "
                                 "composite for that period")
                    continue
                inputs = ([mosaic_unit_id(d, product) for d in inside] if mosaic else
                          sorted(c for d in inside for c in by_date[(d, product)]))
                units.append(ReduceUnit.from_dict({
                    **common, "kind": "composite", "product": product, "period": [low, high],
                    "method": composite, "inputs": inputs,
                    "unit_id": composite_unit_id(low, high, product, composite)}))
    return ReducePlan(tuple(units), grid_, tuple(notes))
