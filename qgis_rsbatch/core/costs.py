"""Every number a cost figure is made of, in one place: measured ones and AWS's prices.

`estimate()` (the CLI's --dry-run, the dock) and infra/README.md's cost table
(`make cost-table`, infra/cost_table.py) are both computed from this module, and tests hold
the README and bench/results/worker.json to it, so the three cannot drift apart again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: the worker on a full 10980 × 10980 tile from local files (`make bench`,
#: bench/results/worker.json): wall seconds per measured product set, both vCPUs busy
WORKER_BENCH: dict[str, Any] = {
    "seconds": {("rgb", "ndvi"): 7.79, ("ndvi",): 4.12, ("rgb",): 5.56},
    "vcpus": 2,
    "source": "bench/results/worker.md, 2026-12-07 00:45 UTC, 2 vCPUs",
}
#: a cell's fixed cost whatever its window: process start, imports, metadata reads (s)
START_UP_SECONDS = 2.0
#: on AWS Batch the bands come over the network (~650 MB of COGs per full tile in-region,
#: mostly overlapped with compute by the read-ahead): vCPU-seconds a full tile adds to the
#: local benchmark's (14.7 vCPU-s for RGB + NDVI in December 2026)
AWS_NETWORK_VCPU_SECONDS = 16.6
#: instance start-up, the idle tail of a scaling-down environment, Spot retries
AWS_OVERHEAD = 0.30
#: a typical Spot price per vCPU-hour of c6i/m6i `large` (≈ 35 % of On-Demand's $0.0425)
DEFAULT_SPOT_PRICE = 0.015
ON_DEMAND_PRICE = 0.0425
#: Step Functions standard workflow: $0.025 per 1,000 state transitions, ~6 per cell
STEP_FUNCTIONS_PER_TRANSITION = 0.025 / 1000
TRANSITIONS_PER_CELL = 6
ORCHESTRATION_DOLLARS_PER_CELL = TRANSITIONS_PER_CELL * STEP_FUNCTIONS_PER_TRANSITION
#: S3 Standard, us-east-1, per GB-month
S3_DOLLARS_PER_GB_MONTH = 0.023


def full_tile_seconds(products: Iterable[str],
                      own_seconds: Mapping[str, float] | None = None) -> float:
    """Wall seconds of the worker on a full tile: the measured set, else the products' sum."""
    key = tuple(products)
    table: Mapping[tuple[str, ...], float] = WORKER_BENCH["seconds"]
    if key in table:
        return table[key]
    if own_seconds is not None:
        return sum(own_seconds[p] for p in key)
    return table[("rgb", "ndvi")]


def cell_vcpu_seconds(share: float, seconds_full_tile: float, *, aws: bool) -> float:
    """vCPU-seconds of one cell reading `share` of a tile (AWS adds the network reads)."""
    local = (START_UP_SECONDS + share * seconds_full_tile) * WORKER_BENCH["vcpus"]
    return local + (share * AWS_NETWORK_VCPU_SECONDS if aws else 0.0)


def aws_dollars(vcpu_hours: float, cells: int, spot_price: float = DEFAULT_SPOT_PRICE
                ) -> dict[str, float]:
    """A job's AWS bill before storage: compute, overheads, orchestration, total."""
    compute = vcpu_hours * spot_price
    overhead = compute * AWS_OVERHEAD
    orchestration = cells * ORCHESTRATION_DOLLARS_PER_CELL
    return {"compute": compute, "overhead": overhead, "orchestration": orchestration,
            "total": compute + overhead + orchestration}
