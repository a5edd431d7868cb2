"""The cloud mask beside a true-colour output: which of its pixels the indices leave out.

True colour is not cloud-masked (an analyst looks at the clouds), but its median composite
must leave them out, as a GEE median of cloud-masked images does; a composite reads only
finished outputs, not SCL. So where a product keeps its clouds (`products.Product.
clouds_beside`, RGB), a cell writes beside it the mask its indices use (SCL classes
`products.MASKED_SCL`) as a one-band uint8 COG, `contract.cloud_mask_uri` of the output:
0 clear, 1 masked, 255 where the output has no pixel. A mosaic carries the flag of the tile
it took each pixel from, so a composite counts only clear observations, per date and pixel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .cog import CogWriter, valid_mask

CLEAR, MASKED, NONE = 0, 1, 255
DESCRIPTION = "cloud mask of the indices (SCL): 0 clear, 1 cloud, shadow, cirrus or no data"


def flags(values: np.ndarray, masked: np.ndarray, nodata: Any = 0) -> np.ndarray:
    """(rows, cols) uint8 flags of an output block (bands, rows, cols) and the SCL mask."""
    none = ~valid_mask(values, nodata)
    out = masked.astype(np.uint8)
    out |= np.multiply(none, NONE, dtype=np.uint8)  # NONE is all ones: 255 | flag = 255
    return out


def writer(path: str, grid: Any, tags: dict[str, str]) -> CogWriter:
    """The COG writer of a mask on `grid` (full-width strips, as the output's own)."""
    profile = {"dtype": "uint8", "count": 1, "nodata": NONE, "crs": grid.crs,
               "transform": grid.transform, "width": grid.width, "height": grid.height}
    return CogWriter(path, profile, descriptions=(DESCRIPTION,), colorinterp=("gray",),
                     tags={**tags, "RSBATCH_PRODUCT": "cloud mask"},
                     overview_resampling="nearest", options={"predictor": 2})
