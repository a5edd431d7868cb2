"""`rsbatch-worker`: process one cell. The container's entrypoint and the local backend's
subprocess run exactly this command.

    rsbatch-worker run CELL          CELL: a JSON file, an s3:// URI, '-' for stdin, or the JSON
    rsbatch-worker                   the seed's mode: env files, date, output_bucket, region_name
    rsbatch-worker reduce UNIT       make one reduce unit (a per-date mosaic, a period composite)
    rsbatch-worker check FILE.tif    validate a Cloud-Optimized GeoTIFF's layout

SIGTERM stops a cell cleanly (scratch files removed, nothing recorded: whoever stopped it
records why; exit 143). Started by the local backend ($RSBATCH_SUPERVISOR_PID set), the
worker stops itself when its supervisor dies. Test hook: RSBATCH_WORKER_PAUSE=<point>:<dir>
pauses a cell at a named point (see `process.pause_point`).

The task log is named by --task-log or $RSBATCH_TASK_LOG (sqlite:///path or
dynamodb://task-log?region=…); default: the local SQLite log, or in the seed's mode the
DynamoDB table `task-log` of `region_name`. Exit codes: 0 success, 1 failure that a retry
may fix, 2 bad input (retrying cannot help), 3 cancelled, 4 a reduce unit with nothing to
read (every input failed or was skipped).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import warnings
from typing import Any

from qgis_rsbatch.core.contract import Cell, ReduceUnit, Status
from qgis_rsbatch.core.errors import InvalidInput, RsbatchError, Terminated
from qgis_rsbatch.core.processes import watch_parent
from qgis_rsbatch.core.tasklog import open_task_log

log = logging.getLogger("rsbatch.worker")


def _read_s3_text(uri: str) -> str:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri[len("s3://"):].partition("/")
    try:
        return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except (BotoCoreError, ClientError) as exc:
        raise InvalidInput(f"cannot read cell {uri}: {exc}") from exc


def _load_cell(spec: str) -> Cell:
    return Cell.from_dict(_load_json(spec, "cell"))


def _load_unit(spec: str) -> ReduceUnit:
    return ReduceUnit.from_dict(_load_json(spec, "reduce unit"))


def _load_json(spec: str, what: str) -> Any:
    if spec == "-":
        text = sys.stdin.read()
    elif spec.lstrip().startswith("{"):
        text = spec
    elif spec.startswith("s3://"):
        text = _read_s3_text(spec)
    else:
        try:
            with open(spec, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise InvalidInput(f"cannot read {what} file {spec}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from exc


def _progress(cell_id: str, quiet: bool) -> Any:
    last = [-1]

    def report(fraction: float, message: str) -> None:
        percent = int(fraction * 100)
        if not quiet and (percent >= last[0] + 10 or fraction >= 1.0):
            last[0] = percent
            log.info("%s %3d%% %s", cell_id, percent, message)

    return report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsbatch-worker",
        description="Process one Sentinel-2 cell (tile, date) into RGB/NDVI COGs.",
    )
    parser.add_argument("--task-log", default=os.environ.get("RSBATCH_TASK_LOG"),
                        help="sqlite:///path or dynamodb://table?region=… (env RSBATCH_TASK_LOG)")
    parser.add_argument("--no-task-log", action="store_true", help="do not record status")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="process one cell of the contract")
    run.add_argument("cell", nargs="?", default=os.environ.get("RSBATCH_CELL"),
                     help="cell JSON file, '-' for stdin, or inline JSON (env RSBATCH_CELL)")
    reduce = sub.add_parser("reduce", help="make one reduce unit (a mosaic or a composite)")
    reduce.add_argument("unit", nargs="?", default=os.environ.get("RSBATCH_UNIT"),
                        help="unit JSON file, '-' for stdin, or inline JSON (env RSBATCH_UNIT)")
    check = sub.add_parser("check", help="validate a Cloud-Optimized GeoTIFF")
    check.add_argument("path")
    return parser


def tune_allocator() -> None:
    """Keep large freed blocks in the heap (glibc only; a no-op elsewhere).

    Every strip allocates and frees numpy temporaries of tens of MB. By default glibc maps
    each from the kernel and unmaps it on free, so every strip pays page faults on fresh
    pages: measured, a third of the worker's CPU time went to the kernel. Raising the mmap
    and trim thresholds lets the same memory be reused; peak memory does not change. The
    strips are read and the products made in threads, and glibc gives each thread an arena
    of its own whose heaps hold 64 MB at most, so a thread's larger arrays were still mapped
    afresh: one arena for the whole process lets every thread reuse what another freed (the
    allocations are few and large, so sharing its lock costs nothing measurable).
    Must run before the first thread starts.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-8, 1)           # M_ARENA_MAX
        libc.mallopt(-3, 256 << 20)   # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1024 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def quiet_system_pyopenssl() -> None:
    """Keep Debian's pyOpenSSL from opening every cell's log with a DSA deprecation warning.

    In a venv with system site-packages, botocore imports Debian's urllib3, whose pyOpenSSL
    support imports Debian's pyOpenSSL; with a newer cryptography that warns at import and
    then fails, and botocore falls back to Python's own ssl. Only that category, raised
    from pyOpenSSL's own modules, is silenced.
    """
    try:
        from cryptography.utils import CryptographyDeprecationWarning
    except ImportError:  # no cryptography (the worker image): nothing to warn
        return
    warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning,
                            module=r"OpenSSL(\.|$)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tune_allocator()
    quiet_system_pyopenssl()
    # our own progress at INFO; libraries (botocore, rasterio's GDAL echo) only when they warn
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("rsbatch").setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        return _dispatch(args)
    except Terminated:
        print("rsbatch-worker: stopped by SIGTERM; its scratch files were removed",
              file=sys.stderr)
        return 128 + signal.SIGTERM
    except RsbatchError as exc:
        print(f"rsbatch-worker: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rsbatch-worker: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so in one line, keep the traceback for the log
        log.debug("traceback", exc_info=True)
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(f"rsbatch-worker: internal error ({type(exc).__name__}: {exc}); please report it",
              file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "check":
        return _check(args.path)
    stop_on_sigterm()
    watch_parent()
    return _reduce(args) if args.command == "reduce" else _run(args)


def stop_on_sigterm() -> None:
    """SIGTERM (cancel, or the kernel telling us our supervisor died) unwinds the cell like
    an exception, so its writers remove their scratch files; a second SIGTERM during that
    clean-up is ignored (SIGKILL still ends us)."""
    def stop(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)


def _check(path: str) -> int:
    """The report as JSON on stdout; when invalid, also one line on stderr and exit code 1."""
    from .cogcheck import validate_cog

    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "does not exist"
        raise InvalidInput(f"{path} {what}: give a GeoTIFF file to check")
    report = validate_cog(path, decode=True)
    print(json.dumps({"path": path, "valid": report.valid, "errors": report.errors,
                      "warnings": report.warnings, "blocksize": report.blocksize,
                      "overviews": report.overviews}, indent=1))
    if not report.valid:
        print(f"rsbatch-worker: {path} is not a valid COG: {report.errors[0]}", file=sys.stderr)
        return 1
    return 0


def _reduce(args: argparse.Namespace) -> int:
    from .reduce import process_unit

    if not args.unit:
        raise InvalidInput("no unit given: rsbatch-worker reduce UNIT.json (or set RSBATCH_UNIT)")
    unit = _load_unit(args.unit)
    task_log = None if args.no_task_log else open_task_log(args.task_log)
    result = process_unit(unit, task_log=task_log, progress=_progress(unit.unit_id, args.quiet))
    if result.status is Status.CANCELLED:
        print(f"rsbatch-worker: {result.error}", file=sys.stderr)
        return 3
    print(json.dumps({"unit_id": unit.unit_id, "status": result.status.value,
                      "outputs": result.outputs, "warnings": result.warnings,
                      "lacking_inputs": result.lacking, "skipped": result.skipped}))
    return 0


def _run(args: argparse.Namespace) -> int:
    from .process import process_cell

    seed = None
    region = None
    if args.command == "run":
        if not args.cell:
            raise InvalidInput("no cell given: rsbatch-worker run CELL.json (or set RSBATCH_CELL)")
        cell = _load_cell(args.cell)
        task_log_uri = args.task_log
    elif os.environ.get("files"):
        from .seedmode import cell_from_env

        region = os.environ.get("region_name")
        cell, seed, how = cell_from_env(os.environ)
        log.info("seed input %s → cell %s of job %s; offset %g (%s)", seed["files"],
                 cell.cell_id, cell.job_id, cell.offset, how)
        task_log_uri = args.task_log or f"dynamodb://task-log?region={region or ''}"
    else:
        _parser().print_usage(sys.stderr)
        raise InvalidInput("nothing to do: give `run CELL.json`, or set the seed's environment "
                           "variables files, date, output_bucket, region_name")
    task_log = None if args.no_task_log else open_task_log(task_log_uri)
    result = process_cell(cell, task_log=task_log, seed=seed, region=region,
                          progress=_progress(cell.cell_id, args.quiet))
    if result.status is Status.CANCELLED:
        print(f"rsbatch-worker: {result.error}", file=sys.stderr)
        return 3
    for warning in result.warnings:
        log.warning("%s: %s", cell.cell_id, warning)
    done = "already complete" if result.skipped else f"done in {result.seconds:.1f} s"
    if result.status is Status.SKIPPED:
        done = f"skipped: {result.error}"
    print(json.dumps({"cell_id": cell.cell_id, "status": result.status.value,
                      "outputs": result.outputs, "warnings": result.warnings,
                      "skipped": result.skipped, "reason": result.error,
                      "aoi_masked_pct": result.aoi_masked_pct}))
    log.info("%s %s", cell.cell_id, done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
