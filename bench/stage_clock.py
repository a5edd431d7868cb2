"""The worker's own stages in CPU time: compute, cloud mask, statistics, overviews …

    python -m bench.stage_clock SCENE_DIR OUT_DIR PRODUCTS

runs the worker (as bench.variants' "ours") with a clock on each of its stage functions and
prints one JSON line: stage → CPU seconds, plus "_process", the CPU of every thread. Each
clock is the calling thread's CPU time, exclusive of the clocked stages it calls; GDAL's own
threads (decoding the inputs, compressing the outputs) are in none of them, and show as the
rest of "_process". perf (profile_worker.py) sees every thread but names libraries, not the
worker's stages; this names the stages. The issue's question: where do the CPU seconds go.
"""

from __future__ import annotations

import functools
import importlib
import json
import resource
import sys
import threading
import time
from collections import defaultdict
from typing import Any

#: (module[:class], function, stage): the functions clocked, and the stage each belongs to
CLOCKED = (
    ("worker.compute", "compute", "compute the products"),
    ("worker.compute", "cloud_mask", "cloud mask: SCL classes, upsampling, flags"),
    ("worker.reader", "upsampled", "cloud mask: SCL classes, upsampling, flags"),
    ("worker.cloudflags", "flags", "cloud mask: SCL classes, upsampling, flags"),
    ("worker.cog:_Stats", "add", "band and AOI statistics"),
    ("worker.aoistats:IndexStats", "add", "band and AOI statistics"),
    ("worker.kernels", "halve_pixels", "overviews: 2 × 2 sums and means"),
    ("worker.kernels", "halve_sums", "overviews: 2 × 2 sums and means"),
    ("worker.cog:CogWriter", "_feed_nearest", "overviews: 2 × 2 sums and means"),
    ("worker.tiles:TileEncoder", "_encode",
     "cut, predict and compress the tiles (the encoder's pool threads)"),
    ("worker.tiles:TileEncoder", "write", "hand strips to the tile encoder, tiles to disk"),
    ("worker.tiles:TileEncoder", "_drain_one", "hand strips to the tile encoder, tiles to disk"),
    ("worker.reader:BandSet", "_read", "read calls (decoding is GDAL's threads)"),
    ("worker.tiff", "assemble", "assemble the COG"),
    ("worker.process", "validate_cog", "check the COG"),
)

_totals: dict[str, float] = defaultdict(float)
_lock = threading.Lock()
_local = threading.local()


def _clocked(function: Any, stage: str) -> Any:
    @functools.wraps(function)
    def clocked(*args: Any, **kwargs: Any) -> Any:
        stack = _local.__dict__.setdefault("stack", [])
        stack.append(0.0)  # the CPU of clocked stages called from here
        start = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            spent = time.thread_time() - start
            inner = stack.pop()
            with _lock:
                _totals[stage] += spent - inner
            if stack:
                stack[-1] += spent

    return clocked


def install() -> None:
    """Put a clock on every function of CLOCKED."""
    for where, name, stage in CLOCKED:
        module_name, _, class_name = where.partition(":")
        owner: Any = importlib.import_module(module_name)
        if class_name:
            owner = getattr(owner, class_name)
        setattr(owner, name, _clocked(getattr(owner, name), stage))


def main(argv: list[str] | None = None) -> None:
    scene, out, products = (argv or sys.argv[1:])[:3]
    install()
    from .variants import ours

    ours(scene, out, products)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({**_totals, "_process": usage.ru_utime + usage.ru_stime}))


if __name__ == "__main__":
    main()
