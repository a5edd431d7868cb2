"""Sentinel-2-like sample scenes, generated: the fixtures of the tests, the demo and the benchmark.

A scene is written the way Earth Search serves one: B02/B03/B04/B08 as 10 m uint16 COGs,
B11/B12 as 20 m uint16 COGs and SCL as a 20 m uint8 COG, in the UTM CRS of a real tile and
on that tile's real 10 m grid.
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

from qgis_rsbatch.core.products import BAND_NAMES, BANDS

#: bump when the generated content changes, so cached scenes (bench/.cache) are remade
GENERATOR_VERSION = 4
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
#: reflectance change per unit of field vigour, per band (blue, green, red, nir)
_FIELD_EFFECT = (-0.008, -0.012, -0.025, 0.14)
#: shortwave infrared (B11, B12) per class, and the spread around it: wet vegetation is dark
#: at 1.6 and 2.2 µm, bare soil bright, water black
_SWIR = {
    SCL_VEGETATION: ((0.190, 0.095), (0.040, 0.030)),
    SCL_BARE: ((0.300, 0.250), (0.040, 0.040)),
    SCL_WATER: ((0.010, 0.006), (0.004, 0.003)),
    SCL_CLOUD_MEDIUM: ((0.350, 0.250), (0.050, 0.040)),
    SCL_CLOUD_HIGH: ((0.500, 0.380), (0.060, 0.050)),
    SCL_CIRRUS: ((0.200, 0.140), (0.030, 0.030)),
    SCL_SHADOW: ((0.040, 0.025), (0.010, 0.008)),
    SCL_SATURATED: ((1.600, 1.600), (0.0, 0.0)),
}
#: SWIR change per unit of field vigour: vigorous (wetter) crops are darker
_FIELD_SWIR = (-0.05, -0.04)
#: agricultural parcels: roughly 420 × 280 m, their edges wavering
_FIELD_SIZE = (420.0, 280.0)
BAND_FILES = dict(BAND_NAMES)


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
    seed: int = 1                   # clouds and pixel noise of this acquisition
    ground_seed: int = 1            # the landscape, the same on every date
    fmt: str = "COG"                # "COG", "GTiff" or "JP2"
    blocksize: int = 1024           # Earth Search's COGs use 1024 × 1024 blocks
    extra: dict = field(default_factory=dict)

    @property
    def scl_size(self) -> int:
        return (self.size + 1) // 2


class _Noise:
    """Smooth value noise anchored to map coordinates, so overlapping tiles show the same
    ground and the same clouds: hashed random values on a lattice of `cell` metres,
    bilinearly interpolated."""

    def __init__(self, seed: int, cell: float) -> None:
        self.seed = np.uint64(seed * 0x9E3779B97F4A7C15 % 2**64)
        self.cell = cell

    def _lattice(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            h = (i.astype(np.int64).view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
                 ^ j.astype(np.int64).view(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
                 ^ self.seed)
            h ^= h >> np.uint64(30)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(27)
            h *= np.uint64(0x94D049BB133111EB)
            h ^= h >> np.uint64(31)
        return (h >> np.uint64(11)).astype(np.float64) / 2.0**53

    def at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Noise on the grid of map coordinates ys (rows) × xs (columns)."""
        fx, fy = xs / self.cell, ys / self.cell
        x0, y0 = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
        ix = np.arange(x0.min(), x0.max() + 2)
        iy = np.arange(y0.min(), y0.max() + 2)
        grid = self._lattice(iy[:, None], ix[None, :])
        cx, cy = x0 - ix[0], y0 - iy[0]
        tx, ty = (fx - x0)[None, :], (fy - y0)[:, None]
        top = grid[cy][:, cx] * (1 - tx) + grid[cy][:, cx + 1] * tx
        bottom = grid[cy + 1][:, cx] * (1 - tx) + grid[cy + 1][:, cx + 1] * tx
        return top * (1 - ty) + bottom * ty


