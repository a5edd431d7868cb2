"""The contenders of the worker benchmark, each run alone in a fresh process.

    python -m bench.variants NAME SCENE_DIR OUT_DIR [PRODUCTS]

prints one JSON line: {"seconds": …, "rss_mb": …}. Running each in its own process makes
its peak RSS its own, and keeps GDAL's block cache from carrying over between contenders.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from qgis_rsbatch.core.products import BAND_NAMES

#: the generated scene's files (worker/samples.py): B02 … B12, SCL
BANDS = {key: f"{name}.tif" for key, name in BAND_NAMES.items()}


def ours(scene: str, out: str, products: str) -> None:
    """(a) the worker itself, as the container runs it: `rsbatch-worker run CELL`."""
    from worker.cli import main

    cell = {
        "job_id": "bench", "tile": "32TMT", "date": "2024-06-01",
        "bands": {k: os.path.join(scene, v) for k, v in BANDS.items()},
        "products": products.split(","), "output": out, "offset": -0.1,
    }
    code = main(["--no-task-log", "-q", "run", json.dumps(cell)])
    if code:
        raise SystemExit(f"the worker failed with exit code {code}")


def _ours_with(writer: str, scene: str, out: str, products: str) -> None:
    """The worker with its COG writer swapped for a contender (bench/cog_contenders.py):
    the same strip pipeline, codec, block size, overview levels and statistics."""
    from worker import process

    from .cog_contenders import WRITERS

    process.CogWriter = WRITERS[writer]  # type: ignore[misc,assignment]
    ours(scene, out, products)


def ours_gdal(scene: str, out: str, products: str) -> None:
    """(a-b) the worker, strips to a tiled scratch GeoTIFF, then GDAL's COG driver."""
    _ours_with("gdal", scene, out, products)


def ours_riocogeo(scene: str, out: str, products: str) -> None:
    """(a-c) the worker, strips to a tiled scratch GeoTIFF, then rio-cogeo's cog_translate."""
    _ours_with("riocogeo", scene, out, products)


def naive(scene: str, out: str, products: str, cog: bool = False) -> None:
    """(b) the seed's approach with numpy: whole arrays in memory, a GeoTIFF, gdaladdo-style
    overviews and statistics afterwards (the seed's combands.py, plus NDVI the same way).
    With `cog`, GDAL's COG driver then makes the same kind of file the worker makes."""
    import rasterio

    def read(key: str) -> tuple[np.ndarray, dict]:
        with rasterio.open(os.path.join(scene, BANDS[key])) as ds:
            return ds.read(1), ds.profile

    red, source = read("red")
    profile = {k: source[k] for k in ("width", "height", "crs", "transform", "dtype", "nodata")}
    profile.update(driver="GTiff", count=1)
    outputs = []
    if "ndvi" in products:
        nir, _ = read("nir")
        r = np.maximum(red.astype(np.float32) * 0.0001 - 0.1, 0)
        n = np.maximum(nir.astype(np.float32) * 0.0001 - 0.1, 0)
        with np.errstate(all="ignore"):
            ndvi = (n - r) / (n + r)
        path = os.path.join(out, "ndvi.tif")
        with rasterio.open(path, "w", **{**profile, "dtype": "float32", "nodata": np.nan}) as ds:
            ds.write(ndvi, 1)
        outputs.append(path)
        del nir, r, n, ndvi
    if "rgb" in products:
        green, _ = read("green")
        blue, _ = read("blue")
        path = os.path.join(out, "rgb.tif")
        with rasterio.open(path, "w", **{**profile, "count": 3}) as ds:
            ds.write(np.stack([red, green, blue]))
        outputs.append(path)
    for path in outputs:
        if cog:  # the deliverable the worker makes: a ZSTD COG with overviews and statistics
            from rasterio.shutil import copy

            copy(path, path.replace(".tif", "-cog.tif"), driver="COG", compress="ZSTD",
                 level=1, predictor="YES", num_threads="ALL_CPUS", statistics="YES",
                 overview_resampling="average")
            continue
        # the seed: ComputeStatistics, then BuildOverviews('average', …)
        from osgeo import gdal

        ds = gdal.Open(path, gdal.GA_Update)
        for band in range(1, ds.RasterCount + 1):
            ds.GetRasterBand(band).ComputeStatistics(False)
        ds.BuildOverviews("AVERAGE", [2, 4, 8, 16, 32])
        ds = None


