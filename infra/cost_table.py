"""infra/README.md's cost section, computed from qgis_rsbatch.core.costs (`make cost-table`).

    python -m infra.cost_table           rewrite the section between its markers
    python -m infra.cost_table --check   exit 1 when the README differs from the constants

The 10,000-cell figures are what `estimate()` says of 10,000 full tiles (RGB + NDVI) on
the aws backend, so the README, the dock and `rsbatch run --dry-run` agree.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from qgis_rsbatch.core import costs

README = Path(__file__).resolve().parent / "README.md"
START = "<!-- cost-table:start (make cost-table writes this section) -->"
END = "<!-- cost-table:end -->"
#: measured output sizes of a full tile (bench/results/worker.md): RGB 514 MB, NDVI 398 MB
OUTPUT_GB_PER_TILE = 0.912


def per_cell() -> dict[str, float]:
    """A full RGB + NDVI tile on AWS Spot: vCPU-seconds and dollars per item."""
    seconds = costs.full_tile_seconds(("rgb", "ndvi"))
    vcpu_s = costs.cell_vcpu_seconds(1.0, seconds, aws=True)
    bill = costs.aws_dollars(vcpu_s / 3600, 1)
    return {"full_tile_s": seconds, "vcpu_s": vcpu_s, **bill}


def table(cells: int = 10_000) -> str:
    one = per_cell()
    vcpus = costs.WORKER_BENCH["vcpus"]
    job = costs.aws_dollars(one["vcpu_s"] * cells / 3600, cells)
    on_demand = one["vcpu_s"] * cells / 3600 * costs.ON_DEMAND_PRICE
    price = costs.DEFAULT_SPOT_PRICE
    return "\n".join([
        START,
        f"**Per tile-date on Spot** (a full 10980 × 10980 tile, RGB + NDVI). Compute comes "
        f"from the worker benchmark ({costs.WORKER_BENCH['source']}): **{one['full_tile_s']} s "
        f"on {vcpus} vCPUs** from local files, plus {costs.START_UP_SECONDS:g} s of start-up, "
        f"plus **{costs.AWS_NETWORK_VCPU_SECONDS:g} vCPU-s** for reading ~650 MB of COGs over "
        f"the network: **{one['vcpu_s']:.0f} vCPU-seconds**. Spot c6i/m6i `large` at about "
        f"**${price:g} per vCPU-hour** (≈ 35 % of On-Demand's ${costs.ON_DEMAND_PRICE:g}; "
        "check your region's Spot price history), us-east-1 list prices for the rest.",
        "",
        "| item | per tile-date |",
        "|---|---:|",
        f"| compute: {one['vcpu_s']:.0f} vCPU-s × ${price:g}/3600 | ${one['compute']:.5f} |",
        f"| instance start-up, idle tail, retries (+{costs.AWS_OVERHEAD:.0%}) | "
        f"${one['overhead']:.5f} |",
        f"| Step Functions: ~{costs.TRANSITIONS_PER_CELL} state transitions × $0.025/1000 | "
        f"${one['orchestration']:.5f} |",
        "| DynamoDB on-demand: ~4 writes + ~4 reads; Lambda, SNS, S3 requests | < $0.00002 |",
        f"| **total, before storage and input data** | **${one['total']:.5f}** |",
        f"| S3 Standard storage of the two COGs ({OUTPUT_GB_PER_TILE:.2f} GB measured) | "
        f"${OUTPUT_GB_PER_TILE * costs.S3_DOLLARS_PER_GB_MONTH:.3f} per month |",
        "",
        f"**A {cells:,}-cell job** of full tiles: {one['vcpu_s'] * cells / 3600:.0f} vCPU-h → "
        f"**${job['compute']:.2f}** of Spot compute, ${job['overhead']:.2f} of overheads, "
        f"${job['orchestration']:.2f} of Step Functions: **${job['total']:.2f} in all** "
        f"(`rsbatch run --dry-run --backend aws` says the same), versus ${on_demand:.2f} of "
        f"compute alone On-Demand. Storing its {OUTPUT_GB_PER_TILE * cells / 1000:.1f} TB of "
        f"outputs costs ≈ ${OUTPUT_GB_PER_TILE * cells * costs.S3_DOLLARS_PER_GB_MONTH:.0f} a "
        "month.",
        END,
    ])


def rewrite(text: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"{README} lacks the cost-table markers")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return head + table() + tail


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    new = rewrite(text)
    if args.check:
        if new != text:
            print("infra/README.md's cost table is stale: run `make cost-table`",
                  file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
