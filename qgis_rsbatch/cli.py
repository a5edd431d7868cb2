"""`rsbatch`: the command line over the core — tiles, scenes, jobs on either backend.

    rsbatch tiles  --aoi AOI [--aoi-crs EPSG]
    rsbatch search --aoi AOI --start D --end D [--max-cloud N] [--catalog URL_OR_PATH]
    rsbatch run    --aoi AOI --start D --end D [--max-cloud N] [--products ndvi,ndmi,evi]
                   [--catalog …] [--backend local|aws] [--out DIR_OR_S3] [--workers N]
                   [--no-cloud-mask] [--max-aoi-cloud PCT] [--dry-run]
                   [--no-mosaic] [--mosaic-crs EPSG:…] [--composite none|median]
                   [--composite-period all|month|Nd]
    rsbatch status JOB_ID [--json]     rsbatch cancel JOB_ID
    rsbatch resume JOB_ID | OUT/JOB_ID   (a local job's folder: also after its task log was lost)
    rsbatch jobs       rsbatch stats JOB_ID [--csv FILE] [--json]

A job's cells are followed by its reduce units: per date and product a mosaic of the tiles
(unless --no-mosaic), per period a median composite (--composite median). Status tables and
counts list both.

Exit codes: 0 every cell and unit succeeded (or was SKIPPED), 1 some failed, 2 bad
input (an AOI or a date range with no scene is bad input). Errors are one line, not a
traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from .core import aoi as aoi_mod
from .core import products
from .core.contract import Status
from .core.errors import InvalidInput, RsbatchError, Terminated
from .core.tasklog.schema import is_unit_record, listing_order

DEFAULT_OUTPUT = "rsbatch-output"
#: options whose value may begin with a minus sign: a bbox west of Greenwich or south of
#: the equator, typed the way users type it (`--aoi -74.1,40.6,-73.9,40.8`)
_SIGNED_VALUE_OPTIONS = ("--aoi",)
_STARTS_NEGATIVE = re.compile(r"^-\.?\d")


# --- arguments -------------------------------------------------------------------------------

def _aoi_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--aoi", required=True,
                        help="WKT, GeoJSON (text or file: geometry, Feature, FeatureCollection) "
                             "or a bbox minx,miny,maxx,maxy")
    parser.add_argument("--aoi-crs", default=None,
                        help="CRS of the AOI when not EPSG:4326 (e.g. EPSG:32632)")


def _search_arguments(parser: argparse.ArgumentParser) -> None:
    _aoi_arguments(parser)
    parser.add_argument("--start", required=True, help="first date, YYYY-MM-DD (UTC)")
    parser.add_argument("--end", required=True, help="last date, YYYY-MM-DD (UTC, included)")
    parser.add_argument("--max-cloud", type=float, default=None, help="cloud cover limit, %%")
    parser.add_argument("--catalog", default=None,
                        help="STAC API URL, static catalog.json or ItemCollection file "
                             "(default: Earth Search v1)")


def _backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("local", "aws"), default="local")
    parser.add_argument("--workers", type=_positive_int, default=None,
                        help="cells at once on the local backend (default: the cores)")
    parser.add_argument("--stack", default="rsbatch", help="AWS stack name (aws backend)")
    parser.add_argument("--region", default=None, help="AWS region (aws backend)")
    parser.add_argument("--profile", default=None, help="AWS profile (aws backend)")
    parser.add_argument("--detach", action="store_true",
                        help="start the job and return; follow it with `rsbatch status`")


def _positive_int(text: str) -> int:
    """A count of 1 or more (argparse turns the ValueError into exit code 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def attach_signed_values(argv: Sequence[str]) -> list[str]:
    """`--aoi -74.1,…` → `--aoi=-74.1,…`.

    argparse takes any word starting with '-' for an option unless the whole word is one
    number, so a bbox whose first number is negative would be refused ("expected one
    argument"). None of our options looks like a number, so attaching is never ambiguous.
    """
    out = list(argv)
    index = 0
    while index < len(out) - 1:
        if out[index] in _SIGNED_VALUE_OPTIONS and _STARTS_NEGATIVE.match(out[index + 1]):
            out[index:index + 2] = [f"{out[index]}={out[index + 1]}"]
        index += 1
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsbatch",
        description="Sentinel-2 RGB and spectral indices (NDVI, NDWI, NDMI, NBR, EVI, SAVI) "
                    "for an area of interest, locally or on AWS Batch.")
    sub = parser.add_subparsers(dest="command", required=True)

    tiles = sub.add_parser("tiles", help="the Sentinel-2 tiles an AOI overlaps (JSON)")
    _aoi_arguments(tiles)

    search = sub.add_parser("search", help="the scenes of those tiles in a date range (JSON)")
    _search_arguments(search)

    run = sub.add_parser("run", help="plan and run a job")
    _search_arguments(run)
    run.add_argument("--products", default=",".join(products.DEFAULT_PRODUCTS),
                     help=f"comma-separated, some of: {', '.join(products.NAMES)} "
                          f"(default: {','.join(products.DEFAULT_PRODUCTS)})")
    run.add_argument("--out", default=None,
                     help=f"output folder or s3:// prefix (default: ./{DEFAULT_OUTPUT}, or the "
                          "stack's bucket on aws)")
    run.add_argument("--no-cloud-mask", action="store_true", help="keep clouds in the indices")
    run.add_argument("--max-aoi-cloud", type=float, default=None, metavar="PCT",
                     help="skip a cell (SKIPPED, no output) when more than PCT %% of the AOI "
                          "is cloud, shadow or no data in its scene classification")
    run.add_argument("--no-clip", action="store_true", help="whole tiles, not clipped to the AOI")
    run.add_argument("--dry-run", action="store_true", help="print the plan and estimate only")
    run.add_argument("--no-mosaic", action="store_true",
                     help="no per-date mosaics: only the per-tile outputs")
    run.add_argument("--mosaic-crs", default=None, metavar="EPSG:CODE",
                     help="the mosaics' CRS (default: the UTM zone holding most of the AOI)")
    run.add_argument("--composite", choices=("none", "median"), default="none",
                     help="per period and product, the per-pixel median of the valid dates")
    run.add_argument("--composite-period", default="all", metavar="all|month|Nd",
                     help="the composites' periods: the whole range, calendar months, or "
                          "windows of N days (e.g. 16d)")
    run.add_argument("--spot-price", type=float, default=None,
                     help="$/vCPU-hour for the aws estimate")
    run.add_argument("--exclude", default="",
                     help="comma-separated cell ids (TILE_DATE) or item ids to leave out")
    _backend_arguments(run)

    status = sub.add_parser("status", help="a job's cells")
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true", help="machine-readable")
    cancel = sub.add_parser("cancel", help="stop a job: unfinished cells become CANCELLED")
    cancel.add_argument("job_id")
    resume = sub.add_parser("resume", help="run again the cells that did not succeed")
    resume.add_argument("job_id", metavar="JOB_ID_OR_FOLDER",
                        help="a job id, or a local job's folder (<out>/<job_id>): that also "
                             "rebuilds its records when the task log was lost")
    resume.add_argument("--detach", action="store_true")
    sub.add_parser("jobs", help="jobs recorded on this machine, newest first")
    stats = sub.add_parser("stats", help="each index's statistics over the AOI per date, on "
                                         "its mosaic (else per tile): valid fraction, mean, "
                                         "median, std, p10, p90")
    stats.add_argument("job_id")
    stats.add_argument("--csv", metavar="FILE", help="also write the rows as CSV to FILE")
    stats.add_argument("--json", action="store_true", help="print JSON rows, not a table")
    logs = sub.add_parser("logs", help="a cell's worker log (a file, or its CloudWatch stream)")
    logs.add_argument("job_id")
    logs.add_argument("cell_id", help="TILE_DATE, e.g. 32TMT_2024-06-01")
    return parser


