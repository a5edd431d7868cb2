"""The local backend's throughput: N cells with all cores vs one after another.

The same sample job (generated scenes, `worker.samples.write_sample_catalog`) runs through
`LocalBackend` with `workers=1` and with `workers=cores`; the table gives the wall time of
each and the ratio. Written to bench/results/backend.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))


def run(crop: int) -> list[dict]:
    from qgis_rsbatch.core.backends.local import LocalBackend
    from qgis_rsbatch.core.planning import JobRequest, plan
    from worker.samples import write_sample_catalog

    work = tempfile.mkdtemp(prefix="rsbatch-backend-bench-")
    try:
        sample = write_sample_catalog(os.path.join(work, "sample"), crop=crop)
        rows = []
        cores = os.cpu_count() or 1
        for workers in sorted({1, cores}):
            request = JobRequest(aoi=sample["aoi"], start=sample["start"], end=sample["end"],
                                 output=os.path.join(work, f"out-{workers}"),
                                 catalog=sample["catalog"], clip=False)
            job = plan(request).job
            assert job is not None
            backend = LocalBackend(task_log_path=os.path.join(work, "log.sqlite"),
                                   workers=workers)
            started = time.perf_counter()
            status = backend.submit(job, wait=True)
            seconds = time.perf_counter() - started
            if not status.succeeded:
                raise SystemExit(f"the benchmark job failed: {status.counts}")
            rows.append({"workers": workers, "cells": len(job.cells), "seconds": seconds})
            print(f"  {workers} worker(s): {len(job.cells)} cells in {seconds:.1f} s", flush=True)
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--crop", type=int, default=3000, help="scene size, 10 m pixels")
    args = parser.parse_args(argv)
    print("local backend throughput:", flush=True)
    rows = run(args.crop)
    base = rows[0]["seconds"]
    lines = [
        f"# Local backend throughput — {rows[0]['cells']} cells of {args.crop} × {args.crop} px",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores; "
        "RGB + NDVI of whole sample scenes, each cell a worker process.",
        "",
        "| workers | cells | seconds | cells/min | speed-up vs one at a time |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['workers']} | {row['cells']} | {row['seconds']:.1f} | "
                     f"{60 * row['cells'] / row['seconds']:.1f} | {base / row['seconds']:.2f}× |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "backend.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
