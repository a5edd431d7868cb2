"""`make bench`: where the worker's CPU time goes on a full tile (RGB + NDVI), by library.

    python -m bench.profile_worker [--size 10980] [--products rgb,ndvi]

`perf record` samples the worker's process (every thread: GDAL's compression and decoding
threads too, which a Python profiler cannot see) on the CPU clock; the samples are grouped by
the shared object they fall in, which here names the stage: libdeflate/libz decode the input
COGs, libblosc holds the zstd that compresses the outputs, libtiff applies the predictor,
numpy computes products, masks, statistics and overviews, the kernel mostly zeroes fresh pages.
The table goes to bench/results/profile.md. Shares of CPU time, so a busy machine changes the
seconds but hardly the split. Needs `perf` (Debian's linux-perf); without it, says so.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone

from .worker_bench import RESULTS, machine, scene_dir

#: shared object (a pattern on its name) → the stage its CPU time belongs to
STAGES = (
    (r"libdeflate|libz\.so", "decode the input COGs (DEFLATE)"),
    (r"libblosc|libzstd", "compress the outputs (zstd)"),
    (r"libtiff", "TIFF encoding: predictor, tile packing"),
    (r"_multiarray_umath|_umath|numpy", "numpy: products, masks, statistics, overview sums"),
    (r"kernel", "kernel: page faults (zeroing fresh pages), I/O"),
    (r"libc\.so", "libc: memory copies and fills"),
    (r"libgdal", "GDAL: copying words, block cache"),
    (r"python", "the Python interpreter"),
)


def profile(scene: str, products: str, rate: int) -> tuple[dict[str, float], float]:
    """(share of samples by stage, CPU seconds sampled) of one worker run."""
    work = tempfile.mkdtemp(prefix="rsbatch-profile-", dir=os.path.dirname(scene))
    data = os.path.join(work, "perf.data")
    try:
        subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", str(rate), "-g", "-o", data,
                        "--", sys.executable, "-m", "bench.variants", "ours", scene,
                        os.path.join(work, "out"), products],
                       check=True, capture_output=True)
        report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso",
                                 "--stdio", "-g", "none", "-n"], check=True,
                                capture_output=True, text=True).stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)
    shares: dict[str, float] = {}
    samples = 0
    for line in report.splitlines():
        match = re.match(r"\s+([\d.]+)%\s+(\d+)\s+(\S+)", line)
        if not match:
            continue
        percent, dso = float(match.group(1)), match.group(3)
        samples += int(match.group(2))
        stage = next((label for pattern, label in STAGES if re.search(pattern, dso)), "other")
        shares[stage] = shares.get(stage, 0.0) + percent
    return shares, samples / rate


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
        f"{cpu:.1f} CPU seconds sampled; grouped by the library each sample fell in.",
        "",
        "| stage (library) | share of CPU | CPU seconds |",
        "|---|---:|---:|",
    ]
    for stage, share in sorted(shares.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {stage} | {share:.1f} % | {cpu * share / 100:.1f} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "profile.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
