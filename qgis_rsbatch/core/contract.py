"""The cell contract: the one JSON shape every part speaks (see DESIGN.md).

A job is a list of cells; a cell is one Sentinel-2 tile on one date, with everything the
worker needs to process it and nothing it has to look up. The planner writes cells, the
Lambda and the worker validate them with `Cell.from_dict`, the task log keys on
`task_id`, and `output_uri` is the one place output names are made. Pure stdlib, so the
Lambda and QGIS's own Python can import it.
"""

from __future__ import annotations

import enum
import math
import re
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import products as registry
from .errors import InvalidInput
from .products import BAND_KEYS

_TILE_RE = re.compile(r"^(0?[1-9]|[1-5][0-9]|60)([C-HJ-NP-X])([A-HJ-NP-Z])([A-HJ-NP-V])$")
#: the folder of a job holding its cells' worker logs (<output>/<job_id>/logs/<cell_id>.log)
LOG_FOLDER = "logs"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}$")
_FIELDS = {
    "job_id", "cell_id", "tile", "date", "bands", "products", "aoi", "cloud_mask",
    "scale", "offset", "offset_check", "output", "requester_pays", "scene_id", "max_aoi_cloud",
}


class Status(str, enum.Enum):
    """Lifecycle of one cell in the task log."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    #: left out on purpose, no output: the AOI was more masked than the job's limit
    SKIPPED = "SKIPPED"

    @property
    def finished(self) -> bool:
        return self in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.SKIPPED)

    @property
    def done(self) -> bool:
        """Ended as asked: succeeded, or skipped by the job's own rule (not a failure)."""
        return self in (Status.SUCCEEDED, Status.SKIPPED)

    def __str__(self) -> str:  # so f-strings print "RUNNING", not "Status.RUNNING"
        return self.value


def normalize_tile(tile: str) -> str:
    """'T48RXT', '48rxt' or '048RXT' → '48RXT'; InvalidInput when it is not an MGRS tile id."""
    text = str(tile).strip().upper()
    if text.startswith("T") and len(text) in (6, 7) and text[1].isdigit():
        text = text[1:]
    match = _TILE_RE.match(text)
    if not match:
        raise InvalidInput(f"'{tile}' is not a Sentinel-2 tile id (like 48RXT)")
    return f"{int(match.group(1))}{match.group(2)}{match.group(3)}{match.group(4)}"


def parse_date(value: str, field_name: str = "date") -> str:
    """A calendar date as ISO 'YYYY-MM-DD'; also takes the seed's 'YYYYMMDD'."""
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, fmt).date().isoformat()  # noqa: DTZ007 - a date, no time
        except ValueError:
            continue
    raise InvalidInput(f"{field_name} '{value}' is not a date (expected YYYY-MM-DD)")


def cell_id_for(tile: str, date: str) -> str:
    return f"{tile}_{date}"


def task_id_for(job_id: str, cell_id: str) -> str:
    """The task log's hash key (DESIGN.md): one record per cell of a job."""
    return f"{job_id}#{cell_id}"


def new_job_id(now: datetime | None = None) -> str:
    """Sortable, readable, unique enough: 'rsb-20261128-234700-3f9a'."""
    now = now or datetime.now(timezone.utc)
    return f"rsb-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def output_name(tile: str, date: str, product: str) -> str:
    return f"{tile}_{date}_{product}.tif"


def cloud_mask_uri(output_uri: str) -> str:
    """The cloud mask written beside an output that keeps its clouds (RGB): '…_rgb.tif' →
    '…_rgb_clouds.tif', for a cell's output and a mosaic's alike."""
    stem = output_uri[:-4] if output_uri.endswith(".tif") else output_uri
    return f"{stem}_clouds.tif"


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def normalize_output(output: str) -> str:
    """'s3://bucket/prefix' stays; a local path becomes an absolute 'file://' URI."""
    text = str(output).strip()
    if text.startswith("s3://"):
        if len(text) <= len("s3://") or text[5] == "/":
            raise InvalidInput(f"output '{output}' has no bucket name")
        return text.rstrip("/")
    if text.startswith("file://"):
        path = text[len("file://"):]
        if not path.startswith("/"):
            raise InvalidInput(f"output '{output}' must be an absolute file:/// URI")
        return "file://" + (path.rstrip("/") or "/")
    if "://" in text:
        raise InvalidInput(f"output '{output}' must be an s3:// or file:// URI or a folder")
    import os

    return "file://" + os.path.abspath(os.path.expanduser(text)).replace(os.sep, "/")


