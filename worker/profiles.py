"""Output profiles: made from the product registry (core/products.py) on every use.

The codec and layout were chosen by measurement (`make bench`, the codec table in
bench/results/worker.md): ZSTD level 1 with a predictor compresses Sentinel-2 reflectance
and NDVI within a few percent of DEFLATE or ZSTD 9 at a fraction of their CPU time, and
512-pixel blocks keep overviews and HTTP range reads small.
"""

from __future__ import annotations

import math
import os
from typing import Any

from qgis_rsbatch.core import products

#: compression of the Cloud-Optimized GeoTIFFs (GDAL GTiff creation options)
COG_OPTIONS: dict[str, Any] = {
    "compress": "ZSTD",
    "level": 1,
}


def gdal_threads() -> str:
    """Threads GDAL may use to decode and compress: all cores, unless the local backend runs
    several workers side by side and shares the cores out ($RSBATCH_GDAL_THREADS)."""
    return os.environ.get("RSBATCH_GDAL_THREADS") or "ALL_CPUS"


def cores_share() -> int:
    """How many cores this worker may keep busy: its share ($RSBATCH_GDAL_THREADS) when the
    local backend runs workers side by side, else every core of the machine."""
    share = gdal_threads()
    return int(share) if share.isdigit() and int(share) > 0 else os.cpu_count() or 1


def product_profile(name: str) -> dict[str, Any]:
    """A product's output profile, made fresh from the registry (callers may change it)."""
    spec = products.get(name)
    floating = spec.dtype.startswith("float")
    if spec.count == 3:  # true colour: one band per input, described by its band id
        descriptions = tuple(f"{products.BANDS[key].name} {products.BANDS[key].title} "
                             "reflectance" for key in spec.bands)
        colorinterp: tuple[str, ...] = ("red", "green", "blue")
    else:
        # TIFF text tags are ASCII: the formula's minus signs become hyphens
        formula = spec.formula.replace("\u2212", "-")
        descriptions = (f"{spec.title} {formula} ({', '.join(spec.band_names())})",)
        colorinterp = ("gray",)
    return {
        "dtype": spec.dtype,
        "count": spec.count,
        "nodata": math.nan if floating else spec.nodata,
        # floating-point predictor for the indices, horizontal differencing for integers
        "predictor": 3 if floating else 2,
        "descriptions": descriptions,
        "scales": (spec.scale,) * spec.count,
        "offsets": (0.0,) * spec.count,
        "colorinterp": colorinterp,
        "overview_resampling": "average",
    }


def composite_profile(name: str) -> dict[str, Any]:
    """A composite's profile: the product's bands (their median), then the count of valid
    observations, stored in the product's own data type (exact: counts are small)."""
    spec = product_profile(name)
    spec["count"] += 1
    spec["descriptions"] = (*spec["descriptions"], "valid observations (count)")
    spec["scales"] = (*spec["scales"], 1.0)
    spec["offsets"] = (*spec["offsets"], 0.0)
    spec["colorinterp"] = (*spec["colorinterp"], "undefined")
    return spec


def cog_options(**overrides: Any) -> dict[str, Any]:
    options = dict(COG_OPTIONS, num_threads=gdal_threads())
    options.update(overrides)
    return options