# --- helpers ---------------------------------------------------------------------------------

def _aoi(args: argparse.Namespace) -> dict:
    return aoi_mod.parse_aoi(args.aoi, args.aoi_crs)


def _print_json(data: Any, out: TextIO = sys.stdout) -> None:
    json.dump(data, out, indent=1, default=str)
    out.write("\n")


def _local():
    from .core.backends.local import LocalBackend

    return LocalBackend()


def _backend(name: str, args: argparse.Namespace):
    from .core.backends import get_backend

    if name == "local":
        return get_backend("local", workers=getattr(args, "workers", None))
    return get_backend("aws", stack=args.stack, region=args.region, profile=args.profile)


def _backend_for_job(job_id: str):
    """The backend that ran a job, from this machine's job registry."""
    from .core.backends import get_backend

    found = _local().log.load_job(job_id)
    if found is None:
        raise InvalidInput(f"no job {job_id} on this machine (see `rsbatch jobs`; a local job "
                           "whose task log was lost: `rsbatch resume <out>/<job_id>`)")
    _, backend, handle = found
    if backend == "local":
        return get_backend("local", workers=handle.get("workers"))
    return get_backend("aws", stack=handle.get("stack"), region=handle.get("region"),
                       profile=handle.get("profile"))


def _exit_code(status: Any) -> int:
    if not status.finished:
        return 0
    return 0 if status.succeeded else 1


