"""Reading a cell's bands: one grid, windows clipped to the AOI, strips, decimated views.

The 10 m bands must share CRS and grid exactly; the 20 m bands (B11, B12, SCL) must be on
the same origin at an integer multiple of the 10 m pixel and are upsampled by repetition,
which is nearest-neighbour resampling with no interpolation ambiguity at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from qgis_rsbatch.core.errors import InvalidInput
from qgis_rsbatch.core.geometry import densify_geometry
from qgis_rsbatch.core.products import BANDS

from .profiles import gdal_threads
from .sources import diagnose, open_band

#: the resolution of the output grid, metres
FINE = 10


@dataclass
class Grid:
    """The 10 m pixel grid of a cell (or of a window of it)."""

    crs: Any
    transform: Any  # affine.Affine
    width: int
    height: int

    def describe(self) -> str:
        t = self.transform
        return f"{self.width}×{self.height} px of {t.a:g} m at ({t.c:.0f}, {t.f:.0f}) {self.crs}"


class BandSet:
    """The open bands of one cell; `grid` is the 10 m grid every band is checked against."""

    def __init__(self, hrefs: dict[str, str], *, requester_pays: bool = False,
                 threads: int | str | None = None) -> None:
        self.hrefs = dict(hrefs)
        self.requester_pays = requester_pays
        self.datasets: dict[str, Any] = {}
        self._readers: Any = None
        try:
            # opened side by side: over HTTP each open is a round trip or two
            opening = {key: self._pool().submit(open_band, href, key,
                                                requester_pays=requester_pays,
                                                threads=threads or gdal_threads())
                       for key, href in self.hrefs.items()}
            failure: BaseException | None = None
            for key, future in opening.items():  # every one, so none is left open
                try:
                    self.datasets[key] = future.result()
                except BaseException as exc:  # the first one is raised below
                    failure = failure or exc
            if failure is not None:
                raise failure
            self.grid, self.factors = self._check_grids()
        except BaseException:
            self.close()
            raise

    def _check_grids(self) -> tuple[Grid, dict[str, int]]:
        """The 10 m grid, and each band's integer factor to it (1 for 10 m, 2 for 20 m)."""
        fine = {k: d for k, d in self.datasets.items() if BANDS[k].resolution == FINE}
        if not fine:
            raise InvalidInput("a cell needs at least one 10 m band to define its grid")
        first_key, first = next(iter(fine.items()))
        grid = Grid(first.crs, first.transform, first.width, first.height)
        if first.crs is None or not first.crs.is_projected:
            raise InvalidInput(f"band {first_key} has no projected CRS ({first.crs}); "
                               "Sentinel-2 bands are in UTM")
        factors = {}
        for key, ds in self.datasets.items():
            other = Grid(ds.crs, ds.transform, ds.width, ds.height)
            if ds.count < 1:
                raise InvalidInput(f"band {key} ({self.hrefs[key]}) holds no raster band")
            if key in fine:
                if (ds.crs != grid.crs or not ds.transform.almost_equals(grid.transform)
                        or (ds.width, ds.height) != (grid.width, grid.height)):
                    raise InvalidInput(
                        f"bands are on different grids: {first_key} is {grid.describe()}, "
                        f"{key} is {other.describe()}"
                    )
                factors[key] = 1
                continue
            ratio = ds.transform.a / grid.transform.a
            factor = round(ratio)
            aligned = (abs(ds.transform.c - grid.transform.c) < 1e-6
                       and abs(ds.transform.f - grid.transform.f) < 1e-6
                       and abs(ratio - factor) < 1e-9 and factor >= 1
                       and abs(ds.transform.e + ds.transform.a) < 1e-9)
            if ds.crs != grid.crs or not aligned:
                raise InvalidInput(f"band {key} is not on the bands' grid: {grid.describe()} "
                                   f"vs {other.describe()}")
            factors[key] = factor
        return grid, factors

    @property
    def scl_factor(self) -> int:
        return self.factors.get("scl", 1)

    def close(self) -> None:
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        for ds in self.datasets.values():
            ds.close()
        self.datasets.clear()

    def __enter__(self) -> BandSet:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- reading ------------------------------------------------------------------------
    def _read(self, key: str, window: Any, **kwargs: Any) -> np.ndarray:
        from rasterio.errors import RasterioError

        try:
            return self.datasets[key].read(1, window=window, **kwargs)
        except RasterioError as exc:
            error = diagnose(self.hrefs[key], key, exc, requester_pays=self.requester_pays)
            raise error from exc

    def read(self, keys: tuple[str, ...], row: int, col: int, rows: int, cols: int,
             scl_map: Callable[[np.ndarray], np.ndarray] | None = None
             ) -> dict[str, np.ndarray]:
        """Bands `keys` for a window of the 10 m grid; 20 m bands come repeated onto it.

        `scl_map` (e.g. classes → cloud mask) is applied to SCL at its own resolution,
        before upsampling, where it costs a quarter as much.
        """
        from rasterio.windows import Window

        def one(key: str) -> np.ndarray:
            if self.factors[key] == 1:
                return self._read(key, Window(col, row, cols, rows))
            return self._read_coarse(key, row, col, rows, cols,
                                     scl_map if key == "scl" else None)

        if len(keys) < 2:
            return {key: one(key) for key in keys}
        # each band is its own dataset: read them side by side (GDAL releases the GIL), so
        # remote bands wait for their round trips together rather than one after another
        futures = {key: self._pool().submit(one, key) for key in keys}
        return {key: future.result() for key, future in futures.items()}

    def _pool(self) -> Any:
        if self._readers is None:
            from concurrent.futures import ThreadPoolExecutor

            self._readers = ThreadPoolExecutor(max_workers=max(len(self.hrefs), 1),
                                               thread_name_prefix="rsbatch-band")
        return self._readers

    def _read_coarse(self, key: str, row: int, col: int, rows: int, cols: int,
                     transform: Callable[[np.ndarray], np.ndarray] | None = None
                     ) -> np.ndarray:
        """A coarser band on a window of the 10 m grid: the coarse pixels covering it, each
        repeated k × k (every 20 m pixel covers exactly 2 × 2 of the 10 m grid), then cut
        to the window, which may start on an odd 10 m row or column."""
        from rasterio.windows import Window

        k = self.factors[key]
        ds = self.datasets[key]
        r0, c0 = row // k, col // k
        r1 = min(-(-(row + rows) // k), ds.height)
        c1 = min(-(-(col + cols) // k), ds.width)
        coarse = self._read(key, Window(c0, r0, c1 - c0, r1 - r0))
        if transform is not None:
            coarse = transform(coarse)
        coarse = upsampled(coarse, k)
        fine = coarse[row - r0 * k: row - r0 * k + rows, col - c0 * k: col - c0 * k + cols]
        if fine.shape != (rows, cols):  # a coarse raster a little short of the 10 m extent
            fine = np.pad(fine, ((0, rows - fine.shape[0]), (0, cols - fine.shape[1])),
                          mode="edge")
        return fine

    def overview(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Decimated red DNs and SCL classes over the whole grid, co-registered (nearest)."""
        from rasterio.enums import Resampling
        from rasterio.windows import Window

        g = self.grid
        step = max(1, math.ceil(max(g.width, g.height) / size))
        shape = (max(1, g.height // step), max(1, g.width // step))
        red = self._read("red", Window(0, 0, shape[1] * step, shape[0] * step),
                         out_shape=shape, resampling=Resampling.nearest)
        k = self.scl_factor
        scl = self._read("scl", Window(0, 0, shape[1] * step / k, shape[0] * step / k),
                         out_shape=shape, resampling=Resampling.nearest)
        return red, scl


def upsampled(coarse: np.ndarray, k: int) -> np.ndarray:
    """Each pixel repeated k × k: the grid k times finer, nearest neighbour. For k = 2 and
    1- or 2-byte pixels (SCL, its cloud mask, B11/B12) a column pair is one word twice the
    width holding the value twice (value × 0x101 or × 0x10001), written once per row pair:
    one pass, where numpy's repeat takes two."""
    if k == 1:
        return coarse
    rows, cols = coarse.shape
    out = np.empty((rows, k, cols * k), coarse.dtype)
    size = coarse.dtype.itemsize
    if k == 2 and size in (1, 2):
        narrow, wide = np.dtype(f"u{size}"), np.dtype(f"u{2 * size}")
        pairs = coarse.view(narrow).astype(wide)
        pairs *= wide.type((1 << 8 * size) + 1)
        out.view(wide)[...] = pairs[:, None, :]
    else:
        out[...] = np.repeat(coarse, k, axis=1)[:, None, :]
    return out.reshape(rows * k, cols * k)


def check_on_tile(grid: Grid, tile_id: str) -> None:
    """InvalidInput unless the bands lie on the 10 m grid of the cell's own tile.

    A cell names its tile and its band hrefs separately; if they disagree (32TNT's cell
    given 32TMT's bands), the output would be written, georeferenced correctly but named and
    catalogued as the wrong tile. Bands may be a crop of the tile (samples, tests), so the
    rule is: the tile's CRS, pixels on the tile's 10 m grid, extent inside the tile.
    """
    from qgis_rsbatch.core.grid import tile_info

    tile = tile_info(tile_id)
    if _fits(grid, tile):
        return
    others = [t for t in _tiles_under(grid) if t.tile != tile.tile and _fits(grid, t)]
    # a tile's own bands start at its origin; a small crop may fit several overlapping tiles
    starting = [t for t in others if abs(t.origin[0] - grid.transform.c) < 0.01
                and abs(t.origin[1] - grid.transform.f) < 0.01]
    others = [t.tile for t in (starting or others)]
    found = f"tile {' or '.join(others)}'s grid" if others else "no tile's grid"
    raise InvalidInput(
        f"the cell's tile {tile.tile} (EPSG:{tile.epsg}, 10 m grid from "
        f"({tile.origin[0]:.0f}, {tile.origin[1]:.0f})) does not match its bands: they are "
        f"{grid.describe()}, which is {found}; check the cell's tile and band hrefs")


def _fits(grid: Grid, tile: Any) -> bool:
    """Whether a grid is (a crop of) the tile's 10 m grid, in the tile's CRS."""
    from rasterio.crs import CRS

    epsg = grid.crs.to_epsg() if grid.crs is not None else None
    if epsg != tile.epsg and (grid.crs is None or grid.crs != CRS.from_epsg(tile.epsg)):
        return False
    t = grid.transform
    x0, y0 = tile.origin
    res = 10.0
    minx, miny, maxx, maxy = tile.bounds()
    right, bottom = t.c + grid.width * t.a, t.f + grid.height * t.e
    tolerance = 0.01  # metres
    on_grid = (abs(t.a - res) < 1e-9 and abs(t.e + res) < 1e-9 and t.b == 0 and t.d == 0
               and abs((t.c - x0) / res - round((t.c - x0) / res)) * res < tolerance
               and abs((y0 - t.f) / res - round((y0 - t.f) / res)) * res < tolerance)
    inside = (t.c > minx - tolerance and right < maxx + tolerance
              and bottom > miny - tolerance and t.f < maxy + tolerance)
    return on_grid and inside


def _tiles_under(grid: Grid) -> list[Any]:
    """The tiles whose footprint holds the grid's centre (to name the bands' real tile)."""
    from rasterio.warp import transform

    from qgis_rsbatch.core.grid import tiles_for_aoi

    t = grid.transform
    cx, cy = t.c + grid.width * t.a / 2, t.f + grid.height * t.e / 2
    try:
        lons, lats = transform(grid.crs, "EPSG:4326", [cx], [cy])
        return tiles_for_aoi({"type": "Point", "coordinates": [lons[0], lats[0]]})
    except (InvalidInput, ValueError, RuntimeError):
        return []


class AoiClip:
    """The AOI on a tile's grid: the pixel window that covers it and per-strip masks."""

    def __init__(self, aoi: dict, grid: Grid, tile: str) -> None:
        from rasterio.warp import transform_geom

        # GeoJSON edges are straight in longitude/latitude; in UTM they are curves, so the
        # polygon is densified (every 0.005°, ~500 m) before it is projected onto the grid
        polygons = [aoi["coordinates"]] if aoi["type"] == "Polygon" else aoi["coordinates"]
        dense = densify_geometry({"type": "MultiPolygon", "coordinates": polygons}, 0.005)
        try:
            self.geometry = transform_geom("EPSG:4326", grid.crs, dense)
        except Exception as exc:
            raise InvalidInput(f"the AOI cannot be projected to the tile's CRS: {exc}") from exc
        xs, ys = [], []
        for poly in self.geometry["coordinates"]:
            for x, y, *_ in poly[0]:
                xs.append(x)
                ys.append(y)
        t = grid.transform
        col0 = max(0, math.floor((min(xs) - t.c) / t.a))
        col1 = min(grid.width, math.ceil((max(xs) - t.c) / t.a))
        row0 = max(0, math.floor((t.f - max(ys)) / -t.e))
        row1 = min(grid.height, math.ceil((t.f - min(ys)) / -t.e))
        if col1 <= col0 or row1 <= row0:
            raise InvalidInput(f"the AOI does not overlap tile {tile} ({grid.describe()})")
        self.row, self.col = row0, col0
        self.rows, self.cols = row1 - row0, col1 - col0
        self.grid = grid

    def mask(self, row: int, col: int, rows: int, cols: int) -> np.ndarray:
        """True for pixels of the window whose centre lies inside the AOI."""
        from rasterio.features import geometry_mask
        from rasterio.windows import Window, transform

        window_transform = transform(Window(col, row, cols, rows), self.grid.transform)
        return geometry_mask([self.geometry], out_shape=(rows, cols),
                             transform=window_transform, invert=True)


def strips(row: int, rows: int, height: int) -> Iterator[tuple[int, int]]:
    """Row ranges covering [row, row+rows), cut at multiples of `height` in tile rows.

    Cutting at absolute multiples keeps every read aligned to the inputs' blocks, so each
    compressed block is decoded once.
    """
    start, end = row, row + rows
    while start < end:
        stop = min(end, (start // height + 1) * height)
        yield start, stop - start
        start = stop
