"""How long AOI → tiles takes, from a field to a country: `python -m bench.grid_bench`.

The grid runs in the QGIS plugin's thread and in the planning Lambda, pure Python, so a
country-sized AOI must resolve in well under a second or two. Prints a Markdown table and
returns its rows.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from qgis_rsbatch.core import grid
from qgis_rsbatch.core.aoi import parse_aoi

#: a rough outline of France (27 vertices), typed in, lon/lat
FRANCE = [[-1.8, 43.4], [-1.4, 46.2], [-2.2, 47.1], [-4.7, 47.9], [-4.6, 48.6], [-1.6, 48.7],
          [-1.9, 49.7], [0.2, 49.7], [1.6, 50.9], [2.5, 51.1], [4.2, 49.9], [5.9, 49.5],
          [8.2, 49.0], [7.6, 47.6], [6.8, 47.4], [6.0, 46.2], [7.0, 45.9], [6.6, 45.1],
          [7.0, 44.2], [7.5, 43.8], [6.2, 43.1], [4.3, 43.5], [3.1, 43.1], [3.0, 42.5],
          [1.7, 42.5], [0.7, 42.8], [-1.8, 43.4]]
#: a rough outline of Germany (24 vertices)
GERMANY = [[6.1, 50.8], [5.9, 51.8], [7.0, 52.2], [7.2, 53.3], [8.6, 53.9], [9.0, 54.8],
           [10.9, 54.4], [13.6, 54.5], [14.2, 53.9], [14.6, 52.6], [15.0, 51.1], [12.3, 50.3],
           [13.8, 48.8], [13.0, 47.5], [10.5, 47.3], [9.6, 47.5], [7.6, 47.6], [8.2, 49.0],
           [6.4, 49.5], [6.1, 50.8]]

CASES: dict[str, dict] = {
    "field (2 km square near Munich)": parse_aoi("11.50,48.10,11.53,48.12"),
    "France (27 vertices)": {"type": "Polygon", "coordinates": [FRANCE]},
    "Germany (20 vertices)": {"type": "Polygon", "coordinates": [GERMANY]},
    "20° x 20° bbox (Sahara)": parse_aoi("0,15,20,35"),
}


def run(repeat: int = 3) -> list[dict]:
    """Time tiles_for_aoi for every case: the first (cold caches) and the best of `repeat`."""
    rows = []
    for name, aoi in CASES.items():
        times = []
        count = 0
        for _ in range(max(1, repeat)):
            start = time.perf_counter()
            count = len(grid.tiles_for_aoi(aoi))
            times.append(time.perf_counter() - start)
        rows.append({"aoi": name, "tiles": count, "first_s": round(times[0], 4),
                     "best_s": round(min(times), 4)})
    return rows


def markdown(rows: Sequence[dict]) -> str:
    lines = ["| AOI | tiles | first run (s) | best (s) |", "|---|---:|---:|---:|"]
    lines += [f"| {r['aoi']} | {r['tiles']} | {r['first_s']:.4f} | {r['best_s']:.4f} |"
              for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per AOI (default 3)")
    args = parser.parse_args(argv)
    rows = run(args.repeat)
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    main()
