"""`make demo`: the whole product on the embedded default, offline, in under a minute.

Generates a small sample catalog (Sentinel-2-like scenes of two overlapping tiles, 32TMT and
32TNT, on two dates, one of them cloudy), draws an AOI across both tiles, plans and runs
the job on the local backend exactly as `rsbatch run` does, prints the status table and
where the outputs are, and renders the result with QGIS to a PNG and a .qgz project.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_DATA_COMMAND = (
    "rsbatch run --aoi 'POLYGON((8.96 47.60, 9.17 47.60, 9.17 47.71, 8.96 47.71, 8.96 47.60))'"
    " --start 2024-06-01 --end 2024-06-30 --max-cloud 30 --out ./results"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo-output", help="folder for everything")
    parser.add_argument("--crop", type=int, default=1600,
                        help="size of each sample scene in 10 m pixels")
    parser.add_argument("--no-render", action="store_true", help="skip the QGIS rendering")
    args = parser.parse_args(argv)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    # the demo keeps its task log beside its outputs, not in the user's own
    os.environ["RSBATCH_HOME"] = os.path.join(out, "home")

    from worker.samples import write_sample_catalog

    started = time.monotonic()
    print(f"1. generating sample scenes in {out}/sample …", flush=True)
    sample = write_sample_catalog(os.path.join(out, "sample"), crop=args.crop)
    aoi_path = os.path.join(out, "aoi.geojson")
    with open(aoi_path, "w") as fh:
        json.dump({"type": "Feature", "properties": {"name": "demo AOI"},
                   "geometry": sample["aoi"]}, fh, indent=1)

    print("2. planning and running the job on the local backend …", flush=True)
    command = [sys.executable, "-m", "qgis_rsbatch.cli", "run", "--aoi", aoi_path,
               "--start", sample["start"], "--end", sample["end"],
               "--catalog", sample["catalog"], "--out", os.path.join(out, "results")]
    print("   $ rsbatch " + " ".join(command[3:]), flush=True)
    run = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    print(run.stdout, end="")
    if run.returncode != 0:
        print(f"the demo job did not fully succeed (exit code {run.returncode})")
        return run.returncode
    job_id = run.stdout.split()[0]

    if not args.no_render:
        print("3. rendering the result with QGIS …", flush=True)
        png = os.path.join(out, "demo.png")
        project = os.path.join(out, "demo.qgz")
        render = subprocess.run(
            [sys.executable, "-m", "qgis_rsbatch.render", job_id, "--png", png,
             "--project", project],
            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, check=False)
        if render.returncode == 0:
            print(f"   map: {png}\n   QGIS project: {project}")
        else:
            print("   rendering failed (is QGIS installed? `make setup` installs it)")
            return render.returncode

    print(f"\ndone in {time.monotonic() - started:.0f} s. Outputs: {out}/results/{job_id}/")
    print("These were generated sample scenes. The same on real Sentinel-2 data "
          "(Earth Search, no AWS account needed):")
    print(f"   {REAL_DATA_COMMAND}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
