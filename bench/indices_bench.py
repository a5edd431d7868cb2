"""`make bench`: what each spectral index adds to a cell, and what the AOI cloud pre-check
costs against a whole cell, on a full-size generated tile (B11/B12 at 20 m).

Each run is the worker in a fresh process (bench/variants.py, best of `--repeat`). The
extra cost of an index is (NDVI + that index) − (NDVI alone): the bands it shares with
NDVI are read once. Tables go to stdout and bench/results/indices.md, numbers to
bench/results/indices.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import datetime, timezone

from qgis_rsbatch.core import products

from .worker_bench import RESULTS, run_variant, scene_dir


def measure(size: int, repeat: int) -> dict:
    scene = scene_dir(size)
    runs = {}
    sets = ["ndvi", "rgb,ndvi"] + [f"ndvi,{name}" for name in products.NAMES
                                   if name not in ("rgb", "ndvi")]
    sets += [name for name in products.NAMES if name not in ("rgb", "ndvi")]
    for chosen in sets:
        print(f"  worker: {chosen} …", flush=True)
        runs[chosen] = run_variant("ours", scene, chosen, repeat)
    print("  the AOI cloud pre-check alone …", flush=True)
    runs["precheck"] = run_variant("aoi_precheck", scene, "", repeat)
    return runs


def report(size: int, runs: dict, load: float) -> str:
    base = runs["ndvi"]["cpu_seconds"]
    lines = [
        f"# Spectral indices and the AOI cloud pre-check ({size} × {size} px, "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"{platform.machine()}, load average {load:.1f} during the run)", "",
        "CPU seconds (user + system, all threads) are the cost; wall seconds depend on what "
        "else the machine ran.", "",
        "| products | CPU seconds | extra CPU over NDVI alone | wall seconds | peak RSS |",
        "|---|---:|---:|---:|---:|",
    ]
    for chosen, run in runs.items():
        if chosen == "precheck":
            continue
        extra = f"{run['cpu_seconds'] - base:+.1f} s" if chosen.startswith("ndvi,") else ""
        lines.append(f"| {chosen} | {run['cpu_seconds']:.1f} | {extra} | {run['seconds']:.1f} "
                     f"| {run['rss_mb']:.0f} MB |")
    full, pre = runs["rgb,ndvi"], runs["precheck"]
    lines += ["", f"AOI cloud pre-check over the whole tile (the worst case: open the bands, "
                  f"read SCL, count the masked pixels): {pre['cpu_seconds']:.1f} CPU s, "
                  f"{100 * pre['cpu_seconds'] / full['cpu_seconds']:.0f} % of a full RGB + "
                  f"NDVI cell ({full['cpu_seconds']:.1f} CPU s; wall {pre['seconds']:.1f} s "
                  f"vs {full['seconds']:.1f} s). A SKIPPED cell costs that, not the cell."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    runs = measure(args.size, args.repeat)
    text = report(args.size, runs, os.getloadavg()[0])
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "indices.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(RESULTS, "indices.json"), "w") as fh:
        json.dump({"size": args.size, "load_average": os.getloadavg()[0], "runs": runs}, fh,
                  indent=1)


if __name__ == "__main__":
    main()