class _ProgressBar:
    """One line on stderr, redrawn in place on a terminal, every few seconds otherwise."""

    def __init__(self, total: int, out: TextIO = sys.stderr, what: str = "cells") -> None:
        self.total, self.out, self.what = total, out, what
        self.tty = out.isatty()
        self.last = 0.0
        self.shown = ""
        self.failed_seen: set[str] = set()

    def __call__(self, records: list) -> None:
        counts = {status: 0 for status in Status}
        for record in records:
            counts[record.status] += 1
            if record.status is Status.FAILED and record.cell_id not in self.failed_seen:
                self.failed_seen.add(record.cell_id)
                self._line(f"  {record.cell_id} FAILED: {record.error}\n")
        done = sum(n for status, n in counts.items() if status.finished)
        width = 30
        filled = int(width * done / max(self.total, 1))
        text = (f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {self.what}  "
                f"{counts[Status.RUNNING]} running  {counts[Status.SUCCEEDED]} succeeded  "
                f"{counts[Status.FAILED]} failed")
        if counts[Status.SKIPPED]:
            text += f"  {counts[Status.SKIPPED]} skipped"
        now = time.monotonic()
        if text == self.shown:
            return
        self.shown = text
        if self.tty:
            self.out.write("\r" + text)
            if done == self.total:
                self.out.write("\n")
            self.out.flush()
        elif done == self.total or now - self.last > 5:
            self._line(text + "\n")
            self.last = now

    def _line(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\033[K")
        self.out.write(text)
        self.out.flush()


def status_table(status: Any) -> str:
    """The job's cells as an aligned text table."""
    rows = [("CELL OR UNIT", "STATUS", "TRIES", "UPDATED", "AOI MASKED", "OUTPUTS / REASON")]
    for record in sorted(status.records, key=listing_order):
        detail = record.error if record.error else ", ".join(
            f"{product}: {uri}" for product, uri in sorted(record.outputs.items()))
        if record.warnings:
            detail += f"  (warning: {'; '.join(record.warnings)})"
        masked = record.aoi_masked_pct
        rows.append((record.cell_id, record.status.value, str(record.attempts),
                     record.updated_at[:19].replace("T", " "),
                     f"{masked:.1f} %" if masked is not None else "", detail))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths)) + "  " + row[5]
             for row in rows]
    counts = ", ".join(f"{n} {s.lower()}" for s, n in status.counts.items() if n)
    units = sum(1 for record in status.records if is_unit_record(record))
    if units:
        counts += f" ({len(status.records) - units} cell(s), {units} mosaic/composite unit(s))"
    lines.append(f"job {status.job_id} ({status.backend}): {counts}")
    lines.extend(f"note: {note}" for note in status.notes)
    return "\n".join(lines)


# --- commands --------------------------------------------------------------------------------