def naive_cog(scene: str, out: str, products: str) -> None:
    """(b') the seed's approach made to deliver what the worker delivers: COGs."""
    naive(scene, out, products, cog=True)


def rio_calc(scene: str, out: str, products: str) -> None:
    """(c) `rio calc` (rasterio's own tool) on the same NDVI, offset applied, to a tiled
    ZSTD GeoTIFF; it has no cloud mask, no overviews and no statistics."""
    red = "(maximum (- (read 1 1 'float32') 1000) 0)"
    nir = "(maximum (- (read 2 1 'float32') 1000) 0)"
    expression = f"(/ (- {nir} {red}) (+ {nir} {red}))"
    rio = os.path.join(os.path.dirname(sys.executable), "rio")
    subprocess.run([rio, "calc", expression, os.path.join(scene, "B04.tif"),
                    os.path.join(scene, "B08.tif"), os.path.join(out, "ndvi.tif"),
                    "--dtype", "float32", "--overwrite", "--co", "tiled=true",
                    "--co", "compress=zstd", "--co", "predictor=3"], check=True)


def aoi_precheck(scene: str, out: str, products: str) -> None:
    """The AOI cloud pre-check alone over the whole tile (the worst case: the AOI is the
    tile): open the bands a cell opens, read SCL, count the masked pixels."""
    from rasterio.windows import Window

    from worker import aoicloud
    from worker.process import STRIP_ROWS
    from worker.reader import BandSet

    hrefs = {k: os.path.join(scene, BANDS[k]) for k in ("red", "nir", "scl")}
    with BandSet(hrefs) as bands:
        window = Window(0, 0, bands.grid.width, bands.grid.height)
        aoicloud.masked_percent(bands, None, window, STRIP_ROWS)


def decode(scene: str, out: str, products: str) -> None:
    """(d) the floor: decode the four 10 m bands (GDAL, all cores), nothing else."""
    _decode(scene, "ALL_CPUS")


def decode_one_thread(scene: str, out: str, products: str) -> None:
    """(d') the same with one decoding thread, as a plain rasterio read does."""
    _decode(scene, "1")


def _decode(scene: str, threads: str) -> None:
    import rasterio
    from rasterio.windows import Window

    with rasterio.Env(GDAL_CACHEMAX=256):
        for key in ("blue", "green", "red", "nir"):
            with rasterio.open(os.path.join(scene, BANDS[key]), NUM_THREADS=threads) as ds:
                for row in range(0, ds.height, 1024):
                    rows = min(1024, ds.height - row)
                    ds.read(1, window=Window(0, row, ds.width, rows))


def reset_peak_rss() -> None:
    """Forget the peak RSS so far: a process forked from a big parent inherits its mark."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """This process's peak RSS (and its children's, for `rio calc`), in MB."""
    try:
        with open("/proc/self/status") as fh:
            own = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def main() -> None:
    name, scene, out = sys.argv[1:4]
    products = sys.argv[4] if len(sys.argv) > 4 else "rgb,ndvi"
    os.makedirs(out, exist_ok=True)
    reset_peak_rss()
    started, cpu = time.perf_counter(), _cpu_seconds()
    globals()[name](scene, out, products)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rss_mb": peak_rss_mb(),
                      "cpu_seconds": _cpu_seconds() - cpu}))


def _cpu_seconds() -> float:
    """User + system CPU time of this process's threads and its children: unlike wall
    time, it barely changes when other processes share the machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
