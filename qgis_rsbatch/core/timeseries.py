"""A job's AOI statistics as a time series: one row per date (its mosaic, or each of its
cells) and index product.

The worker stores each index's statistics over the AOI's valid pixels in the task-log
record (schema.STATS_ATTRIBUTE) and the STAC item; this module turns a job's records into
rows for `rsbatch stats` (text, CSV, JSON) and the dock's time-series view. A SKIPPED
cell (its AOI too cloudy) is a row per product with no numbers, so a series shows the gap.
Pure standard library.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import products
from .contract import Status
from .errors import OutputFailed
from .tasklog.schema import is_unit_record

#: the columns of a row, in order
COLUMNS = ("tile", "date", "product", "status", "valid_pixels", "aoi_pixels",
           "valid_fraction", "mean", "median", "std", "p10", "p90", "aoi_masked_pct")
STAT_COLUMNS = ("valid_fraction", "mean", "median", "std", "p10", "p90")


def _mosaic_product(record: Any) -> str | None:
    """The product of a per-date mosaic's record (None for cells and composites)."""
    if not is_unit_record(record) or record.extra.get("Kind") != "mosaic":
        return None
    return str(record.extra.get("Product") or "")


def stats_rows(records: Iterable[Any],
               products_of: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """Rows for the SUCCEEDED and SKIPPED cells of `records`, sorted by date, tile and the
    registry's product order. `products_of` (cell id → products) names the products of
    skipped cells, which recorded no statistics.

    Where a date's mosaic of an index has succeeded, its row (tile "mosaic") replaces that
    date's per-tile rows: the mosaic counts each ground pixel once, where the tiles' own
    statistics count their overlap twice. Jobs without mosaics keep a row per tile.
    """
    records = list(records)
    order = {name: index for index, name in enumerate(products.NAMES)}
    mosaicked = {(r.date, _mosaic_product(r)) for r in records
                 if _mosaic_product(r) and r.status is Status.SUCCEEDED}
    rows = []
    for record in records:
        if record.status not in (Status.SUCCEEDED, Status.SKIPPED):
            continue
        stats = record.stats
        mosaic = _mosaic_product(record)
        if mosaic is not None:
            names = [mosaic] if (record.date, mosaic) in mosaicked else []
        elif is_unit_record(record):
            continue  # a composite spans a period: no point of a time series
        else:
            names = [n for n in list(stats) or [
                p for p in (products_of or {}).get(record.cell_id, ())
                if p in products.PRODUCTS and products.get(p).is_index]
                if (record.date, n) not in mosaicked]
        for name in names:
            if name not in products.PRODUCTS or not products.get(name).is_index:
                continue
            row: dict[str, Any] = {"tile": record.tile, "date": record.date, "product": name,
                                   "status": record.status.value,
                                   "aoi_masked_pct": record.aoi_masked_pct}
            values = stats.get(name) or {}
            for column in COLUMNS:
                row.setdefault(column, values.get(column))
            rows.append(row)
    rows.sort(key=lambda r: (r["date"], r["tile"], order.get(r["product"], len(order))))
    return rows


def _text(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as an aligned text table (fractions and indices to 4 decimals)."""
    header = ("DATE", "TILE", "PRODUCT", "STATUS", "VALID", "MEAN", "MEDIAN", "STD", "P10",
              "P90", "AOI MASKED")
    lines = [header]
    for row in rows:
        masked = row.get("aoi_masked_pct")
        lines.append((row["date"], row["tile"], row["product"], row["status"],
                      _text(row.get("valid_fraction")), *(_text(row.get(c)) for c in
                                                          ("mean", "median", "std", "p10",
                                                           "p90")),
                      f"{masked:.1f} %" if masked is not None else ""))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in lines)


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as CSV with COLUMNS as header; numbers at full precision, None empty."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row[c] for c in COLUMNS})
    return out.getvalue()


def write_csv(rows: Sequence[Mapping[str, Any]], path: str) -> None:
    """Write the CSV under a temporary name beside `path`, then move it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=".rsbatch-stats-", suffix=".csv",
                                             dir=folder)
        with os.fdopen(handle, "w", newline="") as fh:
            fh.write(to_csv(rows))
        os.replace(temporary, path)
    except OSError as exc:
        if temporary and os.path.exists(temporary):
            os.remove(temporary)
        raise OutputFailed(f"cannot write {path}: {exc}") from exc
