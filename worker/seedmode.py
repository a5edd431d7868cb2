"""The seed's execution input: environment variables `files`, `date`, `output_bucket`,
`region_name`, naming a prefix of the requester-pays `sentinel-s2-l2a` bucket.

The offset is decided from the product's own metadata beside the bands (DESIGN.md
"Reflectance", last row): `productName` in the tile's `tileInfo.json` carries the
processing baseline (`_N0400_`), and `metadata.xml` may carry `BOA_ADD_OFFSET` or the
baseline. When neither can be read, the pixels decide (`offset_check`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from qgis_rsbatch.core.contract import Cell
from qgis_rsbatch.core.errors import AccessDenied, InvalidInput, SourceUnavailable
from qgis_rsbatch.core.seed import SEED_FIELDS, SeedPrefix, parse_prefix, seed_cell

_BASELINE_IN_NAME = re.compile(r"_N(\d{2})(\d{2})_")
_BOA_OFFSET = re.compile(r"<BOA_ADD_OFFSET[^>]*>\s*(-?\d+)\s*<")
_BASELINE_TAG = re.compile(r"<PROCESSING_BASELINE>\s*(\d{2})\.(\d{2})\s*<")


class _Bucket:
    """Requester-pays reads of small objects beside the bands."""

    def __init__(self, region: str | None) -> None:
        import boto3

        self.s3 = boto3.session.Session(region_name=region).client("s3")

    def _split(self, uri: str) -> tuple[str, str]:
        parsed = urlparse(uri)
        return parsed.netloc, parsed.path.lstrip("/")

    def read(self, uri: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        bucket, key = self._split(uri)
        try:
            obj = self.s3.get_object(Bucket=bucket, Key=key, RequestPayer="requester")
            return obj["Body"].read()
        except NoCredentialsError as exc:
            raise AccessDenied("the seed input reads a requester-pays bucket and needs AWS "
                               "credentials; none were found") from exc
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            if code in ("AccessDenied", "403", "ExpiredToken", "InvalidAccessKeyId"):
                raise AccessDenied(f"cannot read {uri}: access denied ({code})") from exc
            if code == "NoSuchBucket":
                raise InvalidInput(f"bucket of {uri} does not exist") from exc
            raise SourceUnavailable(f"cannot read {uri}: {code}") from exc
        except BotoCoreError as exc:
            raise SourceUnavailable(f"cannot read {uri}: {exc}") from exc

    def exists(self, uri: str) -> bool:
        from botocore.exceptions import ClientError

        bucket, key = self._split(uri)
        try:
            self.s3.head_object(Bucket=bucket, Key=key, RequestPayer="requester")
            return True
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise SourceUnavailable(f"cannot check {uri}: {exc}") from exc


def product_offset(prefix: SeedPrefix, bucket: Any, scale: float = 0.0001
                   ) -> tuple[float | None, str]:
    """(offset, how it was found) from the product's metadata; offset None when unknown."""
    info = bucket.read(prefix.tile_root + "tileInfo.json")
    if info is not None:
        try:
            name = str(json.loads(info).get("productName", ""))
        except ValueError:
            name = ""
        match = _BASELINE_IN_NAME.search(name)
        if match:
            baseline = f"{match.group(1)}.{match.group(2)}"
            offset = -1000 * scale if baseline >= "04.00" else 0.0
            return offset, f"processing baseline {baseline} from tileInfo.json ({name})"
    xml = bucket.read(prefix.tile_root + "metadata.xml")
    if xml is not None:
        text = xml.decode("utf-8", "replace")
        match = _BOA_OFFSET.search(text)
        if match:
            return int(match.group(1)) * scale, f"BOA_ADD_OFFSET {match.group(1)} in metadata.xml"
        match = _BASELINE_TAG.search(text)
        if match:
            baseline = f"{match.group(1)}.{match.group(2)}"
            offset = -1000 * scale if baseline >= "04.00" else 0.0
            return offset, f"processing baseline {baseline} from metadata.xml"
    return None, "no tileInfo.json or metadata.xml with the processing baseline"


def cell_from_env(env: Mapping[str, str]) -> tuple[Cell, dict[str, Any], str]:
    """(cell, the seed's task-log fields, a note on the offset) for the seed's variables."""
    missing = [name for name in ("files", "date", "output_bucket") if not env.get(name)]
    if missing:
        raise InvalidInput(f"seed mode needs the environment variable(s) {', '.join(missing)}")
    entry = {name: env[name] for name in (*SEED_FIELDS, "job_id") if env.get(name)}
    prefix = parse_prefix(entry["files"])
    bucket = _Bucket(env.get("region_name"))
    has_nir = bucket.exists(prefix.band_href("nir"))
    has_scl = bucket.exists(prefix.band_href("scl"))
    found, how = product_offset(prefix, bucket)
    cell = seed_cell(entry, has_nir=has_nir, has_scl=has_scl,
                     offset=found if found is not None else 0.0,
                     offset_check=found is None)
    return cell, {"files": entry["files"], "date": entry["date"]}, how