def _require(data: Mapping[str, Any], key: str, what: str = "cell") -> Any:
    if key not in data or data[key] is None:
        raise InvalidInput(f"{what} field '{key}' is missing")
    return data[key]


def _identifier(value: Any, what: str, key: str) -> str:
    text = str(value)
    if not _ID_RE.match(text):
        raise InvalidInput(f"{what} field '{key}' '{text}' may only hold letters, digits, "
                           "'_', '.', '-'")
    return text


def _opening(data: Any, what: str, fields: set[str]) -> str:
    """The checks every unit of work's `from_dict` opens with (a JSON object of known
    fields with a valid job_id); returns the job_id."""
    if not isinstance(data, Mapping):
        raise InvalidInput(f"a {what} must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - fields)
    if unknown:
        raise InvalidInput(f"{what} has unknown field(s): {', '.join(unknown)}")
    return _identifier(_require(data, "job_id", what), what, "job_id")


def _validate_aoi(aoi: Any, what: str = "cell") -> dict | None:
    if aoi is None:
        return None
    if not isinstance(aoi, Mapping) or aoi.get("type") not in ("Polygon", "MultiPolygon"):
        raise InvalidInput(f"{what} field 'aoi' must be a GeoJSON Polygon or MultiPolygon "
                           "(or null)")
    polygons = aoi.get("coordinates") or []
    if aoi["type"] == "Polygon":
        polygons = [polygons]
    try:
        for polygon in polygons:
            for ring in polygon:
                if len(ring) < 4:
                    raise InvalidInput(f"{what} field 'aoi' has a ring with fewer than 4 "
                                           "positions")
                for lon, lat, *_ in ring:
                    if not (-180 <= float(lon) <= 180 and -90 <= float(lat) <= 90):
                        raise InvalidInput(
                            f"{what} field 'aoi' has position ({lon}, {lat}) outside EPSG:4326 "
                            "bounds; the AOI must be longitude/latitude"
                        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput(f"{what} field 'aoi' has malformed coordinates") from exc
    return dict(aoi)


def _number(data: Mapping[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"cell field '{key}' must be a finite number, got {value!r}")
    return float(value)


def percent_limit(value: Any, what: str) -> float | None:
    """A percentage limit 0–100 as a float, or None when not given."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value) or not 0 <= value <= 100:
        raise InvalidInput(f"{what} must be a percentage 0–100, got {value!r}")
    return float(value)


def _flag(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"cell field '{key}' must be true or false, got {value!r}")
    return value


@dataclass(frozen=True)
class Cell:
    """One (tile, date) of a job: the worker's whole input."""

    job_id: str
    cell_id: str
    tile: str
    date: str
    bands: Mapping[str, str | None]
    products: tuple[str, ...]
    output: str
    aoi: dict | None = None
    cloud_mask: bool = True
    scale: float = 0.0001
    offset: float = 0.0
    offset_check: bool = False
    requester_pays: bool = False
    scene_id: str | None = None
    #: skip the cell (SKIPPED, no output) when more of the AOI than this % is masked by SCL
    max_aoi_cloud: float | None = None

    @property
    def task_id(self) -> str:
        return task_id_for(self.job_id, self.cell_id)

    def output_uri(self, product: str) -> str:
        """Where `product` is written: <output>/<job_id>/<tile>_<date>_<product>.tif."""
        return join_uri(self.output, self.job_id, output_name(self.tile, self.date, product))

    @property
    def item_uri(self) -> str:
        """The STAC item written beside the products, last, once they are all in place."""
        return join_uri(self.output, self.job_id, f"{self.cell_id}.json")

    @property
    def log_uri(self) -> str:
        """The cell's worker log on the local backend: <output>/<job_id>/logs/<cell_id>.log.

        The one place this path is made: the local backend writes it, `rsbatch logs` and
        the dock read it. (On AWS the log is the Batch job's CloudWatch stream.)
        """
        return join_uri(self.output, self.job_id, LOG_FOLDER, f"{self.cell_id}.log")

    def needed_bands(self) -> tuple[str, ...]:
        """The bands this cell's products read (registry), SCL when they are cloud-masked."""
        return registry.bands_for(self.products, self.cloud_mask)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "job_id": self.job_id, "cell_id": self.cell_id, "tile": self.tile,
            "date": self.date, "bands": dict(self.bands), "products": list(self.products),
            "aoi": self.aoi, "cloud_mask": self.cloud_mask, "scale": self.scale,
            "offset": self.offset, "offset_check": self.offset_check, "output": self.output,
            "requester_pays": self.requester_pays,
        }
        if self.scene_id:
            data["scene_id"] = self.scene_id
        if self.max_aoi_cloud is not None:
            data["max_aoi_cloud"] = self.max_aoi_cloud
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cell:
        """Validate a cell from JSON; InvalidInput names the first bad field."""
        job_id = _opening(data, "cell", _FIELDS)
        tile = normalize_tile(_require(data, "tile"))
        date = parse_date(_require(data, "date"), "cell field 'date'")
        cell_id = _identifier(data.get("cell_id") or cell_id_for(tile, date), "cell", "cell_id")

        raw_products = data.get("products", list(registry.DEFAULT_PRODUCTS))
        if not isinstance(raw_products, (str, list, tuple)):
            raise InvalidInput("cell field 'products' must be a list of product names")
        products = registry.parse_products(raw_products, "cell field 'products'")

        bands = _require(data, "bands")
        if not isinstance(bands, Mapping):
            raise InvalidInput("cell field 'bands' must be an object of band name → href")
        unknown_bands = sorted(set(bands) - set(BAND_KEYS))
        if unknown_bands:
            raise InvalidInput(
                f"cell field 'bands' has unknown band(s) {unknown_bands}; known: {list(BAND_KEYS)}"
            )
        clean_bands: dict[str, str | None] = {}
        for key in BAND_KEYS:
            href = bands.get(key)
            if href is not None and (not isinstance(href, str) or not href.strip()):
                raise InvalidInput(f"cell field 'bands.{key}' must be an href string or null")
            clean_bands[key] = href.strip() if href else None

        cell = cls(
            job_id=job_id, cell_id=cell_id, tile=tile, date=date, bands=clean_bands,
            products=products, output=normalize_output(_require(data, "output")),
            aoi=_validate_aoi(data.get("aoi")),
            cloud_mask=_flag(data, "cloud_mask", True),
            scale=_number(data, "scale", 0.0001), offset=_number(data, "offset", 0.0),
            offset_check=_flag(data, "offset_check", False),
            requester_pays=_flag(data, "requester_pays", False),
            scene_id=str(data["scene_id"]) if data.get("scene_id") else None,
            max_aoi_cloud=percent_limit(data.get("max_aoi_cloud"), "cell field 'max_aoi_cloud'"),
        )
        if cell.scale <= 0:
            raise InvalidInput(f"cell field 'scale' must be positive, got {cell.scale}")
        for key in cell.needed_bands():
            if not cell.bands.get(key):
                users = [p for p in products if key in registry.PRODUCTS[p].bands]
                why = "cloud masking" if key == registry.MASK_BAND else \
                    f"product(s) {', '.join(users)}"
                raise InvalidInput(f"cell field 'bands.{key}' is missing; {why} need(s) it")
        return cell


# --- the second kind of work unit: reduce units (mosaics, composites) ------------------------
#: what a reduce unit makes: one date's tiles merged, or a period's dates reduced per pixel
REDUCE_KINDS = ("mosaic", "composite")
#: per-pixel reducers a composite may use
COMPOSITE_METHODS = ("median",)
#: the mosaic grid's pixel size; its edges lie on multiples of it (as Sentinel-2's 10 m bands)
MOSAIC_RESOLUTION = 10
_UNIT_FIELDS = {
    "job_id", "unit_id", "kind", "product", "inputs", "date", "period", "method", "grid",
    "aoi", "output",
}


def mosaic_unit_id(date: str, product: str) -> str:
    return f"mosaic_{date}_{product}"


def composite_unit_id(first: str, last: str, product: str, method: str = "median") -> str:
    return f"composite_{first}_{last}_{product}_{method}"


def split_cell_id(cell_id: str) -> tuple[str, str]:
    """'32TMT_2024-06-01' → ('32TMT', '2024-06-01'): the planner's cell ids (`cell_id_for`)."""
    tile, _, date = str(cell_id).partition("_")
    try:
        return normalize_tile(tile), parse_date(date)
    except InvalidInput:
        raise InvalidInput(f"reduce input '{cell_id}' is neither a cell id <tile>_<date> nor "
                           "a mosaic unit id mosaic_<date>_<product>") from None


@dataclass(frozen=True)
class TargetGrid:
    """The pixel grid a reduce unit writes: a metric CRS by EPSG code, north-up, square
    pixels of `MOSAIC_RESOLUTION` metres whose edges lie on multiples of that size."""

    epsg: int
    transform: tuple[float, float, float, float, float, float]  # rasterio's Affine order
    width: int
    height: int

    def bounds(self) -> tuple[float, float, float, float]:
        res, _, x0, _, _, y0 = self.transform
        return x0, y0 - self.height * res, x0 + self.width * res, y0

    def to_dict(self) -> dict[str, Any]:
        return {"epsg": self.epsg, "transform": list(self.transform), "width": self.width,
                "height": self.height}

    @classmethod
    def from_dict(cls, data: Any) -> TargetGrid:
        if not isinstance(data, Mapping):
            raise InvalidInput("reduce unit field 'grid' must be an object with epsg, "
                               "transform, width, height")
        try:
            epsg = int(data["epsg"])
            transform = tuple(float(v) for v in data["transform"])
            width, height = int(data["width"]), int(data["height"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"reduce unit field 'grid' is malformed: {exc}") from exc
        res = float(MOSAIC_RESOLUTION)
        if len(transform) != 6 or transform[0] != res or transform[4] != -res \
                or transform[1] or transform[3]:
            raise InvalidInput(f"reduce unit field 'grid.transform' must be ({res:g}, 0, x0, 0, "
                               f"-{res:g}, y0), got {list(transform)}")
        if transform[2] % res or transform[5] % res:
            raise InvalidInput(f"reduce unit grid origin ({transform[2]:g}, {transform[5]:g}) "
                               f"is not on a multiple of {res:g} m")
        if width < 1 or height < 1:
            raise InvalidInput(f"reduce unit grid is empty ({width} × {height} pixels)")
        if not 1024 <= epsg <= 999999:
            raise InvalidInput(f"reduce unit field 'grid.epsg' {epsg} is not an EPSG code")
        return cls(epsg, transform, width, height)


@dataclass(frozen=True)
class ReduceUnit:
    """A unit of work that reads finished cells (or mosaics) instead of Sentinel-2 bands.

    kind "mosaic": the cells of one `date` merged onto `grid` (the nearest tile's centre
    wins where tiles overlap); kind "composite": the dates of `period` (first, last),
    reduced per pixel by `method`, plus a band counting the valid observations. `inputs`
    are cell ids (<tile>_<date>) or mosaic unit ids; a backend runs the unit once they are
    final. `aoi` clips the output (None: the whole grid).
    """

    job_id: str
    unit_id: str
    kind: str
    product: str
    inputs: tuple[str, ...]
    grid: TargetGrid
    output: str
    date: str | None = None
    period: tuple[str, str] | None = None
    method: str | None = None
    aoi: dict | None = None

    @property
    def task_id(self) -> str:
        return task_id_for(self.job_id, self.unit_id)

    @property
    def dates(self) -> tuple[str, str]:
        """(first, last): the day of a mosaic, the period of a composite."""
        if self.period is not None:
            return self.period
        return str(self.date), str(self.date)

    def output_uri(self) -> str:
        """<out>/<job_id>/mosaic/<date>_<product>.tif or
        <out>/<job_id>/composite/<first>_<last>_<product>_<method>.tif."""
        return join_uri(self.output, self.job_id, self.kind, self._stem() + ".tif")

    @property
    def log_uri(self) -> str:
        """The unit's worker log on the local backend: <output>/<job_id>/logs/<unit_id>.log
        (beside its cells' logs, see Cell.log_uri)."""
        return join_uri(self.output, self.job_id, LOG_FOLDER, f"{self.unit_id}.log")

    @property
    def item_uri(self) -> str:
        """The STAC item beside the output, written last (the unit's completion marker)."""
        return join_uri(self.output, self.job_id, self.kind, self._stem() + ".json")

    def _stem(self) -> str:
        if self.kind == "mosaic":
            return f"{self.date}_{self.product}"
        first, last = self.dates
        return f"{first}_{last}_{self.product}_{self.method}"

    def input_uri(self, input_id: str) -> str:
        """Where input `input_id` was published: a mosaic unit's output or a cell's product."""
        prefix = "mosaic_"
        if input_id.startswith(prefix):
            date, _, product = input_id[len(prefix):].partition("_")
            return join_uri(self.output, self.job_id, "mosaic", f"{date}_{product}.tif")
        tile, date = split_cell_id(input_id)
        return join_uri(self.output, self.job_id, output_name(tile, date, self.product))

    def input_date(self, input_id: str) -> str:
        if input_id.startswith("mosaic_"):
            return parse_date(input_id[len("mosaic_"):].partition("_")[0])
        return split_cell_id(input_id)[1]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "job_id": self.job_id, "unit_id": self.unit_id, "kind": self.kind,
            "product": self.product, "inputs": list(self.inputs), "grid": self.grid.to_dict(),
            "aoi": self.aoi, "output": self.output,
        }
        if self.kind == "mosaic":
            data["date"] = self.date
        else:
            data["period"] = list(self.dates)
            data["method"] = self.method
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReduceUnit:
        """Validate a reduce unit from JSON; InvalidInput names the first bad field."""
        what = "reduce unit"
        job_id = _opening(data, what, _UNIT_FIELDS)
        kind = str(_require(data, "kind", what))
        if kind not in REDUCE_KINDS:
            raise InvalidInput(f"reduce unit field 'kind' must be one of "
                               f"{', '.join(REDUCE_KINDS)}, got '{kind}'")
        product = registry.get(str(_require(data, "product", what))).name
        date: str | None = None
        period: tuple[str, str] | None = None
        method: str | None = None
        if kind == "mosaic":
            date = parse_date(_require(data, "date", what), "reduce unit field 'date'")
            default_id = mosaic_unit_id(date, product)
        else:
            raw = _require(data, "period", what)
            if not isinstance(raw, (list, tuple)) or len(raw) != 2:
                raise InvalidInput("reduce unit field 'period' must be [first, last] dates")
            period = (parse_date(raw[0], "reduce unit period start"),
                      parse_date(raw[1], "reduce unit period end"))
            if period[1] < period[0]:
                raise InvalidInput(f"reduce unit period {period[0]} … {period[1]} is empty")
            method = str(data.get("method") or "median")
            if method not in COMPOSITE_METHODS:
                raise InvalidInput(f"reduce unit field 'method' must be one of "
                                   f"{', '.join(COMPOSITE_METHODS)}, got '{method}'")
            default_id = composite_unit_id(*period, product, method)
        unit_id = _identifier(data.get("unit_id") or default_id, what, "unit_id")
        inputs = _require(data, "inputs", what)
        if not isinstance(inputs, (list, tuple)) or not inputs \
                or not all(isinstance(i, str) and i for i in inputs):
            raise InvalidInput("reduce unit field 'inputs' must be a non-empty list of cell or "
                               "unit ids")
        if len(set(inputs)) != len(inputs):
            raise InvalidInput("reduce unit field 'inputs' lists an input twice")
        unit = cls(job_id=job_id, unit_id=unit_id, kind=kind, product=product,
                   inputs=tuple(inputs), grid=TargetGrid.from_dict(_require(data, "grid", what)),
                   output=normalize_output(_require(data, "output", what)), date=date,
                   period=period, method=method, aoi=_validate_aoi(data.get("aoi"), what))
        first, last = unit.dates
        for input_id in unit.inputs:
            if input_id.startswith("mosaic_") and (
                    kind == "mosaic" or not input_id.endswith(f"_{product}")):
                raise InvalidInput(f"reduce unit {unit_id} cannot read '{input_id}': a mosaic "
                                   "reads cells, a composite the mosaics of its own product")
            when = unit.input_date(input_id)
            if not first <= when <= last:
                raise InvalidInput(f"reduce input '{input_id}' of {when} lies outside the "
                                   f"unit's dates {first} … {last}")
        return unit


@dataclass(frozen=True)
class Job:
    """A job: its id, the parameters it was planned from, its cells, and the reduce units
    (mosaics, composites) that read them once they are final."""

    job_id: str
    cells: tuple[Cell, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    created: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    units: tuple[ReduceUnit, ...] = ()

    @property
    def tasks(self) -> tuple[Cell | ReduceUnit, ...]:
        """Every unit of work with a task-log record: the cells, then the reduce units."""
        return (*self.cells, *self.units)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "job_id": self.job_id, "created": self.created, "params": dict(self.params),
            "cells": [cell.to_dict() for cell in self.cells],
        }
        if self.units:
            data["units"] = [unit.to_dict() for unit in self.units]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        if not isinstance(data, Mapping) or not isinstance(data.get("cells"), list):
            raise InvalidInput("a job must be a JSON object with a 'cells' list")
        job_id = str(_require(data, "job_id", "job"))
        cells = []
        for index, raw in enumerate(data["cells"]):
            try:
                cell = Cell.from_dict({"job_id": job_id, **raw})
            except InvalidInput as exc:
                raise InvalidInput(f"cell {index}: {exc}") from exc
            if cell.job_id != job_id:
                raise InvalidInput(f"cell {index}: job_id '{cell.job_id}' is not the job's")
            cells.append(cell)
        # a Counter, not ids.count per id: that was quadratic (100 s at 30,000 cells)
        dupes = sorted(i for i, n in Counter(cell.cell_id for cell in cells).items() if n > 1)
        if dupes:
            raise InvalidInput(f"job has duplicate cell ids: {', '.join(dupes)}")
        units = _job_units(job_id, data.get("units"), {cell.cell_id for cell in cells})
        created = str(data.get("created") or datetime.now(timezone.utc).isoformat())
        return cls(job_id=job_id, cells=tuple(cells), params=dict(data.get("params") or {}),
                   created=created, units=units)


def _job_units(job_id: str, raw_units: Any, cell_ids: set[str]) -> tuple[ReduceUnit, ...]:
    """A job's reduce units, validated: each the job's own, ids unique among cells and units,
    inputs naming cells of the job or units listed before it (so the order is runnable)."""
    if raw_units is None:
        return ()
    if not isinstance(raw_units, list):
        raise InvalidInput("job field 'units' must be a list of reduce units")
    known = set(cell_ids)
    units = []
    for index, raw in enumerate(raw_units):
        try:
            unit = ReduceUnit.from_dict({"job_id": job_id, **raw} if isinstance(raw, Mapping)
                                        else raw)
        except InvalidInput as exc:
            raise InvalidInput(f"unit {index}: {exc}") from exc
        if unit.job_id != job_id:
            raise InvalidInput(f"unit {index}: job_id '{unit.job_id}' is not the job's")
        if unit.unit_id in known:
            raise InvalidInput(f"unit {index}: id '{unit.unit_id}' is already a cell or unit "
                               "of the job")
        strangers = [i for i in unit.inputs if i not in known]
        if strangers:
            raise InvalidInput(f"unit {unit.unit_id} reads {', '.join(strangers)}: not a cell "
                               "or an earlier unit of the job")
        known.add(unit.unit_id)
        units.append(unit)
    return tuple(units)


#: the statuses after which a unit may read an input (a FAILED or SKIPPED input published
#: nothing: the unit runs on the others and says which it lacked)
INPUT_FINAL = (Status.SUCCEEDED, Status.SKIPPED, Status.FAILED)


def task_key(task: Cell | ReduceUnit) -> str:
    """A cell's id or a unit's: the record's CellId, the log file's name, the Batch job's."""
    return task.unit_id if isinstance(task, ReduceUnit) else task.cell_id


def inputs_not_ended(job_id: str, stuck: Mapping[str, Any]) -> str:
    """Why a unit is FAILED without running: inputs (id → status, None: no record) that can
    no longer end (cancelled, never recorded). Both backends say it in these words."""
    ended = ", ".join(f"{i} ({status or 'no record'})" for i, status in stuck.items())
    return (f"its input(s) {ended} did not end; `rsbatch resume {job_id}` runs them and then "
            "this unit")


def unit_levels(units: tuple[ReduceUnit, ...] | list[ReduceUnit]) -> list[list[ReduceUnit]]:
    """The units in stages a backend can run one after the other: a unit's level is one
    more than the highest of the units it reads (cells are level 0), so level 1 holds the
    mosaics and the composites of cells, level 2 the composites of mosaics."""
    level: dict[str, int] = {}
    stages: list[list[ReduceUnit]] = []
    for unit in units:  # a job lists a unit after the units it reads (Job.from_dict)
        mine = 1 + max((level.get(i, 0) for i in unit.inputs), default=0)
        level[unit.unit_id] = mine
        while len(stages) < mine:
            stages.append([])
        stages[mine - 1].append(unit)
    return stages
