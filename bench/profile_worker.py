"""`make bench`: where the worker's CPU time goes on a full tile (RGB + NDVI), by stage.

    python -m bench.profile_worker [--size 10980] [--products rgb,ndvi]

`perf record` samples the worker's process (every thread: GDAL's decoding and compression
threads too, which a Python profiler cannot see) on the CPU clock, with call chains (DWARF
unwinding); each sample goes to the first stage whose pattern its call chain matches, so a
memory copy counts where it happens (decoding, encoding, handing strips to GDAL) rather than
under libc. The table goes to bench/results/profile.md. Shares of CPU time, so a busy machine
changes the seconds but hardly the split. Needs `perf` (Debian's linux-perf); without it,
says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone

from .worker_bench import RESULTS, machine, scene_dir

#: (pattern on a sample's call chain, its stage), first match wins; the chain is the
#: sample's frames, innermost first, as `perf script` prints them
STAGES = (
    (r"ZSTD_compress|zstandard/backend_c", "compress the outputs (zstd)"),
    (r"TIFFWriteEncoded|WriteEncodedTile|GTiffDataset::WriteEncoded|ThreadCompressionFunc",
     "encode the output tiles: predictor, copies (libtiff, GDAL)"),
    (r"libdeflate|inflate", "decode the inputs (DEFLATE)"),
    (r"TIFFReadEncoded|ReadEncodedTile|ThreadDecompressionFunc|TIFFReadFromUserBuffer",
     "decode the inputs: predictor, copies (libtiff, GDAL)"),
    (r"DatasetReaderBase|IReadBlock|io_band", "take strips from GDAL (rasterio read)"),
    (r"copy_file_range", "assemble the COG (copy_file_range)"),
    (r"page_fault|clear_page|clear_huge_page", "kernel: page faults (zeroing fresh memory)"),
    (r"vfs_write|vfs_read|ksys_pread|ksys_write|ksys_read", "kernel: file reads and writes"),
)
#: (pattern on the innermost two frames, its stage) for samples no call chain above claims
LEAF_STAGES = (
    # numba's compiled code, loaded from its cache: perf cannot name the functions, but with
    # NUMBA_ENABLE_PROFILING it places their addresses under the process's perf map
    (r"perf-\d+\.map", "the worker's compiled loops (products, overviews, statistics, tile cuts)"),
    (r"_multiarray_umath|_umath", "numpy: products, masks, statistics, overviews"),
    (r"python3", "the Python interpreter"),
    (r"kallsyms", "kernel: other"),
    (r"libc\.so", "libc: other copies and fills"),
)


def stage_of(frames: list[str]) -> str:
    """The stage of one sample from its frames (`addr symbol (dso)`, innermost first)."""
    chain = "\n".join(frames)
    for pattern, label in STAGES:
        if re.search(pattern, chain):
            return label
    leaf = "\n".join(frames[:2])  # a copy inlined into numpy names numpy next
    for pattern, label in LEAF_STAGES:
        if re.search(pattern, leaf):
            return label
    return "other"


def profile(scene: str, products: str, rate: int) -> tuple[dict[str, float], float]:
    """(share of samples by stage, CPU seconds sampled) of one worker run."""
    work = tempfile.mkdtemp(prefix="rsbatch-profile-", dir=os.path.dirname(scene))
    data = os.path.join(work, "perf.data")
    try:
        subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", str(rate),
                        "--call-graph", "dwarf,32768", "-o", data, "--", sys.executable,
                        "-m", "bench.variants", "ours", scene, os.path.join(work, "out"),
                        products], check=True, capture_output=True,
                       env={**os.environ, "NUMBA_ENABLE_PROFILING": "1"})  # see LEAF_STAGES
        script = subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,ip,sym,dso"],
                                check=True, capture_output=True, text=True).stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)
    counts: dict[str, int] = {}
    for sample in script.split("\n\n"):
        frames = [line.strip() for line in sample.strip().splitlines()[1:]]
        if frames:
            stage = stage_of(frames)
            counts[stage] = counts.get(stage, 0) + 1
    samples = sum(counts.values())
    return {k: 100.0 * v / max(samples, 1) for k, v in counts.items()}, samples / rate


def stage_seconds(scene: str, products: str) -> dict[str, float]:
    """The worker's own stages in CPU seconds (bench.stage_clock, one run in a fresh
    process); "_process" is the CPU of every thread."""
    work = tempfile.mkdtemp(prefix="rsbatch-stages-", dir=os.path.dirname(scene))
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.stage_clock", scene,
                               os.path.join(work, "out"), products],
                              check=True, capture_output=True, text=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def stage_table(seconds: dict[str, float]) -> list[str]:
    """The second table: the worker's stages, and the rest (GDAL's threads, glue)."""
    total = seconds.pop("_process")
    rows = sorted(seconds.items(), key=lambda kv: -kv[1])
    rows.append(("the rest: GDAL's threads (decoding the inputs), Python glue, imports, "
                 "start-up", total - sum(seconds.values())))
    lines = ["| worker stage (thread CPU, exclusive) | CPU seconds | share |",
             "|---|---:|---:|"]
    lines += [f"| {stage} | {cpu:.2f} | {100 * cpu / total:.1f} % |" for stage, cpu in rows]
    return [*lines, f"| all threads of the process | {total:.2f} | 100 % |"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--products", default="rgb,ndvi")
    parser.add_argument("--rate", type=int, default=199, help="samples per second")
    args = parser.parse_args(argv)
    if shutil.which("perf") is None:
        print("profile: perf is not installed (apt-get install linux-perf); skipped")
        return
    scene = scene_dir(args.size)
    shares, cpu = profile(scene, args.products, args.rate)
    lines = [
        f"# Where the worker's CPU goes — {args.products}, {args.size} × {args.size} tile",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}: `perf record` "
        f"on the CPU clock at {args.rate} Hz over every thread of one worker run, "
        f"{cpu:.1f} CPU seconds sampled; each sample given to a stage by its call chain.",
        "",
        "| stage | share of CPU | CPU seconds |",
        "|---|---:|---:|",
    ]
    for stage, share in sorted(shares.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {stage} | {share:.1f} % | {cpu * share / 100:.1f} |")
    lines += [
        "",
        "## The worker's own stages",
        "",
        "Another run, without perf: a clock on each stage function of the worker "
        "(bench/stage_clock.py), counting the calling thread's CPU time, exclusive of the "
        "stages it calls. GDAL's own threads run no worker code: their decoding is in the "
        "rest, and in the table above; the tile encoder's pool threads are clocked.",
        "",
        *stage_table(stage_seconds(scene, args.products)),
    ]
    text = "\n".join(lines) + "\n"
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "profile.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
