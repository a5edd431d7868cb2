"""From "this area, these dates" to a Job: tiles, scenes, then one cell per scene.

Two steps, so the QGIS dock can show the scenes and let the analyst untick some before the
job is made: `find_scenes(request)` (grid + catalog) and `make_job(request, scenes)`.
`plan(request)` does both for the command line and the Processing algorithm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import aoi as aoi_mod
from . import catalog, grid
from . import geometry as planar
from . import products as products_mod
from .contract import (
    COMPOSITE_METHODS,
    Cell,
    Job,
    cell_id_for,
    new_job_id,
    normalize_output,
    parse_date,
    percent_limit,
)
from .errors import InvalidInput
from .reduce_plan import parse_period, plan_reduce


@dataclass(frozen=True)
class JobRequest:
    """What the analyst asked for."""

    aoi: Mapping[str, Any]            # GeoJSON geometry in EPSG:4326
    start: str
    end: str
    output: str                       # folder, file:// or s3:// URI
    products: tuple[str, ...] = products_mod.DEFAULT_PRODUCTS
    max_cloud: float | None = None
    catalog: str | None = None        # None: Earth Search v1
    cloud_mask: bool = True
    clip: bool = True                 # clip products to the AOI (else whole tiles)
    max_aoi_cloud: float | None = None  # skip cells whose AOI is more masked than this %
    mosaic: bool = True               # per date and product, the tiles merged on one grid
    mosaic_crs: int | None = None     # the mosaic grid's EPSG code (None: the AOI's UTM zone)
    composite: str | None = None      # per period and product: None or "median"
    composite_period: str = "all"     # "all", "month" or "Nd" (reduce_plan.PERIOD_CHOICES)

    def __post_init__(self) -> None:
        start, end = parse_date(self.start, "start date"), parse_date(self.end, "end date")
        if end < start:
            raise InvalidInput(f"the date range is empty: end {end} is before start {start}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "products", products_mod.parse_products(self.products))
        object.__setattr__(self, "output", normalize_output(self.output))
        if self.max_cloud is not None and not 0 <= float(self.max_cloud) <= 100:
            raise InvalidInput(f"the cloud limit must be 0–100 %, got {self.max_cloud}")
        object.__setattr__(self, "max_aoi_cloud",
                           percent_limit(self.max_aoi_cloud, "the AOI cloud limit"))
        object.__setattr__(self, "mosaic_crs", parse_epsg(self.mosaic_crs))
        composite = None if self.composite in (None, "", "none") else str(self.composite)
        if composite is not None and composite not in COMPOSITE_METHODS:
            raise InvalidInput(f"composite must be none or {', '.join(COMPOSITE_METHODS)}, "
                               f"got '{self.composite}'")
        object.__setattr__(self, "composite", composite)
        object.__setattr__(self, "composite_period", parse_period(self.composite_period))

    def to_dict(self) -> dict[str, Any]:
        return {"aoi": dict(self.aoi), "start": self.start, "end": self.end,
                "output": self.output, "products": list(self.products),
                "max_cloud": self.max_cloud, "catalog": self.catalog,
                "cloud_mask": self.cloud_mask, "clip": self.clip,
                "max_aoi_cloud": self.max_aoi_cloud, "mosaic": self.mosaic,
                "mosaic_crs": self.mosaic_crs, "composite": self.composite,
                "composite_period": self.composite_period}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRequest:
        return cls(aoi=data["aoi"], start=data["start"], end=data["end"],
                   output=data["output"],
                   products=tuple(data.get("products") or products_mod.DEFAULT_PRODUCTS),
                   max_cloud=data.get("max_cloud"), catalog=data.get("catalog"),
                   cloud_mask=bool(data.get("cloud_mask", True)),
                   clip=bool(data.get("clip", True)),
                   max_aoi_cloud=data.get("max_aoi_cloud"),
                   mosaic=bool(data.get("mosaic", True)), mosaic_crs=data.get("mosaic_crs"),
                   composite=data.get("composite"),
                   composite_period=data.get("composite_period") or "all")


@dataclass
class Plan:
    """The tiles an AOI touches, the scenes found on them, and the job made from them."""

    request: JobRequest
    tiles: list[grid.Tile]
    scenes: list[catalog.Scene]
    job: Job | None = None
    warnings: list[str] = field(default_factory=list)


def find_scenes(request: JobRequest, *, search: Callable[..., Any] | None = None,
                **search_options: Any) -> Plan:
    """Tiles of the AOI, then the scenes of those tiles in the date range (InvalidInput if none)."""
    tiles = grid.tiles_for_aoi(request.aoi)
    search = search or catalog.search
    found = search([t.tile for t in tiles], request.start, request.end,
                   max_cloud=request.max_cloud, catalog=request.catalog, aoi=dict(request.aoi),
                   **search_options)
    warnings = list(getattr(found, "warnings", []))
    scenes = list(found)
    if not scenes:
        cloud = f" with at most {request.max_cloud:g} % cloud" if request.max_cloud is not None \
            else ""
        raise InvalidInput(
            f"no Sentinel-2 scene of tile(s) {', '.join(t.tile for t in tiles)} between "
            f"{request.start} and {request.end}{cloud} in {request.catalog or 'Earth Search'}")
    return Plan(request, tiles, scenes, warnings=warnings)


def _cell_aoi(request: JobRequest) -> dict | None:
    """The AOI a cell is clipped to: polygons only (a point or line AOI means whole tiles)."""
    if not request.clip:
        return None
    geometry = aoi_mod.geometry_of(dict(request.aoi))
    polygons = [coords for kind, coords in planar.flatten(geometry) if kind == "polygon"]
    if not polygons:
        return None
    if len(polygons) == 1:
        return {"type": "Polygon", "coordinates": polygons[0]}
    return {"type": "MultiPolygon", "coordinates": polygons}


def make_job(request: JobRequest, scenes: Iterable[catalog.Scene], *,
             job_id: str | None = None) -> Job:
    """One cell per scene (tile, date); the scene decides bands, scale and offset; then the
    reduce units the request asks for (per-date mosaics, period composites)."""
    return _make_job(request, scenes, job_id)[0]


def _make_job(request: JobRequest, scenes: Iterable[catalog.Scene],
              job_id: str | None) -> tuple[Job, tuple[str, ...]]:
    job_id = job_id or new_job_id()
    aoi = _cell_aoi(request)
    cells = []
    seen: set[str] = set()
    for scene in scenes:
        cell_id = cell_id_for(scene.tile, scene.date)
        if cell_id in seen:
            continue
        seen.add(cell_id)
        cells.append(Cell.from_dict({
            "job_id": job_id, "cell_id": cell_id, "tile": scene.tile, "date": scene.date,
            "bands": dict(scene.bands), "products": list(request.products), "aoi": aoi,
            "cloud_mask": request.cloud_mask and bool(scene.bands.get("scl")),
            "scale": scene.scale, "offset": scene.offset, "offset_check": scene.offset_check,
            "output": request.output, "requester_pays": scene.requester_pays,
            "scene_id": scene.item_id, "max_aoi_cloud": request.max_aoi_cloud,
        }))
    if not cells:
        raise InvalidInput("no scene selected: the job would have no cell")
    job = Job(job_id=job_id, cells=tuple(cells), params=request.to_dict())
    reduce = plan_reduce(job, mosaic=request.mosaic, composite=request.composite,
                         composite_period=request.composite_period,
                         mosaic_epsg=request.mosaic_crs)
    return replace(job, units=reduce.units), reduce.notes


def plan(request: JobRequest, *, job_id: str | None = None,
         exclude: Sequence[str] = (), **search_options: Any) -> Plan:
    """find_scenes + make_job; `exclude` drops cells by id (tile_date) or scene item id."""
    result = find_scenes(request, **search_options)
    chosen = [s for s in result.scenes
              if cell_id_for(s.tile, s.date) not in exclude and s.item_id not in exclude]
    result.job, notes = _make_job(request, chosen, job_id)
    result.warnings.extend(notes)
    return result


def parse_epsg(value: Any) -> int | None:
    """'EPSG:32632', 'epsg:32632', '32632' or 32632 → 32632; None stays None."""
    if value is None or value == "":
        return None
    text = str(value).strip().upper().removeprefix("EPSG:")
    if not text.isdigit():
        raise InvalidInput(f"mosaic CRS '{value}' must be an EPSG code like EPSG:32632")
    return int(text)
