"""Where an output's bytes are: output URIs as GDAL sources, and the S3 settings that reach a
stack's bucket through the AWS profile chain (a profile name, a region, an endpoint; never a
key). Streaming scopes those settings to the bucket's /vsis3/ paths; downloading copies the
object once into a folder the user chose.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from ..core.errors import DependencyMissing, InvalidInput, MissingInput, OutputFailed


@dataclass(frozen=True)
class S3Access:
    """How to reach a stack's bucket: names and an endpoint, never a secret."""

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None

    @classmethod
    def from_stack(cls, stack: dict[str, Any], profile: str | None = None) -> S3Access:
        return cls(profile=profile or stack.get("Profile") or None,
                   region=stack.get("Region") or None,
                   endpoint_url=stack.get("EndpointUrl") or None)


def gdal_source(uri: str) -> str:
    """file:// → path, s3:// → /vsis3/, http(s) → /vsicurl/; anything else as it is."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme == "s3":
        return f"/vsis3/{parsed.netloc}{parsed.path}"
    if parsed.scheme in ("http", "https"):
        return f"/vsicurl/{uri}"
    return uri


def s3_gdal_options(access: S3Access) -> dict[str, str]:
    """GDAL settings for /vsis3/ that follow the profile chain (no key is ever passed)."""
    options: dict[str, str] = {}
    if access.profile:
        options["AWS_PROFILE"] = access.profile
    if access.region:
        options["AWS_REGION"] = access.region
    if access.endpoint_url:
        endpoint = urlparse(access.endpoint_url)
        options["AWS_S3_ENDPOINT"] = endpoint.netloc or access.endpoint_url
        options["AWS_HTTPS"] = "YES" if endpoint.scheme == "https" else "NO"
        options["AWS_VIRTUAL_HOSTING"] = "FALSE"
    return options


def configure_s3(bucket: str, access: S3Access) -> None:
    """Scope the S3 settings to this bucket's /vsis3/ paths (GDAL ≥ 3.6), nothing global."""
    options = s3_gdal_options(access)
    if not options:
        return
    try:
        from osgeo import gdal
    except ImportError:
        return
    setter = getattr(gdal, "SetPathSpecificOption", None) or getattr(gdal, "SetCredential",
                                                                     None)
    if setter is None:
        raise DependencyMissing("streaming from S3 with a profile needs GDAL 3.6 or newer; "
                                "choose 'download' for S3 results instead")
    for key, value in options.items():
        setter(f"/vsis3/{bucket}", key, value)


def download_s3(uri: str, folder: str, access: S3Access) -> str:
    """Copy an s3:// object into `folder` (kept: a second load reuses it); returns the path."""
    try:
        import boto3
    except ImportError as exc:
        raise DependencyMissing("downloading S3 results needs boto3 in QGIS's Python "
                                "(pip install boto3), or choose streaming") from exc
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    target = os.path.join(folder, bucket, *key.split("/"))
    if os.path.exists(target):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    session = boto3.session.Session(profile_name=access.profile, region_name=access.region)
    client = session.client("s3", endpoint_url=access.endpoint_url)
    partial = target + ".part"
    try:
        client.download_file(bucket, key, partial)
    except Exception as exc:  # botocore's errors: no credentials, denied, not found
        raise OutputFailed(f"could not download {uri}: {exc}") from exc
    os.replace(partial, target)
    return target


def resolve(uri: str, *, s3_mode: str = "stream", download_folder: str = "",
            access: S3Access | None = None,
            downloader: Callable[[str, str, S3Access], str] = download_s3) -> str:
    """The GDAL source to open for an output URI: a checked local path, /vsis3/ with the
    bucket's settings (streaming), or a downloaded copy. Blocking when downloading."""
    access = access or S3Access()
    if not uri.startswith("s3://"):
        source = gdal_source(uri)
        if not source.startswith("/vsi") and not os.path.exists(source):
            raise MissingInput(f"{source} does not exist (moved or deleted?)")
        return source
    if s3_mode == "download":
        if not download_folder:
            raise InvalidInput("choose a download folder for S3 results in rsbatch's settings")
        return downloader(uri, download_folder, access)
    configure_s3(urlparse(uri).netloc, access)
    return gdal_source(uri)
