"""The original workflow's execution input, understood unchanged.

The seed passes each cell as `{"files": "s3://sentinel-s2-l2a/tiles/48/R/XT/2020/8/1/0/R10m/",
"date": "20200801", "output_bucket": "…", "region_name": "…"}` (as a Map item, and to the
container as environment variables). Both the planning Lambda (to write PENDING records)
and the worker (to process it) turn that into our ids with these functions, so the two
always agree on the task id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from . import products as registry
from .contract import Cell, cell_id_for, normalize_tile, parse_date
from .errors import InvalidInput

SEED_FIELDS = ("files", "date", "output_bucket", "region_name")
#: tiles/{utm_zone}/{latitude_band}/{grid_square}/{yyyy}/{m}/{d}/{sequence}/[R10m/]
_PREFIX_RE = re.compile(
    r"^s3://(?P<bucket>[^/]+)/(?P<root>(?:[^/]+/)*?)tiles/(?P<zone>\d{1,2})/(?P<band>[A-Z])/"
    r"(?P<square>[A-Z]{2})/(?P<year>\d{4})/(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<seq>\d+)/"
    r"(?:R10m/?)?$"
)


@dataclass(frozen=True)
class SeedPrefix:
    """A parsed `files` prefix of the sentinel-s2-l2a layout."""

    bucket: str
    tile_root: str  # s3://bucket/tiles/48/R/XT/2020/8/1/0/  (tileInfo.json, metadata.xml)
    tile: str
    date: str
    sequence: int

    def band_href(self, key: str) -> str:
        """Each band at its native resolution: R10m/B04.jp2, R20m/B11.jp2, R20m/SCL.jp2."""
        band = registry.BANDS[key]
        return f"{self.tile_root}R{band.resolution}m/{band.name}.jp2"


def parse_prefix(files: str) -> SeedPrefix:
    text = str(files).strip()
    if not text.endswith("/"):
        text += "/"
    match = _PREFIX_RE.match(text)
    if not match:
        raise InvalidInput(
            f"files '{files}' is not a sentinel-s2-l2a tile prefix like "
            "s3://sentinel-s2-l2a/tiles/48/R/XT/2020/8/1/0/R10m/"
        )
    g = match.groupdict()
    tile = normalize_tile(f"{g['zone']}{g['band']}{g['square']}")
    date = parse_date(f"{g['year']}-{int(g['month']):02d}-{int(g['day']):02d}", "files date")
    root = (f"s3://{g['bucket']}/{g['root']}tiles/{g['zone']}/{g['band']}/{g['square']}/"
            f"{g['year']}/{g['month']}/{g['day']}/{g['seq']}/")
    return SeedPrefix(bucket=g["bucket"], tile_root=root, tile=tile, date=date,
                      sequence=int(g["seq"]))


def seed_job_id(entry: Mapping[str, str]) -> str:
    """The job id a seed cell runs under: its own `job_id` if given, else its date."""
    if entry.get("job_id"):
        return str(entry["job_id"])
    return str(entry.get("date") or "seed").replace("-", "")


def seed_cell(entry: Mapping[str, str], *, has_nir: bool = True, has_scl: bool = True,
              offset: float = 0.0, offset_check: bool = True) -> Cell:
    """The cell a seed entry stands for (bands from the prefix; offset decided by the caller)."""
    missing = [name for name in ("files", "date", "output_bucket") if not entry.get(name)]
    if missing:
        raise InvalidInput(f"seed input lacks {', '.join(missing)}")
    prefix = parse_prefix(entry["files"])
    date = parse_date(entry["date"], "seed field 'date'")
    if date != prefix.date:
        raise InvalidInput(f"seed date {entry['date']} does not match files {entry['files']}")
    bucket = str(entry["output_bucket"]).strip()
    output = bucket if bucket.startswith("s3://") else f"s3://{bucket}"
    bands: dict[str, str | None] = {key: prefix.band_href(key)
                                    for key in ("blue", "green", "red")}
    bands["nir"] = prefix.band_href("nir") if has_nir else None
    bands["scl"] = prefix.band_href("scl") if has_scl else None
    products = ["rgb", "ndvi"] if has_nir else ["rgb"]
    return Cell.from_dict({
        "job_id": seed_job_id(entry), "cell_id": cell_id_for(prefix.tile, date),
        "tile": prefix.tile, "date": date, "bands": bands, "products": products,
        "aoi": None, "cloud_mask": has_scl and has_nir, "scale": 0.0001, "offset": offset,
        "offset_check": offset_check, "output": output, "requester_pays": True,
    })