def cmd_tiles(args: argparse.Namespace) -> int:
    from .core.grid import tiles_for_aoi

    _print_json([tile.to_dict() for tile in tiles_for_aoi(_aoi(args))])
    return 0


def _request(args: argparse.Namespace, output: str):
    from .core.planning import JobRequest

    chosen = products.parse_products(getattr(args, "products", None)
                                     or ",".join(products.DEFAULT_PRODUCTS), "--products")
    return JobRequest(aoi=_aoi(args), start=args.start, end=args.end, output=output,
                      products=chosen, max_cloud=args.max_cloud, catalog=args.catalog,
                      cloud_mask=not getattr(args, "no_cloud_mask", False),
                      clip=not getattr(args, "no_clip", False),
                      max_aoi_cloud=getattr(args, "max_aoi_cloud", None),
                      mosaic=not getattr(args, "no_mosaic", False),
                      mosaic_crs=getattr(args, "mosaic_crs", None),
                      composite=getattr(args, "composite", None),
                      composite_period=getattr(args, "composite_period", None) or "all")


def cmd_search(args: argparse.Namespace) -> int:
    from .core.planning import find_scenes

    found = find_scenes(_request(args, os.getcwd()))
    for warning in found.warnings:
        print(f"rsbatch: warning: {warning}", file=sys.stderr)
    _print_json([scene.to_dict() for scene in found.scenes])
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .core.estimate import DEFAULT_SPOT_PRICE, estimate
    from .core.planning import plan

    backend = _backend(args.backend, args)
    output = args.out or (backend.default_output() if args.backend == "aws"
                          else DEFAULT_OUTPUT)
    exclude = [item.strip() for item in args.exclude.split(",") if item.strip()]
    result = plan(_request(args, output), exclude=exclude)
    job = result.job
    if job is None:  # plan() always makes one; this keeps type checkers honest
        raise InvalidInput("the plan has no job")
    for warning in result.warnings:
        print(f"rsbatch: warning: {warning}", file=sys.stderr)
    if args.dry_run:  # the estimate is for deciding; a run does not wait for it
        guess = estimate(job, backend=args.backend, workers=args.workers,
                         spot_price=args.spot_price or DEFAULT_SPOT_PRICE)
        _print_json({"job_id": job.job_id, "backend": args.backend,
                     "tiles": [t.tile for t in result.tiles],
                     "cells": [{"cell_id": c.cell_id, "scene": c.scene_id, "offset": c.offset,
                                "offset_check": c.offset_check} for c in job.cells],
                     "units": [{"unit_id": u.unit_id, "kind": u.kind, "inputs": list(u.inputs)}
                               for u in job.units],
                     "estimate": guess.to_dict(), "summary": guess.summary()})
        return 0
    print(job.job_id)
    units = f" and {len(job.units)} mosaic/composite unit(s)" if job.units else ""
    print(f"rsbatch: {len(job.cells)} cell(s) on {len({c.tile for c in job.cells})} tile(s)"
          f"{units} (`--dry-run` estimates time and cost)", file=sys.stderr)
    print(f"rsbatch: outputs under {job.cells[0].output}/{job.job_id}/", file=sys.stderr)
    if args.detach:
        backend.submit(job)
        print(f"rsbatch: started; follow it with `rsbatch status {job.job_id}`", file=sys.stderr)
        return 0
    what = "cells and units" if job.units else "cells"
    status = backend.submit(job, wait=True, progress=_ProgressBar(len(job.tasks), what=what))
    if args.backend == "aws":
        status = backend.wait(job.job_id, progress=_ProgressBar(len(job.cells)), interval=5)
    print(status_table(status))
    return _exit_code(status)


def cmd_status(args: argparse.Namespace) -> int:
    status = _backend_for_job(args.job_id).status(args.job_id)
    if args.json:
        _print_json(status.to_dict())
    else:
        print(status_table(status))
    return _exit_code(status)


def cmd_cancel(args: argparse.Namespace) -> int:
    status = _backend_for_job(args.job_id).cancel(args.job_id)
    print(status_table(status))
    return 0


