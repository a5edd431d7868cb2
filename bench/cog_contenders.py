"""The fair contenders of the worker's COG writer: the same interface, another finish.

`worker.cog.CogWriter` compresses each tile once and assembles the COG byte layout by hand.
The two writers here take the same full-width strips, compute the same statistics
(`worker.cog._Stats`) and write the same codec, predictor, block size, overview levels and
metadata, but leave the COG layout to existing tools:

- `GdalCogWriter`: strips go into an uncompressed tiled scratch GeoTIFF; `close()` runs
  GDAL's COG driver on it (GDAL computes the overviews, averaging, nodata-aware);
- `RioCogeoWriter`: the same scratch file, then rio-cogeo's `cog_translate`.

The benchmark swaps one of them in for `worker.process.CogWriter`, so everything else in the
worker's pipeline (reading, masking, computing, publishing) stays the same.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from worker.cog import describe, gatherer
from worker.profiles import cog_options


class _ScratchThenTranslate:
    """Strips into an uncompressed tiled scratch GeoTIFF; a subclass makes the COG from it."""

    def __init__(self, path: str, profile: dict[str, Any], *, blocksize: int = 512,
                 overview_resampling: str = "average", descriptions: Sequence[str] = (),
                 scales: Sequence[float] | None = None, offsets: Sequence[float] | None = None,
                 colorinterp: Sequence[str] | None = None, tags: dict[str, str] | None = None,
                 band_tags: Sequence[dict] | None = None, statistics: bool | Any = True,
                 options: dict[str, Any] | None = None) -> None:
        import rasterio

        self.path = os.path.abspath(path)
        self.profile = dict(profile)
        self.nodata = profile.get("nodata")
        self.count = int(profile["count"])
        self.dtype = np.dtype(profile["dtype"])
        self.blocksize = blocksize
        self.resampling = "nearest" if overview_resampling == "nearest" else "average"
        self.descriptions, self.scales, self.offsets = descriptions, scales, offsets
        self.colorinterp = tuple(colorinterp or ())
        self.tags, self.band_tags = dict(tags or {}), list(band_tags or [])
        self.stats = gatherer(statistics, self.count, self.nodata)
        self.options = cog_options(**(options or {}))
        self.rows_written = 0
        folder, base = os.path.split(self.path)
        token = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._scratch = os.path.join(folder, f".{base}.{token}.scratch.tif")
        self._part = os.path.join(folder, f".{base}.{token}.part")
        creation = {
            "driver": "GTiff", "tiled": True, "blockxsize": blocksize,
            "blockysize": blocksize, "compress": "NONE", "sparse_ok": True,
            "interleave": "pixel" if self.count > 1 else "band",
            "dtype": self.dtype.name, "count": self.count, "nodata": self.nodata,
            "crs": profile.get("crs"), "transform": profile.get("transform"),
            "width": int(profile["width"]), "height": int(profile["height"]),
        }
        if self.colorinterp[:3] == ("red", "green", "blue"):
            creation["photometric"] = "RGB"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._ds = rasterio.open(self._scratch, "w", **creation)

    def write(self, data: np.ndarray, row_off: int, col_off: int = 0) -> None:
        from rasterio.windows import Window

        _, rows, cols = data.shape
        if col_off != 0 or cols != self.profile["width"] or row_off != self.rows_written:
            raise ValueError("the writer takes full-width strips in row order")
        self._ds.write(data, window=Window(0, row_off, cols, rows))
        self.rows_written += rows
        if self.stats is not None:
            self.stats.add(data)

    def _translate(self) -> None:
        raise NotImplementedError  # each contender's own finish

    def close(self) -> str:
        try:
            if self.rows_written != self.profile["height"]:
                raise ValueError(f"{self.rows_written} of {self.profile['height']} rows written")
            describe(self._ds, self)
            self._ds.close()
            self._translate()
            os.replace(self._part, self.path)
            return self.path
        finally:
            self.abort()

    def abort(self) -> None:
        if not self._ds.closed:
            self._ds.close()
        for candidate in (self._scratch, self._scratch + ".aux.xml", self._part):
            if os.path.exists(candidate):
                os.remove(candidate)

    def __enter__(self) -> _ScratchThenTranslate:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class GdalCogWriter(_ScratchThenTranslate):
    """(b) GDAL's COG driver on the scratch file: GDAL builds the overviews."""

    def _translate(self) -> None:
        from rasterio.shutil import copy

        predictor = "YES" if self.options.get("predictor") else "NO"
        copy(self._scratch, self._part, driver="COG", compress=self.options["compress"],
             level=self.options.get("level"), predictor=predictor,
             blocksize=self.blocksize, overview_resampling=self.resampling,
             num_threads=self.options["num_threads"], bigtiff="NO", statistics="AUTO")


class RioCogeoWriter(_ScratchThenTranslate):
    """(c) rio-cogeo's `cog_translate` on the scratch file."""

    def _translate(self) -> None:
        from rio_cogeo.cogeo import cog_translate
        from rio_cogeo.profiles import cog_profiles

        with warnings.catch_warnings():  # "non-standard compression schema: zstd"
            warnings.simplefilter("ignore", UserWarning)
            profile = cog_profiles.get(self.options["compress"].lower())
        profile.update(blockxsize=self.blocksize, blockysize=self.blocksize)
        if self.options.get("level") is not None:
            profile["zstd_level"] = self.options["level"]
        if self.options.get("predictor"):
            profile["predictor"] = self.options["predictor"]
        if self.count > 1:
            profile["interleave"] = "pixel"
        threads = self.options["num_threads"]
        cog_translate(self._scratch, self._part, profile, overview_resampling=self.resampling,  # type: ignore[arg-type]
                      in_memory=False, quiet=True, use_cog_driver=False, forward_band_tags=True,
                      config={"GDAL_NUM_THREADS": threads, "GDAL_TIFF_OVR_BLOCKSIZE":
                              str(self.blocksize)})


WRITERS = {"gdal": GdalCogWriter, "riocogeo": RioCogeoWriter}
