"""`make bench`: keep the hand-written COG assembler, or hand the layout to GDAL or rio-cogeo?

The worker compresses each tile once and assembles the COG byte layout itself
(worker/tiff.py, cog.py). The fair contenders take the worker's same strips (same reading,
masking, codec, predictor, blocks, overview levels and statistics; tests/worker/
test_cog_contenders.py holds them to the same output) and leave the layout to
(b) GDAL's COG driver or (c) rio-cogeo's `cog_translate` (bench/cog_contenders.py).
The rule: the assembler stays only while it is at least 25 % faster than the best of (b) and
(c) on RGB + NDVI. Each run in a fresh process, interleaved (a, b, c, a, b, c …) so a busy
machine slows all three alike; best of --repeat. Results: bench/results/cog_writer.md, .json.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime, timezone

from .worker_bench import RESULTS, machine, run_variant, scene_dir

CONTENDERS = (("ours", "(a) the worker's own COG assembler"),
              ("ours_gdal", "(b) the worker's strips, then GDAL's COG driver"),
              ("ours_riocogeo", "(c) the worker's strips, then rio-cogeo's cog_translate"))
KEEP_IF = 1.25


def measure(scene: str, products: str, repeat: int) -> dict[str, dict]:
    best: dict[str, dict] = {}
    for _ in range(repeat):
        for name, _label in CONTENDERS:
            result = run_variant(name, scene, products, repeat=1)
            if name not in best or result["seconds"] < best[name]["seconds"]:
                best[name] = result
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    scene = scene_dir(args.size)
    runs = {}
    for products in ("rgb,ndvi", "ndvi"):
        print(f"  {products} …", flush=True)
        runs[products] = measure(scene, products, args.repeat)
    load = os.getloadavg()[0]
    lines = [
        f"# COG writer: the assembler against GDAL's COG driver and rio-cogeo — {args.size} px",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}, load average "
        f"{load:.1f} at the end; best of {args.repeat} interleaved runs, each in a fresh process.",
        "",
        "| writer | RGB + NDVI s | RGB + NDVI peak RSS (MB) | NDVI s | NDVI peak RSS (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, label in CONTENDERS:
        both, ndvi = runs["rgb,ndvi"][name], runs["ndvi"][name]
        lines.append(f"| {label} | {both['seconds']:.2f} | {both['rss_mb']:.0f} | "
                     f"{ndvi['seconds']:.2f} | {ndvi['rss_mb']:.0f} |")
    ratio = {}
    for products, best in runs.items():
        other = min(best["ours_gdal"]["seconds"], best["ours_riocogeo"]["seconds"])
        ratio[products] = other / best["ours"]["seconds"]
    verdict = "kept" if ratio["rgb,ndvi"] >= KEEP_IF else "to be replaced by the faster tool"
    lines += [
        "",
        f"The assembler is {ratio['rgb,ndvi']:.2f}× as fast as the best of (b) and (c) on "
        f"RGB + NDVI ({ratio['ndvi']:.2f}× on NDVI alone): {verdict} (the rule: ≥ {KEEP_IF:.2f}×).",
        "",
        "Why: (b) and (c) must write every strip to a scratch GeoTIFF, read it again to build "
        "the overviews, and read it a third time to compress the COG; the assembler builds the "
        "overviews from the strips in memory and moves the already-compressed tiles into "
        "place, so each pixel is read once and compressed once.",
    ]
    text = "\n".join(lines) + "\n"
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "cog_writer.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(RESULTS, "cog_writer.json"), "w") as fh:
        json.dump({"size": args.size, "machine": machine(), "load": load,
                   "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "runs": runs, "ratio": ratio}, fh, indent=1)
    print(text)


if __name__ == "__main__":
    main()