def _is_job_folder(arg: str) -> bool:
    from .core.backends.jobfolder import JOB_FILE

    return os.path.isfile(os.path.join(arg, JOB_FILE)) or (
        os.path.basename(arg) == JOB_FILE and os.path.isfile(arg)) or os.sep in arg


def _adopt(path: str) -> tuple[Any, str]:
    """The local backend with a job folder's job in its task log (rebuilt if it was lost)."""
    from .core.backends.jobfolder import read_job
    from .core.backends.local import LocalBackend
    from .core.errors import TaskLogUnavailable
    from .core.tasklog import default_sqlite_path

    _, options = read_job(path)
    try:
        backend = LocalBackend(workers=options.get("workers"))
    except TaskLogUnavailable as exc:
        damaged = default_sqlite_path()
        if not os.path.exists(damaged):
            raise
        aside = f"{damaged}.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(damaged + suffix):
                os.replace(damaged + suffix, aside + suffix)
        print(f"rsbatch: warning: {exc}; it was moved to {aside} and a new one started",
              file=sys.stderr)
        backend = LocalBackend(workers=options.get("workers"))
    return backend, backend.adopt(path)


def cmd_resume(args: argparse.Namespace) -> int:
    if _is_job_folder(args.job_id):
        backend, job_id = _adopt(args.job_id)
    else:
        backend, job_id = _backend_for_job(args.job_id), args.job_id
    records = backend.status(job_id).records
    if args.detach:
        backend.resume(job_id)
        print(f"rsbatch: resumed; follow it with `rsbatch status {job_id}`", file=sys.stderr)
        return 0
    status = backend.resume(job_id, wait=True, progress=_ProgressBar(len(records)))
    if getattr(backend, "name", "") == "aws":
        status = backend.wait(job_id, progress=_ProgressBar(len(records)), interval=5)
    print(status_table(status))
    return _exit_code(status)


def cmd_jobs(args: argparse.Namespace) -> int:
    jobs = _local().jobs()
    if not jobs:
        print("no jobs yet")
        return 0
    for job in jobs:
        counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(job["counts"].items()))
        print(f"{job['job_id']}  {job['created'][:19].replace('T', ' ')}  {job['backend']:5}  "
              f"{counts}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """One row per cell and index product, by date: what the dock's time series draws."""
    from .core import timeseries

    records = _backend_for_job(args.job_id).status(args.job_id).records
    found = _local().log.load_job(args.job_id)
    products_of = {c.cell_id: c.products for c in found[0].cells} if found else {}
    rows = timeseries.stats_rows(records, products_of)
    if args.csv:
        timeseries.write_csv(rows, args.csv)
        print(f"rsbatch: {len(rows)} row(s) written to {args.csv}", file=sys.stderr)
    if args.json:
        _print_json(rows)
    elif rows:
        print(timeseries.table(rows))
    else:
        print(f"job {args.job_id} has no statistics yet (no cell has finished with an index)")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from .core.cell_logs import read_cell_log

    backend = _backend_for_job(args.job_id)
    found = _local().log.load_job(args.job_id)
    if found is None:  # _backend_for_job found it a moment ago
        raise InvalidInput(f"no job {args.job_id} on this machine (see `rsbatch jobs`)")
    sys.stdout.write(read_cell_log(backend, found[0], args.cell_id))
    return 0


COMMANDS = {"tiles": cmd_tiles, "search": cmd_search, "run": cmd_run, "status": cmd_status,
            "cancel": cmd_cancel, "resume": cmd_resume, "jobs": cmd_jobs, "stats": cmd_stats,
            "logs": cmd_logs}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(attach_signed_values(sys.argv[1:] if argv is None else argv))
    try:
        return COMMANDS[args.command](args)
    except RsbatchError as exc:
        print(f"rsbatch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\nrsbatch: interrupted; `rsbatch resume JOB_ID` continues a job", file=sys.stderr)
        return 130
    except Terminated:
        print("rsbatch: stopped by SIGTERM; `rsbatch resume JOB_ID` continues a job",
              file=sys.stderr)
        return 143
    except BrokenPipeError:  # `rsbatch tiles … | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
