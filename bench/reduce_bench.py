"""`make bench`: reduce units on full-size generated tiles — time and peak RSS.

Mosaics of 2 tiles of one zone (32TMT + 32TNT), 2 tiles across a zone boundary (31UGR +
32UKA, one warped) and 4 tiles (32TMT, 32TNT, 32TMS, 32TNS); median composites of 10 and
30 dates of 32TMT (the work arrays grow as dates × window, the window shrinking to stay
within the composite's budget). Cells are made once by the real worker and cached under
bench/.cache; each unit then runs in a fresh process (`python -m bench.reduce_bench unit
UNIT.json`) so its peak RSS is its own. With --size below 10980 each tile is a crop at
the corner facing the others. Results go to bench/results/reduce.md and reduce.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
FULL = 10980
#: tile → which corner of it faces the others (its crop's position at sizes below FULL)
CORNERS = {"32TMT": "se", "32TNT": "sw", "32TMS": "ne", "32TNS": "nw", "31UGR": "nw",
           "32UKA": "ne"}
CASES = {
    "mosaic of 2 tiles, one zone": ("mosaic", ("32TMT", "32TNT"), 1),
    "mosaic of 2 tiles across zones 31/32": ("mosaic", ("31UGR", "32UKA"), 1),
    "mosaic of 4 tiles": ("mosaic", ("32TMT", "32TNT", "32TMS", "32TNS"), 1),
    "median composite of 10 dates": ("composite", ("32TMT",), 10),
    "median composite of 30 dates": ("composite", ("32TMT",), 30),
}


NOTE = ("A composite's memory does not grow with its dates: its work window (N dates × bands "
        "in float32, sorted in small blocks) is held to a 256 MB budget by narrowing as N grows "
        "(512 rows × 2560 columns for 10 dates of RGB, × 1024 for 30), so peak RSS stays "
        "near 600 MB for 10 and for 30 dates; the time grows with N (reading N dates, and "
        "sorting N values per pixel and band). Mosaics read each tile once, warping through "
        "GDAL (nearest) only the tiles of another UTM zone.")


def dates(count: int) -> list[str]:
    """Every third day from 2024-06-01 (30 dates run into August)."""
    from datetime import date, timedelta

    return [(date(2024, 6, 1) + timedelta(days=3 * k)).isoformat() for k in range(count)]


def crop_origin(tile: str, size: int) -> tuple[float, float]:
    from qgis_rsbatch.core import grid

    x0, y0 = grid.tile_info(tile).origin
    corner = CORNERS[tile]
    dx = (FULL - size) * 10 if corner[1] == "e" else 0
    dy = (FULL - size) * 10 if corner[0] == "s" else 0
    return x0 + dx, y0 - dy


def make_cells(root: str, tiles: tuple[str, ...], days: list[str], size: int,
               keep_scenes: bool = True) -> list:
    """The cells' outputs (cached): scenes generated, then processed by the worker; the
    scenes are deleted once processed unless `keep_scenes` (30 full-size scenes and their
    outputs would not fit beside each other on a small disk)."""
    from qgis_rsbatch.core import grid
    from qgis_rsbatch.core.contract import Cell
    from worker.process import process_cell
    from worker.samples import GENERATOR_VERSION, SampleScene, write_scene

    cells = []
    for tile in tiles:
        for index, day in enumerate(days):
            folder = os.path.join(root, "scenes", f"{tile}_{day}")
            bands = {key: os.path.join(folder, f"{name}.tif") for key, name in
                     (("blue", "B02"), ("green", "B03"), ("red", "B04"), ("nir", "B08"),
                      ("scl", "SCL"))}
            cell = Cell.from_dict({"job_id": "bench", "tile": tile, "date": day, "bands": bands,
                                   "products": ["rgb", "ndvi"], "offset": -0.1,
                                   "output": os.path.join(root, "out")})
            cells.append(cell)
            made = os.path.join(root, "out", f".made-{cell.cell_id}-v{GENERATOR_VERSION}")
            if os.path.exists(made):
                continue
            marker = os.path.join(folder, f".complete-v{GENERATOR_VERSION}")
            if not os.path.exists(marker):
                shutil.rmtree(folder, ignore_errors=True)
                print(f"  generating {tile} {day} ({size} px) …", flush=True)
                write_scene(folder, SampleScene(
                    tile=tile, epsg=grid.tile_info(tile).epsg, origin=crop_origin(tile, size),
                    date=day, size=size, cloud=0.25, seed=11 + 7 * index, ground_seed=3))
                open(marker, "w").close()
            process_cell(cell)
            open(made, "w").close()
            if not keep_scenes:  # the units read the cells' outputs; full-size scenes are big
                shutil.rmtree(folder, ignore_errors=True)
    return cells


def area_of(cells: list) -> dict:
    """The union of the inputs' extents as one lon/lat box (the mosaic's AOI)."""
    import rasterio
    from rasterio.warp import transform_bounds

    boxes = []
    for cell in cells:
        with rasterio.open(cell.output_uri("ndvi").removeprefix("file://")) as ds:
            boxes.append(transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21))
    w, s = min(b[0] for b in boxes), min(b[1] for b in boxes)
    e, n = max(b[2] for b in boxes), max(b[3] for b in boxes)
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


def work_window(kind: str, inputs: int, product: str, width: int) -> str:
    """A composite's work window as worker/reduce.py sizes it (rows × columns and the MB of
    its stacked dates): it narrows as the dates grow, so the work arrays stay within the
    budget."""
    from worker.composite import composite_bytes
    from worker.profiles import composite_profile
    from worker.reduce import work_window as unit_window

    if kind != "composite":
        return ""
    spec = composite_profile(product)
    rows, cols = unit_window(kind, inputs, spec, width)
    mb = rows * cols * composite_bytes(inputs, spec["count"]) / 2**20
    return f"{rows} × {cols} ({mb:.0f} MB)"


def run_unit(unit: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(unit, fh)
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.reduce_bench", "unit", fh.name],
                              capture_output=True, text=True, check=True)
    finally:
        os.remove(fh.name)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(size: int, products: tuple[str, ...]) -> list[dict]:
    from qgis_rsbatch.core.contract import Job, ReduceUnit
    from qgis_rsbatch.core.reduce_plan import plan_reduce

    root = os.path.join(HERE, ".cache", f"reduce-{size}")
    results = []
    for label, (kind, tiles, count) in CASES.items():
        print(f"{label}:", flush=True)
        cells = make_cells(root, tiles, dates(count), size, keep_scenes=size < FULL)
        job = Job("bench", tuple(cells))
        plan = plan_reduce(job, aoi=area_of(cells), mosaic=kind == "mosaic",
                           composite="median" if kind == "composite" else None)
        for unit in plan.units:
            if unit.product not in products:
                continue
            out = tempfile.mkdtemp(prefix="rsbatch-reduce-", dir=root)
            try:
                # read the cached cells, write into a scratch folder (always made afresh)
                moved = ReduceUnit.from_dict({**unit.to_dict(), "output": out})
                for name in os.listdir(os.path.join(root, "out", "bench")):
                    os.makedirs(os.path.join(out, "bench"), exist_ok=True)
                    os.symlink(os.path.join(root, "out", "bench", name),
                               os.path.join(out, "bench", name))
                result = run_unit(moved.to_dict())
            finally:
                shutil.rmtree(out, ignore_errors=True)
            g = unit.grid
            result.update(label=label, product=unit.product, inputs=len(unit.inputs),
                          width=g.width, height=g.height, epsg=g.epsg,
                          mpx_per_s=g.width * g.height / 1e6 / result["seconds"],
                          window=work_window(unit.kind, len(unit.inputs), unit.product,
                                             g.width))
            print(f"  {unit.product}: {result['seconds']:.1f} s, {result['rss_mb']:.0f} MB "
                  f"({g.width} × {g.height} px)", flush=True)
            results.append(result)
    return results


def render(size: int, results: list[dict]) -> str:
    from bench.worker_bench import machine

    lines = [
        f"# Reduce benchmark — tiles of {size} × {size} px",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}, load average "
        f"{os.getloadavg()[0]:.1f} at the end. Cells made by the worker from generated scenes "
        "(bench/.cache); each unit in a fresh process.",
        "",
        "| unit | product | inputs | output px | seconds | output Mpx/s | peak RSS (MB) "
        "| composite work window |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(f"| {r['label']} | {r['product']} | {r['inputs']} | "
                     f"{r['width']} × {r['height']} | {r['seconds']:.1f} | "
                     f"{r['mpx_per_s']:.1f} | {r['rss_mb']:.0f} | {r.get('window', '')} |")
    lines += ["", NOTE]
    return "\n".join(lines) + "\n"


def unit_main(path: str) -> None:
    """Run one unit in this process and print its seconds and peak RSS as JSON."""
    from bench.variants import peak_rss_mb, reset_peak_rss
    from qgis_rsbatch.core.contract import ReduceUnit
    from worker.reduce import process_unit

    with open(path) as fh:
        unit = ReduceUnit.from_dict(json.load(fh))
    reset_peak_rss()
    started = time.perf_counter()
    process_unit(unit)
    print(json.dumps({"seconds": time.perf_counter() - started, "rss_mb": peak_rss_mb()}))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["unit"]:
        unit_main(argv[1])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=FULL, help="tile size in 10 m pixels")
    parser.add_argument("--products", default="ndvi,rgb")
    args = parser.parse_args(argv)
    results = bench(args.size, tuple(args.products.split(",")))
    text = render(args.size, results)
    os.makedirs(RESULTS, exist_ok=True)
    suffix = "" if args.size == FULL else f"-{args.size}"
    with open(os.path.join(RESULTS, f"reduce{suffix}.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(RESULTS, f"reduce{suffix}.json"), "w") as fh:
        json.dump({"size": args.size, "date": datetime.now(timezone.utc).isoformat(
            timespec="seconds"), "results": results}, fh, indent=1)
    print(text)


if __name__ == "__main__":
    main()
