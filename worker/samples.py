"""Sentinel-2-like sample scenes, generated: the fixtures of the tests, the demo and the benchmark.

A scene is written the way Earth Search serves one: B02/B03/B04/B08 as 10 m uint16 COGs,
SCL as a 20 m uint8 COG, in the UTM CRS of a real tile and on that tile's real 10 m grid.
Content is a deterministic function of the pixel position and a seed, generated strip by
strip, so a full 10980 × 10980 tile costs little memory and any window of it is the same
whether or not the rest was generated. Land is vegetation, bare soil and water; clouds,
cirrus and their shadows come and go with `cloud`; an optional swath edge leaves a corner
with no data, as real tiles at the edge of an orbit have.

`boa_offset` is the +1000 that ESA's processing baseline 04.00+ adds to every valid DN:
scenes with and without it are what `offset_check` has to tell apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Scene classification (SCL) classes used by the generator
SCL_NODATA, SCL_SATURATED, SCL_SHADOW, SCL_VEGETATION, SCL_BARE, SCL_WATER = 0, 1, 3, 4, 5, 6
SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_CIRRUS = 8, 9, 10

#: typical surface reflectance per class: (blue, green, red, nir), and the spread around it
_REFLECTANCE = {
    SCL_VEGETATION: ((0.030, 0.060, 0.040, 0.360), (0.010, 0.015, 0.015, 0.080)),
    SCL_BARE: ((0.100, 0.140, 0.190, 0.270), (0.020, 0.025, 0.030, 0.030)),
    SCL_WATER: ((0.050, 0.040, 0.025, 0.015), (0.008, 0.008, 0.006, 0.005)),
    SCL_CLOUD_MEDIUM: ((0.450, 0.440, 0.430, 0.460), (0.050, 0.050, 0.050, 0.050)),
    SCL_CLOUD_HIGH: ((0.700, 0.690, 0.680, 0.700), (0.060, 0.060, 0.060, 0.060)),
    SCL_CIRRUS: ((0.200, 0.190, 0.190, 0.330), (0.030, 0.030, 0.030, 0.050)),
    SCL_SHADOW: ((0.015, 0.018, 0.012, 0.060), (0.004, 0.004, 0.004, 0.015)),
    SCL_SATURATED: ((1.600, 1.600, 1.600, 1.600), (0.0, 0.0, 0.0, 0.0)),
}
#: how Earth Search's sentinel-cogs are written: DEFLATE with horizontal differencing
_INPUT_COG_OPTIONS = {"compress": "DEFLATE", "predictor": 2, "level": 6}
BAND_FILES = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "scl": "SCL"}


@dataclass(frozen=True)
class SampleScene:
    """What to generate. `origin` is the tile's real upper-left corner of its 10 m grid."""

    tile: str = "32TMT"
    epsg: int = 32632
    origin: tuple[float, float] = (399960.0, 5300040.0)
    date: str = "2024-06-01"
    size: int = 512                 # pixels of 10 m on each side (10980 for a full tile)
    boa_offset: int = 1000          # 1000: baseline >= 04.00 DNs; 0: offset already removed
    cloud: float = 0.15             # rough fraction of the scene under cloud
    nodata_corner: bool = False     # leave a swath-edge triangle without data
    seed: int = 1
    fmt: str = "COG"                # "COG", "GTiff" or "JP2"
    blocksize: int = 1024           # Earth Search's COGs use 1024 × 1024 blocks
    extra: dict = field(default_factory=dict)

    @property
    def scl_size(self) -> int:
        return (self.size + 1) // 2


