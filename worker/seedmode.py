"""The seed's execution input: environment variables `files`, `date`, `output_bucket`,
`region_name`, naming a prefix of the requester-pays `sentinel-s2-l2a` bucket.

The offset is decided from the product's own metadata beside the bands (DESIGN.md
"Reflectance", last row): `productName` in the tile's `tileInfo.json` carries the
processing baseline (`_N0400_`), and `metadata.xml` may carry `BOA_ADD_OFFSET` or the
baseline. When neither can be read, the pixels decide (`offset_check`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from qgis_rsbatch.core import reflectance
from qgis_rsbatch.core.contract import Cell
from qgis_rsbatch.core.errors import (
    AWS_DENIED_CODES,
    AWS_NOT_FOUND_CODES,
    AccessDenied,
    InvalidInput,
    SourceUnavailable,
    aws_error_code,
)
from qgis_rsbatch.core.reflectance import Reflectance
from qgis_rsbatch.core.seed import SEED_FIELDS, SeedPrefix, parse_prefix, seed_cell


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
            code = aws_error_code(exc)
            if code in AWS_NOT_FOUND_CODES:
                return None
            if code in AWS_DENIED_CODES:
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
            if aws_error_code(exc) in AWS_NOT_FOUND_CODES:
                return False
            raise SourceUnavailable(f"cannot check {uri}: {exc}") from exc


def product_reflectance(prefix: SeedPrefix, bucket: Any) -> tuple[Reflectance, str]:
    """The product's scale and offset from its own metadata (core's rule for ESA's JP2s),
    and which file told: tileInfo.json's productName (`_N0400_`), else metadata.xml."""
    info = bucket.read(prefix.tile_root + "tileInfo.json")
    name = None
    if info is not None:
        try:
            name = str(json.loads(info).get("productName") or "") or None
        except ValueError:
            name = None
    xml = None
    if name is None or reflectance.baseline_from_product_name(name) is None:
        raw = bucket.read(prefix.tile_root + "metadata.xml")
        xml = raw.decode("utf-8", "replace") if raw is not None else None
    found = reflectance.for_sentinel_s2_l2a(product_name=name, metadata_xml=xml)
    source = ("metadata.xml" if xml else f"tileInfo.json ({name})" if name
              else "no tileInfo.json or metadata.xml with the processing baseline")
    return found, source


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
    found, source = product_reflectance(prefix, bucket)
    cell = seed_cell(entry, has_nir=has_nir, has_scl=has_scl, offset=found.offset,
                     offset_check=found.offset_check)
    return cell, {"files": entry["files"], "date": entry["date"]}, source