class SceneModel:
    """The generated scene as functions of row ranges (20 m classes, 10 m DNs)."""

    def __init__(self, spec: SampleScene) -> None:
        self.spec = spec
        # the ground (land cover, texture) is the same on every date; clouds are not.
        # Land cover varies over ~2-6 km, clouds over ~3-8 km.
        ground = spec.ground_seed
        self.terrain = [_Noise(ground * 7 + 1, 6000), _Noise(ground * 7 + 2, 1500)]
        self.texture = _Noise(ground * 7 + 3, 400)
        self.clouds = [_Noise(spec.seed * 11 + 5, 8000), _Noise(spec.seed * 11 + 6, 2000)]
        self.seed = spec.seed

    def fields(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Each pixel's field vigour (0..1): constant within a parcel, random between them."""
        warp = self.terrain[1].at(xs, ys) * 160.0
        col = np.floor((xs[None, :] + warp) / _FIELD_SIZE[0])
        row = np.floor((ys[:, None] + warp) / _FIELD_SIZE[1])
        return self.texture._lattice(col.astype(np.int64) * 7919, row.astype(np.int64))

    def _cloud_level(self) -> float:
        """The cloudiness above which a pixel is cloud, so that about `cloud` of a large
        area is covered (a quantile of the noise over a 50 km sample of this seed)."""
        if not hasattr(self, "_level"):
            x0, y0 = self.spec.origin
            xs = x0 + np.arange(500) * 97.0
            ys = y0 - np.arange(500) * 97.0
            sample = 0.65 * self.clouds[0].at(xs, ys) + 0.35 * self.clouds[1].at(xs, ys)
            self._level = float(np.quantile(sample, 1 - np.clip(self.spec.cloud, 0, 1) * 0.8))
        return self._level

    def _coords(self, row0: int, nrows: int, ncols: int, res: int) -> tuple[np.ndarray, ...]:
        x0, y0 = self.spec.origin
        xs = x0 + (np.arange(ncols) + 0.5) * res
        ys = y0 - (np.arange(row0, row0 + nrows) + 0.5) * res
        return xs, ys

    def classes(self, row0: int, nrows: int) -> np.ndarray:
        """SCL classes for 20 m rows [row0, row0 + nrows)."""
        spec = self.spec
        ncols = spec.scl_size
        xs, ys = self._coords(row0, nrows, ncols, 20)
        terrain = 0.7 * self.terrain[0].at(xs, ys) + 0.3 * self.terrain[1].at(xs, ys)
        scl = np.full((nrows, ncols), SCL_VEGETATION, np.uint8)
        scl[terrain < 0.33] = SCL_WATER
        scl[terrain > 0.62] = SCL_BARE
        if spec.cloud > 0:
            def cloudiness(dx: float, dy: float) -> np.ndarray:
                return (0.65 * self.clouds[0].at(xs + dx, ys + dy)
                        + 0.35 * self.clouds[1].at(xs + dx, ys + dy))

            level = self._cloud_level()
            here = cloudiness(0, 0)
            # each cloud casts its shadow ~1.2 km to the south-east (sun in the north-west)
            scl[cloudiness(-1200, 1200) > level] = SCL_SHADOW
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
        xs, ys = self._coords(row0, nrows, spec.size, 10)
        texture = self.texture.at(xs, ys) * 2 - 1  # -1..1
        vigor = self.fields(xs, ys) * 2 - 1          # -1..1, one value per field
        rng = np.random.default_rng([self.seed, row0])
        out: dict[str, np.ndarray] = {}
        for index, key in enumerate(("blue", "green", "red", "nir")):
            refl = np.zeros(classes.shape, np.float32)
            for cls, (mean, spread) in _REFLECTANCE.items():
                hit = classes == cls
                if hit.any():
                    refl[hit] = mean[index] + spread[index] * texture[hit]
            # crops differ field by field: vigorous fields are darker in red, brighter in NIR
            crop = classes == SCL_VEGETATION
            refl[crop] += _FIELD_EFFECT[index] * vigor[crop]
            refl += rng.normal(0, 0.003, classes.shape).astype(np.float32)
            dn = np.round(np.clip(refl, 0, None) * 10000) + spec.boa_offset
            dn = np.clip(dn, 1, 65535).astype(np.uint16)
            dn[classes == SCL_NODATA] = 0
            out[key] = dn
        out["classes"] = classes
        return out


    def swir(self, row0: int, nrows: int) -> dict[str, np.ndarray]:
        """DNs of swir16 (B11) and swir22 (B12) for 20 m rows [row0, row0 + nrows)."""
        spec = self.spec
        classes = self.classes(row0, nrows)
        xs, ys = self._coords(row0, nrows, spec.scl_size, 20)
        texture = self.texture.at(xs, ys) * 2 - 1
        vigor = self.fields(xs, ys) * 2 - 1
        rng = np.random.default_rng([self.seed, row0, 20])
        out: dict[str, np.ndarray] = {}
        for index, key in enumerate(("swir16", "swir22")):
            refl = np.zeros(classes.shape, np.float32)
            for cls, (mean, spread) in _SWIR.items():
                hit = classes == cls
                if hit.any():
                    refl[hit] = mean[index] + spread[index] * texture[hit]
            crop = classes == SCL_VEGETATION
            refl[crop] += _FIELD_SWIR[index] * vigor[crop]
            refl += rng.normal(0, 0.003, classes.shape).astype(np.float32)
            dn = np.round(np.clip(refl, 0, None) * 10000) + spec.boa_offset
            dn = np.clip(dn, 1, 65535).astype(np.uint16)
            dn[classes == SCL_NODATA] = 0
            out[key] = dn
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
    """Write the scene's band files (B02-B12, SCL) into `folder`; returns band key → path."""
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
        res = BANDS[key].resolution
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
            r20, n20 = row0 // 2, (nrows + 1) // 2
            writers["scl"].write(model.classes(r20, n20)[None], r20, 0)
            for key, dn in model.swir(r20, n20).items():
                writers[key].write(dn[None], r20, 0)
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    return paths


# --- a sample catalog: what `make demo` and the end-to-end tests run a whole job on --------

#: two neighbouring tiles of UTM zone 32 (their real grid origins); they overlap by 9.8 km
SAMPLE_TILES = {"32TMT": (399960.0, 5300040.0), "32TNT": (499980.0, 5300040.0)}
#: (date, clouds, seed): a clear acquisition and a cloudy one
SAMPLE_DATES = (("2024-06-01", 0.08, 21), ("2024-06-11", 0.35, 34))
_CLOUD_CLASSES = (SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_CIRRUS)


#: sample crops start this many rows below the tiles' top edge, south of the 9.8 km strip
#: where the tiles of latitude band U (32UMU, 32UNU) overlap them
_CROP_ROW = 1500


def _sample_crop(tile: str, crop: int) -> tuple[float, float]:
    """Upper-left corner of the sample's crop of `tile`: the side facing the other tile."""
    x0, y0 = SAMPLE_TILES[tile]
    top = y0 - _CROP_ROW * 10.0
    if tile == "32TMT":  # the eastern edge of 32TMT …
        return x0 + (10980 - crop) * 10.0, top
    return x0, top       # … and the western edge of 32TNT


def sample_aoi(crop: int = 1600) -> dict:
    """An AOI polygon (EPSG:4326) across both sample crops, inside their common rows."""
    from rasterio.warp import transform

    corners = [_sample_crop(tile, crop) for tile in SAMPLE_TILES]
    west = min(x for x, _ in corners)
    east = max(x for x, _ in corners) + crop * 10
    top = corners[0][1]
    width, height = east - west, crop * 10
    xs = [0.15, 0.5, 0.85, 0.8, 0.2, 0.15]
    ys = [0.12, 0.08, 0.3, 0.88, 0.85, 0.12]
    lons, lats = transform("EPSG:32632", "EPSG:4326", [west + f * width for f in xs],
                           [top - f * height for f in ys])
    ring = [[round(x, 6), round(y, 6)] for x, y in zip(lons, lats)]
    ring[-1] = ring[0]
    return {"type": "Polygon", "coordinates": [ring]}


def _sample_item(tile: str, date: str, folder: str, spec: SampleScene, cloud_cover: float,
                 files: dict[str, str]) -> dict:
    x0, y0 = spec.origin
    zone, band, square = tile[:2], tile[2], tile[3:]
    item_id = f"S2B_{tile}_{date.replace('-', '')}_0_L2A"
    assets: dict[str, Any] = {}
    for key, path in files.items():
        res = BANDS[key].resolution
        shape = [spec.scl_size if res == 20 else spec.size] * 2
        asset: dict[str, Any] = {
            "href": "./" + os.path.relpath(path, folder).replace(os.sep, "/"),
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"], "proj:shape": shape,
            "proj:transform": [res, 0, x0, 0, -res, y0],
        }
        if key == "scl":
            asset["raster:bands"] = [{"nodata": 0, "data_type": "uint8"}]
        else:
            asset["eo:bands"] = [{"name": BAND_NAMES[key], "common_name": key}]
            asset["raster:bands"] = [{"nodata": 0, "data_type": "uint16", "scale": 0.0001,
                                      "offset": -0.1}]
        assets[key] = asset
    from rasterio.warp import transform_geom

    right, bottom = x0 + spec.size * 10, y0 - spec.size * 10
    ring = [[x0, y0], [right, y0], [right, bottom], [x0, bottom], [x0, y0]]
    geometry = transform_geom(f"EPSG:{spec.epsg}", "EPSG:4326",
                              {"type": "Polygon", "coordinates": [ring]})
    lons = [p[0] for p in geometry["coordinates"][0]]
    lats = [p[1] for p in geometry["coordinates"][0]]
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id,
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
        ],
        "geometry": geometry, "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "properties": {
            "datetime": f"{date}T10:30:21.024000Z", "platform": "sentinel-2b",
            "constellation": "sentinel-2", "eo:cloud_cover": round(cloud_cover, 3),
            "proj:epsg": spec.epsg, "grid:code": f"MGRS-{tile}", "mgrs:utm_zone": int(zone),
            "mgrs:latitude_band": band, "mgrs:grid_square": square,
            "s2:processing_baseline": "05.10", "s2:sequence": "0",
            "s2:product_uri": f"S2B_MSIL2A_{date.replace('-', '')}T103021_N0510_R108_T{tile}_"
                              f"{date.replace('-', '')}T140000.SAFE",
            "rsbatch:sample": "generated Sentinel-2-like scene (a crop of the real tile grid)",
        },
        "links": [{"rel": "root", "href": "../catalog.json", "type": "application/json"},
                  {"rel": "parent", "href": "../catalog.json", "type": "application/json"}],
        "assets": assets,
    }


