"""Output profiles as data: one entry per product, copied on every use.

The codec and layout were chosen by measurement (`make bench`, the codec table in
bench/results/worker.md): ZSTD level 1 with a predictor compresses Sentinel-2 reflectance
and NDVI within a few percent of DEFLATE or ZSTD 9 at a fraction of their CPU time, and
512-pixel blocks keep overviews and HTTP range reads small.
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any

#: compression of the Cloud-Optimized GeoTIFFs (GDAL GTiff creation options)
COG_OPTIONS: dict[str, Any] = {
    "compress": "ZSTD",
    "level": 1,
}


def gdal_threads() -> str:
    """Threads GDAL may use to decode and compress: all cores, unless the local backend runs
    several workers side by side and shares the cores out ($RSBATCH_GDAL_THREADS)."""
    return os.environ.get("RSBATCH_GDAL_THREADS") or "ALL_CPUS"

_PRODUCTS: dict[str, dict[str, Any]] = {
    # Reflectance × 10000 as uint16, offset already applied (so every baseline looks alike);
    # 0 is nodata, hence valid reflectance is stored as at least 1.
    "rgb": {
        "dtype": "uint16",
        "count": 3,
        "nodata": 0,
        "predictor": 2,
        "descriptions": ("B04 red reflectance", "B03 green reflectance", "B02 blue reflectance"),
        "scales": (0.0001, 0.0001, 0.0001),
        "offsets": (0.0, 0.0, 0.0),
        "colorinterp": ("red", "green", "blue"),
        "overview_resampling": "average",
    },
    "ndvi": {
        "dtype": "float32",
        "count": 1,
        "nodata": math.nan,
        "predictor": 3,
        "descriptions": ("NDVI (B08 - B04) / (B08 + B04)",),
        "scales": (1.0,),
        "offsets": (0.0,),
        "colorinterp": ("gray",),
        "overview_resampling": "average",
    },
}


def product_profile(product: str) -> dict[str, Any]:
    """A fresh copy of a product's profile (callers may change their copy)."""
    return copy.deepcopy(_PRODUCTS[product])


def cog_options(**overrides: Any) -> dict[str, Any]:
    options = dict(COG_OPTIONS, num_threads=gdal_threads())
    options.update(overrides)
    return options
