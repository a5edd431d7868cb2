"""The product registry: every fact about a product in one place, as data.

A product's name, title, input bands (with their native resolution), formula, data type and
nodata, valid range, default style, and its cost for the estimate are read from here by the
contract (which bands a cell needs), the planner and the CLI (the choices), the estimate, the
worker (output profiles, STAC assets; its numpy compute functions are keyed by these names),
Processing's enum, the dock's checkboxes, the layer styles and the layer tree. Adding a
product is one entry here, its compute function in worker/compute.py, and tests.

Pure data and the standard library: QGIS's Python, the Lambda and the worker all import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .errors import InvalidInput


@dataclass(frozen=True)
class Band:
    """One Sentinel-2 band a cell may carry: its key in the cell (Earth Search's asset name),
    its band id and its native resolution."""

    key: str
    name: str        # B02 … B12, SCL: band descriptions, the seed's file names
    resolution: int  # metres; 20 m bands are repeated 2 × 2 onto the 10 m grid
    title: str


_BANDS = (
    Band("blue", "B02", 10, "blue"),
    Band("green", "B03", 10, "green"),
    Band("red", "B04", 10, "red"),
    Band("nir", "B08", 10, "near infrared"),
    Band("swir16", "B11", 20, "shortwave infrared 1.6 µm"),
    Band("swir22", "B12", 20, "shortwave infrared 2.2 µm"),
    Band("scl", "SCL", 20, "scene classification"),
)
BANDS: Mapping[str, Band] = MappingProxyType({band.key: band for band in _BANDS})
#: the bands a cell may carry, in the cell's order
BAND_KEYS = tuple(BANDS)
#: Sentinel-2 band ids by key ("red" → "B04")
BAND_NAMES: Mapping[str, str] = MappingProxyType({b.key: b.name for b in _BANDS})
#: the band the cloud mask comes from
MASK_BAND = "scl"
#: SCL classes an index is masked on: no data, saturated, cloud shadow, cloud medium/high, cirrus
MASKED_SCL = (0, 1, 3, 8, 9, 10)

#: colour ramps by name, low → high (ColorBrewer, 11 classes)
RAMPS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "RdYlGn": ("#a50026", "#d73027", "#f46d43", "#fdae61", "#fee08b", "#ffffbf",
               "#d9ef8b", "#a6d96a", "#66bd63", "#1a9850", "#006837"),
    "BrBG": ("#543005", "#8c510a", "#bf812d", "#dfc27d", "#f6e8c3", "#f5f5f5",
             "#c7eae5", "#80cdc1", "#35978f", "#01665e", "#003c30"),
    "RdBu": ("#67001f", "#b2182b", "#d6604d", "#f4a582", "#fddbc7", "#f7f7f7",
             "#d1e5f0", "#92c5de", "#4393c3", "#2166ac", "#053061"),
})


@dataclass(frozen=True)
class Style:
    """How a product looks by default. kind "rgb-stretch": bands 1-3 as red, green, blue,
    each stretched from `minimum` to `maximum` reflectance; kind "ramp": band 1 through the
    colour ramp `ramp` pinned to `minimum` … `maximum`, nodata transparent."""

    kind: str
    minimum: float
    maximum: float
    ramp: str = ""

    def colors(self) -> tuple[str, ...]:
        return RAMPS[self.ramp] if self.ramp else ()


@dataclass(frozen=True)
class Product:
    """One output product of a cell."""

    name: str
    title: str
    description: str            # one line for tooltips and the STAC asset title
    bands: tuple[str, ...]      # band keys it reads (BANDS)
    formula: str
    dtype: str
    nodata: float | int | None  # float("nan") for the indices
    valid_range: tuple[float, float] | None  # None: unbounded (EVI); for RGB, reflectance
    style: Style
    #: output bytes per 10 m pixel (compressed, overviews included) for the estimate
    bytes_per_pixel: float
    #: worker wall seconds for this product alone on a full tile, 2 vCPUs (estimate)
    seconds_per_tile: float
    count: int = 1              # raster bands in the output
    scale: float = 1.0          # the output band's scale (RGB: reflectance × 10000)
    cloud_masked: bool = True   # NaN where SCL says cloud, shadow or no data
    #: not masked, but the mask is written beside it (contract.cloud_mask_uri), so its
    #: composites leave the clouds out (worker/cloudflags.py)
    clouds_beside: bool = False
    measured: bool = False      # bytes/seconds measured by `make bench` (else estimated)

    @property
    def is_index(self) -> bool:
        """A one-band spectral index: masked, float, with AOI statistics."""
        return self.count == 1 and self.dtype.startswith("float")

    def band_names(self) -> tuple[str, ...]:
        return tuple(BANDS[key].name for key in self.bands)


_NAN = float("nan")


def _index(name: str, title: str, bands: tuple[str, ...], formula: str, *,
           ramp: str = "RdYlGn", valid_range: tuple[float, float] | None = (-1.0, 1.0),
           display: tuple[float, float] = (-1.0, 1.0), bytes_per_pixel: float = 3.30,
           seconds: float = 4.4, measured: bool = False) -> Product:
    ids = ", ".join(BANDS[b].name for b in bands)
    return Product(
        name=name, title=title, description=f"{title}: {formula} from {ids}", bands=bands,
        formula=formula, dtype="float32", nodata=_NAN, valid_range=valid_range,
        style=Style("ramp", display[0], display[1], ramp), bytes_per_pixel=bytes_per_pixel,
        seconds_per_tile=seconds, measured=measured,
    )


_PRODUCTS = (
    # Reflectance × 10000 as uint16, offset already applied; 0 is nodata. Not cloud-masked:
    # an analyst looks at the clouds in true colour; its median composite leaves them out.
    Product(
        name="rgb", title="RGB", description="True colour (B04, B03, B02) reflectance × 10000",
        bands=("red", "green", "blue"), formula="reflectance × 10000 of B04, B03, B02",
        dtype="uint16", nodata=0, valid_range=(0.0, 6.5535),
        style=Style("rgb-stretch", 0.0, 0.3), bytes_per_pixel=4.26, seconds_per_tile=5.7,
        count=3, scale=0.0001, cloud_masked=False, clouds_beside=True, measured=True,
    ),
    # the bench (bench/results/worker.md, 2026-11-29) measured RGB and NDVI; the other
    # indices' seconds are their CPU seconds alone (bench/results/indices.md, 2026-12-06)
    # scaled by NDVI's CPU-to-wall ratio, their bytes NDVI's (not measured yet)
    _index("ndvi", "NDVI", ("nir", "red"), "(N − R) / (N + R)", measured=True),
    _index("ndwi", "NDWI", ("green", "nir"), "(G − N) / (G + N)", ramp="RdBu", seconds=3.9),
    _index("ndmi", "NDMI", ("nir", "swir16"), "(N − S1) / (N + S1)", ramp="BrBG",
           seconds=4.2),
    _index("nbr", "NBR", ("nir", "swir22"), "(N − S2) / (N + S2)", seconds=4.1),
    _index("evi", "EVI", ("nir", "red", "blue"), "2.5 (N − R) / (N + 6 R − 7.5 B + 1)",
           valid_range=None, seconds=5.1),
    _index("savi", "SAVI", ("nir", "red"), "1.5 (N − R) / (N + R + 0.5)",
           valid_range=(-1.5, 1.5), seconds=4.6),
)
PRODUCTS: Mapping[str, Product] = MappingProxyType({p.name: p for p in _PRODUCTS})
#: product names in the registry's order (the order of outputs, choices and checkboxes)
NAMES = tuple(PRODUCTS)
#: the products a job makes when none are named
DEFAULT_PRODUCTS = ("rgb", "ndvi")
#: top to bottom in a job's layer group: the indices over the true-colour picture
LAYER_ORDER = tuple(n for n in NAMES if PRODUCTS[n].is_index) + tuple(
    n for n in NAMES if not PRODUCTS[n].is_index)


def get(name: str) -> Product:
    """The product called `name`; InvalidInput naming the known ones otherwise."""
    try:
        return PRODUCTS[name]
    except KeyError:
        raise InvalidInput(f"unknown product '{name}'; known: {', '.join(NAMES)}") from None


def parse_products(value: str | Iterable[str], what: str = "products") -> tuple[str, ...]:
    """'ndvi,ndmi' or ['ndmi', 'ndvi'] → ('ndvi', 'ndmi') in registry order; InvalidInput
    naming the unknown ones, or when none is given."""
    names = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(n, str) for n in names):
        raise InvalidInput(f"{what} must be product names ({', '.join(NAMES)})")
    chosen = {n.strip().lower() for n in names if n.strip()}
    unknown = sorted(chosen - set(NAMES))
    if unknown:
        raise InvalidInput(f"{what}: unknown product(s) {', '.join(unknown)}; "
                           f"known: {', '.join(NAMES)}")
    if not chosen:
        raise InvalidInput(f"{what}: choose at least one of {', '.join(NAMES)}")
    return tuple(n for n in NAMES if n in chosen)


def bands_for(names: Iterable[str], cloud_mask: bool) -> tuple[str, ...]:
    """The band keys products `names` read, in the cell's order; SCL when they are masked."""
    keys = {key for name in names for key in PRODUCTS[name].bands}
    if cloud_mask and any(PRODUCTS[name].cloud_masked for name in names):
        keys.add(MASK_BAND)
    return tuple(key for key in BAND_KEYS if key in keys)
