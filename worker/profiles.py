"""Output profiles as data: one entry per product, copied on every use.

The codec and layout were chosen by measurement (`make bench`, bench/results/cog_options.md):
ZSTD with a predictor compresses Sentinel-2 reflectance about as well as DEFLATE at a
fraction of the CPU time, and 512-pixel blocks keep overviews and HTTP range reads small.
"""

from __future__ import annotations

import copy
import math
from typing import Any

#: creation options for the final Cloud-Optimized GeoTIFF (GDAL COG driver)
COG_OPTIONS: dict[str, Any] = {
    "compress": "ZSTD",
    "level": 9,
    "blocksize": 512,
    "bigtiff": "IF_SAFER",
    "num_threads": "ALL_CPUS",
    "overviews": "AUTO",
}

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
    options = dict(COG_OPTIONS)
    options.update(overrides)
    return options