class _Noise:
    """Smooth value noise: random values on a coarse lattice, bilinearly interpolated."""

    def __init__(self, rng: np.random.Generator, extent: int, cell: int) -> None:
        self.cell = cell
        # a margin of lattice cells on every side lets callers ask for rows just outside
        # the raster (shadows are cast from clouds up to a few km away)
        self.margin = 4
        n = extent // cell + 2 * self.margin + 2
        self.grid = rng.random((n, n), dtype=np.float64)

    def rows(self, row0: int, nrows: int, ncols: int, scale: int = 1) -> np.ndarray:
        """Noise for rows [row0, row0+nrows) of a raster whose pixel is `scale` base units."""
        ys = (np.arange(row0, row0 + nrows, dtype=np.float64) + 0.5) * scale / self.cell
        xs = (np.arange(ncols, dtype=np.float64) + 0.5) * scale / self.cell
        ys, xs = ys + self.margin, xs + self.margin
        y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
        fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
        g = self.grid
        top = g[y0][:, x0] * (1 - fx) + g[y0][:, x0 + 1] * fx
        bottom = g[y0 + 1][:, x0] * (1 - fx) + g[y0 + 1][:, x0 + 1] * fx
        return top * (1 - fy) + bottom * fy


class SceneModel:
    """The generated scene as functions of row ranges (20 m classes, 10 m DNs)."""

    def __init__(self, spec: SampleScene) -> None:
        self.spec = spec
        rng = np.random.default_rng(spec.seed)
        extent = spec.size * 10  # metres
        # land cover varies over ~2-6 km, clouds over ~3-8 km
        self.terrain = [_Noise(rng, extent, 6000), _Noise(rng, extent, 1500)]
        self.clouds = [_Noise(rng, extent, 8000), _Noise(rng, extent, 2000)]
        self.texture = _Noise(rng, extent, 400)
        self.seed = spec.seed

    def classes(self, row0: int, nrows: int) -> np.ndarray:
        """SCL classes for 20 m rows [row0, row0 + nrows)."""
        spec = self.spec
        ncols = spec.scl_size
        terrain = (0.7 * self.terrain[0].rows(row0, nrows, ncols, 20)
                   + 0.3 * self.terrain[1].rows(row0, nrows, ncols, 20))
        scl = np.full((nrows, ncols), SCL_VEGETATION, np.uint8)
        scl[terrain < 0.33] = SCL_WATER
        scl[terrain > 0.62] = SCL_BARE
        if spec.cloud > 0:
            def cloudiness(r0: int) -> np.ndarray:
                return (0.65 * self.clouds[0].rows(r0, nrows, ncols, 20)
                        + 0.35 * self.clouds[1].rows(r0, nrows, ncols, 20))

            # threshold so that roughly `cloud` of the scene is covered
            level = 1.0 - np.clip(spec.cloud, 0, 1) * 0.9
            here = cloudiness(row0)
            # shadows fall ~1.2 km away from their cloud (the sun is to the south-east)
            shift = 60
            above = cloudiness(row0 - shift)
            shadow = np.zeros_like(here, dtype=bool)
            shadow[:, shift:] = above[:, :-shift] > level
            scl[shadow] = SCL_SHADOW
            scl[(here > level - 0.06) & (here <= level)] = SCL_CIRRUS
            scl[(here > level) & (here <= level + 0.08)] = SCL_CLOUD_MEDIUM
            scl[here > level + 0.08] = SCL_CLOUD_HIGH
        if spec.nodata_corner:
            rows = np.arange(row0, row0 + nrows)[:, None]
            cols = np.arange(ncols)[None, :]
            scl[cols < (ncols // 3) - rows // 3] = SCL_NODATA
        return scl

    def bands(self, row0: int, nrows: int) -> dict[str, np.ndarray]:
        """DNs of blue, green, red, nir for 10 m rows [row0, row0 + nrows), plus 10 m classes."""
        spec = self.spec
        r20 = row0 // 2
        n20 = (row0 + nrows + 1) // 2 - r20
        classes = np.repeat(np.repeat(self.classes(r20, n20), 2, axis=0), 2, axis=1)
        classes = classes[row0 - 2 * r20: row0 - 2 * r20 + nrows, : spec.size]
        texture = self.texture.rows(row0, nrows, spec.size, 10) * 2 - 1  # -1..1
        rng = np.random.default_rng([self.seed, row0])
        out: dict[str, np.ndarray] = {}
        for index, key in enumerate(("blue", "green", "red", "nir")):
            refl = np.zeros(classes.shape, np.float32)
            for cls, (mean, spread) in _REFLECTANCE.items():
                hit = classes == cls
                if hit.any():
                    refl[hit] = mean[index] + spread[index] * texture[hit]
            refl += rng.normal(0, 0.003, classes.shape).astype(np.float32)
            dn = np.round(np.clip(refl, 0, None) * 10000) + spec.boa_offset
            dn = np.clip(dn, 1, 65535).astype(np.uint16)
            dn[classes == SCL_NODATA] = 0
            out[key] = dn
        out["classes"] = classes
        return out


def _strips(total: int, step: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, step):
        yield start, min(step, total - start)


class _PlainWriter:
    """Non-COG inputs the worker must also read: striped GeoTIFF, or lossless JPEG 2000."""

    def __init__(self, path: str, profile: dict, fmt: str) -> None:
        import rasterio

        self.path, self.fmt = path, fmt
        self.target = path + ".tmp.tif" if fmt == "JP2" else path
        self.ds = rasterio.open(self.target, "w", driver="GTiff", compress="DEFLATE", **profile)

    def write(self, data: np.ndarray, row_off: int, col_off: int = 0) -> None:
        from rasterio.windows import Window

        self.ds.write(data, window=Window(col_off, row_off, data.shape[2], data.shape[1]))

    def close(self) -> None:
        from rasterio.shutil import copy

        if not self.ds.closed:
            self.ds.close()
            if self.fmt == "JP2":
                copy(self.target, self.path, driver="JP2OpenJPEG", quality=100,
                     reversible="YES", blockxsize=1024, blockysize=1024)
                os.remove(self.target)

    def abort(self) -> None:
        if not self.ds.closed:
            self.ds.close()
        if self.fmt == "JP2" and os.path.exists(self.target):
            os.remove(self.target)


def write_scene(folder: str, spec: SampleScene, strip: int = 1024) -> dict[str, str]:
    """Write the scene's five band files into `folder`; returns band key → path."""
    import rasterio
    from rasterio.transform import Affine

    from .cog import CogWriter

    os.makedirs(folder, exist_ok=True)
    model = SceneModel(spec)
    x0, y0 = spec.origin
    crs = rasterio.crs.CRS.from_epsg(spec.epsg)
    ext = ".jp2" if spec.fmt == "JP2" else ".tif"
    paths = {key: os.path.join(folder, name + ext) for key, name in BAND_FILES.items()}
    grids = {
        10: (Affine(10, 0, x0, 0, -10, y0), spec.size),
        20: (Affine(20, 0, x0, 0, -20, y0), spec.scl_size),
    }
    writers: dict[str, Any] = {}
    for key, path in paths.items():
        res = 20 if key == "scl" else 10
        transform, size = grids[res]
        profile = {
            "dtype": "uint8" if key == "scl" else "uint16", "count": 1, "nodata": 0,
            "crs": crs, "transform": transform, "width": size, "height": size,
        }
        if spec.fmt == "COG":
            writers[key] = CogWriter(
                path, profile, blocksize=spec.blocksize, descriptions=(BAND_FILES[key],),
                overview_resampling="nearest" if key == "scl" else "average",
                statistics=False, options=dict(_INPUT_COG_OPTIONS))
        else:
            writers[key] = _PlainWriter(path, profile, spec.fmt)
    try:
        for row0, nrows in _strips(spec.size, strip):
            dns = model.bands(row0, nrows)
            for key in ("blue", "green", "red", "nir"):
                writers[key].write(dns[key][None], row0, 0)
            r20 = row0 // 2
            writers["scl"].write(model.classes(r20, (nrows + 1) // 2)[None], r20, 0)
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    return paths