def write_thumbnail(files: dict[str, str], path: str, boa_offset: int, size: int = 128) -> None:
    """A true-colour PNG preview of a scene (reflectance 0-0.3 stretched to 0-255), as
    catalogs serve beside an item for a quick look."""
    import rasterio
    from rasterio.enums import Resampling

    channels = []
    for key in ("red", "green", "blue"):
        with rasterio.open(files[key]) as ds:
            dn = ds.read(1, out_shape=(size, size), resampling=Resampling.average)
        refl = (dn.astype(np.float64) - boa_offset) / 10000.0
        channels.append(np.clip(refl / 0.3 * 255, 0, 255).astype(np.uint8))
    with rasterio.open(path, "w", driver="PNG", width=size, height=size, count=3,
                       dtype="uint8") as out:
        out.write(np.stack(channels))


def write_sample_catalog(folder: str, crop: int = 1600) -> dict[str, Any]:
    """Generate the sample scenes and a static STAC catalog over them.

    Returns {"catalog": path of catalog.json, "aoi": GeoJSON polygon, "start", "end"}.
    """
    import json

    os.makedirs(folder, exist_ok=True)
    links = []
    for date, cloud, seed in SAMPLE_DATES:
        for tile in SAMPLE_TILES:
            spec = SampleScene(tile=tile, epsg=32632, origin=_sample_crop(tile, crop),
                               date=date, size=crop, boa_offset=1000, cloud=cloud, seed=seed,
                               ground_seed=4)
            item_dir = os.path.join(folder, f"{tile}_{date}")
            files = write_scene(item_dir, spec)
            model = SceneModel(spec)
            scl = model.classes(0, spec.scl_size)
            cover = 100.0 * float(np.isin(scl, _CLOUD_CLASSES).mean())
            item = _sample_item(tile, date, item_dir, spec, cover, files)
            item["assets"]["thumbnail"] = {"href": "./thumbnail.png", "type": "image/png",
                                           "roles": ["thumbnail"], "title": "true colour"}
            write_thumbnail(files, os.path.join(item_dir, "thumbnail.png"), spec.boa_offset)
            with open(os.path.join(item_dir, "item.json"), "w") as fh:
                json.dump(item, fh, indent=1)
            links.append({"rel": "item", "href": f"./{tile}_{date}/item.json",
                          "type": "application/geo+json"})
    catalog = {
        "type": "Catalog", "stac_version": "1.0.0", "id": "rsbatch-sample",
        "description": "Generated Sentinel-2-like scenes for the rsbatch demo and tests: two "
                       "overlapping tiles of zone 32 (crops on their real grids), two dates.",
        "links": [{"rel": "root", "href": "./catalog.json", "type": "application/json"},
                  {"rel": "self", "href": "./catalog.json", "type": "application/json"},
                  *links],
    }
    path = os.path.join(folder, "catalog.json")
    with open(path, "w") as fh:
        json.dump(catalog, fh, indent=1)
    return {"catalog": path, "aoi": sample_aoi(crop), "start": SAMPLE_DATES[0][0],
            "end": SAMPLE_DATES[-1][0]}


def main(argv: list[str] | None = None) -> int:
    """`python -m worker.samples FOLDER`: the sample catalog into FOLDER, its summary as JSON
    on stdout (the plugin's "Try it with sample data" runs this in the worker environment)."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m worker.samples",
                                     description="Generate the sample scenes and catalog.")
    parser.add_argument("folder")
    parser.add_argument("--crop", type=int, default=1600, help="scene size in pixels")
    args = parser.parse_args(argv)
    if args.crop < 64:
        print("python -m worker.samples: error: --crop must be at least 64", file=sys.stderr)
        return 2
    print(json.dumps(write_sample_catalog(args.folder, crop=args.crop)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
