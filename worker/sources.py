"""Band sources: an href (local path, file://, https:// COG, s3://) opened as a raster.

GDAL reads remote bands with ranged requests (/vsicurl/, /vsis3/), so a COG is never
downloaded whole. Its configuration is scoped in one `rasterio.Env` per cell (`band_env`);
S3 credentials come from boto3's chain, and requester-pays is honoured. When opening
fails, the reason is found out (a HEAD request or a stat) and raised as the error a person
can act on: the band does not exist, access is denied, the host cannot be reached, or the
file is not a raster.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

from qgis_rsbatch.core.errors import (
    AWS_DENIED_CODES,
    AWS_NOT_FOUND_CODES,
    AccessDenied,
    CorruptInput,
    MissingInput,
    SourceUnavailable,
    aws_error_code,
)

#: GDAL settings for reading COGs over HTTP: no directory listings, merged ranges, retries
_REMOTE_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.jp2,.JP2,.vrt",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_CONNECTTIMEOUT": "15",
    "GDAL_HTTP_TIMEOUT": "120",
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": str(64 * 1024 * 1024),
    # a strip of 10980 × 1024 uint16 over four bands is ~90 MB: keep one strip's blocks
    "GDAL_CACHEMAX": 256,
}


def gdal_path(href: str) -> str:
    """The GDAL filename for an href."""
    if href.startswith("s3://"):
        return "/vsis3/" + href[len("s3://"):]
    if href.startswith(("https://", "http://")):
        return "/vsicurl/" + href
    if href.startswith("file://"):
        return urlparse(href).path
    return os.path.expanduser(href)


def _s3_endpoint_options() -> dict[str, str]:
    """Point GDAL at a custom S3 endpoint (moto in tests, MinIO) when boto3 is pointed there."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return {}
    parsed = urlparse(endpoint)
    return {
        "AWS_S3_ENDPOINT": parsed.netloc,
        "AWS_HTTPS": "YES" if parsed.scheme == "https" else "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }


def _aws_session(requester_pays: bool, region: str | None) -> Any:
    """A rasterio AWSSession from boto3's credential chain; unsigned when there are none."""
    import boto3
    from rasterio.session import AWSSession

    session = boto3.session.Session(region_name=region)
    if session.get_credentials() is None:
        if requester_pays:
            raise AccessDenied(
                "reading a requester-pays bucket needs AWS credentials: none were found "
                "(set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
            )
        return AWSSession(aws_unsigned=True, region_name=region or "us-west-2")
    return AWSSession(session, requester_pays=requester_pays,
                      region_name=session.region_name or region or "us-west-2")


@contextmanager
def band_env(hrefs: list[str], *, requester_pays: bool = False,
             region: str | None = None) -> Iterator[None]:
    """The rasterio.Env for reading these hrefs (and nothing global mutated)."""
    import rasterio

    options: dict[str, Any] = dict(_REMOTE_OPTIONS)
    session = None
    if any(h.startswith("s3://") for h in hrefs):
        options.update(_s3_endpoint_options())
        session = _aws_session(requester_pays, region or os.environ.get("AWS_REGION"))
        if requester_pays:
            options["AWS_REQUEST_PAYER"] = "requester"
    with rasterio.Env(session=session, **options):
        yield


def gdal_message(exc: BaseException) -> str:
    """GDAL's own words for a failure, not rasterio's "See previous exception for details".

    rasterio raises a generic error chained to the CPLE_* errors GDAL reported, outermost
    first ("band 1: IReadBlock failed at X offset 0, Y offset 0: …") down to the cause
    ("ZIPDecode: Decoding error …, incorrect header check"): the cause, then where it struck.
    """
    messages: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = " ".join(str(current).split())
        if text and "see previous exception" not in text.lower() and text not in messages:
            messages.append(text)
        current = current.__cause__ or current.__context__
    if not messages:
        return type(exc).__name__
    deepest, outermost = messages[-1], messages[0]
    if outermost != deepest and "IReadBlock failed" in outermost:
        where = outermost.split(": IReadBlock failed at ", 1)[-1].split(":", 1)[0]
        return f"{deepest} (block at {where})"
    return deepest


def diagnose(href: str, key: str, exc: Exception, *, requester_pays: bool = False) -> Exception:
    """The actionable error for a band that failed to open or read."""
    text = gdal_message(exc)
    label = f"band {key} ({href})"
    if href.startswith("s3://"):
        return _diagnose_s3(href, label, text, requester_pays)
    if href.startswith(("https://", "http://")):
        return _diagnose_http(href, label, text)
    path = gdal_path(href)
    if not os.path.exists(path):
        return MissingInput(f"{label} does not exist")
    if not os.access(path, os.R_OK):
        return AccessDenied(f"{label} is not readable: permission denied")
    return CorruptInput(f"{label} is not a readable raster: {_short(text)}")


def _short(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return line[:300]


def _diagnose_http(href: str, label: str, text: str) -> Exception:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(href, method="HEAD")  # noqa: S310 - http(s) only
    try:
        with urllib.request.urlopen(request, timeout=15):  # noqa: S310
            pass
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return MissingInput(f"{label} does not exist (HTTP 404)")
        if err.code in (401, 403):
            return AccessDenied(f"{label} refused access (HTTP {err.code})")
        return SourceUnavailable(f"{label} could not be read: HTTP {err.code}")
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        return SourceUnavailable(f"{label} is unreachable: {reason}")
    return CorruptInput(f"{label} is not a readable raster: {_short(text)}")


def _diagnose_s3(href: str, label: str, text: str, requester_pays: bool) -> Exception:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    parsed = urlparse(href)
    extra = {"RequestPayer": "requester"} if requester_pays else {}
    try:
        boto3.client("s3").head_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"),
                                       **extra)
    except NoCredentialsError:
        return AccessDenied(f"{label} needs AWS credentials and none were found")
    except ClientError as err:
        code = aws_error_code(err)
        if code in AWS_NOT_FOUND_CODES or code == "NoSuchBucket":
            return MissingInput(f"{label} does not exist")
        if code in AWS_DENIED_CODES:
            hint = "" if requester_pays else " (a requester-pays bucket needs requester_pays)"
            return AccessDenied(f"{label}: access denied ({code}); check the AWS credentials"
                                f"{hint}")
        return SourceUnavailable(f"{label} could not be read: {code or err}")
    except BotoCoreError as err:
        return SourceUnavailable(f"{label} is unreachable: {err}")
    return CorruptInput(f"{label} is not a readable raster: {_short(text)}")


def open_band(href: str, key: str, *, requester_pays: bool = False,
              threads: int | str = "ALL_CPUS") -> Any:
    """Open a band (inside `band_env`), or raise the diagnosed error.

    `threads`: GDAL decodes the blocks of one read in this many threads (GeoTIFF).
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        return rasterio.open(gdal_path(href), NUM_THREADS=str(threads))
    except RasterioIOError as exc:
        raise diagnose(href, key, exc, requester_pays=requester_pays) from exc
