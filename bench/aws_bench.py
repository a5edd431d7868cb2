"""The AWS stack at 10,000 and 30,000 cells, on moto: `python -m bench.aws_bench`.

Measures what stands between a user and a large job: the estimate (pure Python, before
anything is submitted), the plan Lambda's time and peak memory (the real handler, in a
child process of its own so its peak RSS is its own, against a moto server in another
process), the summary (projected Query), and ending every record (cancel, reconcile).
moto answers a request in about a millisecond on this machine, in-region DynamoDB in a few:
the table ends with arithmetic for AWS from the request counts measured here.
Writes bench/results/aws.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.grid_bench import GERMANY
from qgis_rsbatch.core.tasklog import schema

RESULTS = Path(__file__).resolve().parent / "results" / "aws.md"
BUCKET = "rsbatch-bench"
REGION = "us-east-1"
#: in-region latency of one conditional PutItem / Query page / BatchGetItem, seconds
#: (DynamoDB's single-digit-millisecond writes; a 1 MB Query page takes longer)
AWS_PUT_SECONDS = 0.006
AWS_QUERY_PAGE_SECONDS = 0.05
AWS_BATCH_GET_SECONDS = 0.02
#: the plan function as the template sizes it
PLAN_TIMEOUT_SECONDS = 300
PLAN_MEMORY_MB = 512


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(endpoint: str) -> dict[str, str]:
    return {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench", "RESULTS_BUCKET": BUCKET,
            "TASK_LOG_TABLE": schema.TABLE_NAME, "DISTRIBUTED_THRESHOLD": "40"}


def job_dict(job_id: str, cells: int) -> dict[str, Any]:
    """`cells` tile-dates over Germany's tiles, each cell clipped to Germany's outline."""
    from qgis_rsbatch.core import grid

    aoi = {"type": "Polygon", "coordinates": [GERMANY]}
    tiles = [t.tile for t in grid.tiles_for_aoi(aoi)]
    bands = {k: f"s3://sentinel-cogs/sentinel-s2-l2a-cogs/{k}.tif"
             for k in ("blue", "green", "red", "nir", "scl")}
    days = -(-cells // len(tiles))
    return {"job_id": job_id, "cells": [
        {"tile": tile, "date": (date(2020, 1, 1) + timedelta(days=d)).isoformat(),
         "bands": bands, "aoi": aoi, "output": f"s3://{BUCKET}/results"}
        for d in range(days) for tile in tiles][:cells]}


def _plan_child(job_uri: str) -> None:
    """Run in a child: plan the job through the real handler; print time and peak RSS."""
    from infra import handler

    start = time.perf_counter()
    result = handler.plan({"input": {"job_uri": job_uri}, "execution_name": "bench"})
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "count": result["count"],
                      "created": result["created"], "mode": result["mode"]}))


def run(sizes: Sequence[int]) -> dict[str, Any]:
    import boto3

    from qgis_rsbatch.core.contract import Job, Status
    from qgis_rsbatch.core.estimate import estimate
    from qgis_rsbatch.core.tasklog.dynamodb import DynamoTaskLog

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = _env(endpoint)
    os.environ.update(env)  # this process is the bench's own: point boto3 at the server
    rows: dict[str, Any] = {"plan": [], "estimate": [], "records": []}
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        boto3.client("dynamodb").create_table(TableName=schema.TABLE_NAME,
                                              **schema.table_shape())
        for size in sizes:
            job_id = f"bench-{size}"
            data = job_dict(job_id, size)
            start = time.perf_counter()
            job = Job.from_dict(data)
            parsed = time.perf_counter() - start
            start = time.perf_counter()
            guess = estimate(job, backend="aws")
            rows["estimate"].append({"cells": size, "parse_s": parsed,
                                     "estimate_s": time.perf_counter() - start,
                                     "summary": guess.summary()})
            key = f"_rsbatch/jobs/{job_id}/job.json"
            body = json.dumps(data).encode()
            boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
            done = subprocess.run([sys.executable, "-m", "bench.aws_bench", "--plan-child",
                                   f"s3://{BUCKET}/{key}"], env=env, capture_output=True,
                                  text=True, check=True)
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            measured.update(cells=size, job_mb=len(body) / 1e6)
            rows["plan"].append(measured)
            store = DynamoTaskLog(schema.TABLE_NAME, region=REGION)
            start = time.perf_counter()
            from infra.summary import summarize_job

            summary = summarize_job(store, job_id, planned=size)
            summarized = time.perf_counter() - start
            start = time.perf_counter()
            records = store.job_records(job_id)
            read = time.perf_counter() - start
            start = time.perf_counter()
            ended = store.end_many(records, Status.CANCELLED, "bench")
            rows["records"].append({"cells": size, "summary_s": summarized,
                                    "pending": summary["unfinished"], "read_all_s": read,
                                    "end_all_s": time.perf_counter() - start,
                                    "ended": len(ended)})
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows


def markdown(rows: dict[str, Any]) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# The AWS stack at scale (moto)", "",
             f"Run {now} on {os.cpu_count()} cores, `make bench` (bench/aws_bench.py); moto "
             "5.2.5 as a separate server process, the real handler in a child process.", "",
             "## The estimate (before anything is submitted)", "",
             "| cells | parse the job (s) | estimate (s) | says |", "|---:|---:|---:|---|"]
    lines += [f"| {r['cells']:,} | {r['parse_s']:.2f} | {r['estimate_s']:.2f} | "
              f"{r['summary']} |" for r in rows["estimate"]]
    lines += ["", "## The plan function (PENDING records + Map items)", "",
              "| cells | job JSON (MB) | on moto (s) | peak RSS (MB) | records created | map | "
              f"in-region estimate (s) | fits {PLAN_TIMEOUT_SECONDS} s / {PLAN_MEMORY_MB} MB |",
              "|---:|---:|---:|---:|---:|---|---:|---|"]
    from qgis_rsbatch.core.tasklog.dynamodb import _WRITERS

    parse = {r["cells"]: r["parse_s"] for r in rows["estimate"]}
    for r in rows["plan"]:
        # reading the job as measured here, the puts, and the job and items objects in S3
        aws = parse.get(r["cells"], 0.0) + r["cells"] * AWS_PUT_SECONDS / _WRITERS + 2.0
        fits = "yes" if aws < PLAN_TIMEOUT_SECONDS / 2 and r["peak_mb"] < PLAN_MEMORY_MB * 0.8 \
            else "no"
        lines.append(f"| {r['cells']:,} | {r['job_mb']:.1f} | {r['seconds']:.1f} | "
                     f"{r['peak_mb']:.0f} | {r['created']:,} | {r['mode'].lower()} | "
                     f"{aws:.0f} | {fits} |")
    lines += ["", f"In-region arithmetic: one conditional PutItem per cell at about "
              f"{AWS_PUT_SECONDS * 1000:.0f} ms, {_WRITERS} at a time "
              f"(`DynamoTaskLog.register`), spread over 16 index shards so no index partition "
              "takes more than ~1/16 of the writes (a partition takes ~1,000 writes/s), plus "
              "reading the job (as measured above) and about 2 s for the job and items "
              "objects in S3. Peak RSS is the whole child "
              "process (Python, boto3, the job, its items) measured with getrusage.", "",
              "## Reading and ending a job's records (summary, status, cancel, reconcile)", "",
              "| cells | summary on moto (s) | in-region (s) | read every record on moto (s) | "
              "end every record on moto (s) | in-region (s) |",
              "|---:|---:|---:|---:|---:|---:|"]
    for r in rows["records"]:
        # ~120 projected bytes a record, 1 MB Query pages over 16 shards in parallel; every
        # record unfinished here (the worst case) is re-read, 100 per BatchGetItem
        summary = (r["cells"] * 120 / 1e6 / 16 + 1) * AWS_QUERY_PAGE_SECONDS + \
            -(-r["pending"] // 100) * AWS_BATCH_GET_SECONDS
        end = r["cells"] * AWS_PUT_SECONDS / _WRITERS
        lines.append(f"| {r['cells']:,} | {r['summary_s']:.1f} | {summary:.0f} | "
                     f"{r['read_all_s']:.1f} | {r['end_all_s']:.1f} | {end:.0f} |")
    lines += ["", "moto serves one request at a time behind Python's GIL, about 1-15 ms each "
              "on this shared machine, so its seconds measure request counts more than "
              "speed; the in-region columns are the arithmetic above."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000", help="cells per job (comma list)")
    parser.add_argument("--plan-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plan_child:
        _plan_child(args.plan_child)
        return None
    rows = run([int(size) for size in args.sizes.split(",")])
    text = markdown(rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    return rows


if __name__ == "__main__":
    main()


def reduce_stage_figures(cells: int) -> dict[str, Any]:
    """The reduce stage's shape at `cells` cells over Germany (one date per 79 tiles), with
    per-date mosaics and one median composite per product: units per level, the largest
    inputs list (Batch dependsOn takes 20), the Map items' bytes against the 256 KiB payload,
    and state transitions of the chosen design (a Map per level) per task."""
    from infra import units as stages
    from qgis_rsbatch.core.contract import Job, unit_levels
    from qgis_rsbatch.core.reduce_plan import plan_reduce

    class _S3:  # counts what would be written
        def put_object(self, **kwargs: Any) -> None:
            pass

    job = Job.from_dict(job_dict("bench-reduce", cells))
    plan = plan_reduce(job, composite="median")
    job = Job(job.job_id, job.cells, job.params, job.created, plan.units)
    levels = unit_levels(job.units)
    rows = []
    for number, level in enumerate(levels, 1):
        items = [stages.worker_item(u, "dynamodb://task-log", _S3(), BUCKET, "w")
                 for u in level]
        rows.append({"level": number, "units": len(level),
                     "max_inputs": max(len(u.inputs) for u in level),
                     "items_kib": len(json.dumps(items)) / 1024})
    return {"cells": cells, "units": len(job.units), "levels": rows}
