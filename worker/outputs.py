"""Where results go: a local folder (file://) or S3 (s3://), never half-written.

Locally the COG writer works beside the destination and renames into place; for S3 it
works in a scratch folder and the finished file is uploaded (an S3 object appears only
once its upload completes). The STAC item is published last: it is the cell's completion
marker, listing every product with its size, which is how a retried cell knows its
outputs are already valid and need not be made again. A full file system is named as such
(`no_space`: where, about how much the cell needs, how much is free), not as a bug.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from qgis_rsbatch.core.errors import (
    AWS_DENIED_CODES,
    AWS_NOT_FOUND_CODES,
    AccessDenied,
    InvalidInput,
    OutputFailed,
    RsbatchError,
    SourceUnavailable,
    aws_error_code,
)
from qgis_rsbatch.core.scratch import scratch_path

#: errno values that mean "the file system (or this user's share of it) is full"
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _mount_of(path: str) -> tuple[str, str]:
    """(mount point, device or file-system name) of the file system holding `path`."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    device = os.stat(path).st_dev
    while path != os.path.dirname(path) and os.stat(os.path.dirname(path)).st_dev == device:
        path = os.path.dirname(path)
    name = ""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) > 1 and fields[1] == path:
                    name = fields[0]
    except OSError:
        pass
    return path, name


def no_space(folder: str, needed: int | None = None) -> OutputFailed:
    """The error for a full file system: where, how much is needed, how much is free."""
    mount, name = _mount_of(folder)
    where = f"{mount} ({name})" if name and name != mount else mount
    try:
        free = f", {shutil.disk_usage(mount).free / 1e6:.1f} MB free"
    except OSError:
        free = ""
    need = f"about {max(needed / 1e6, 0.1):.0f} MB needed" if needed else "more space needed"
    return OutputFailed(f"no space left on {where} writing {folder}: {need}{free}; free some "
                        "space (or choose another output folder) and run the cell again")


def space_slack(pixel_bytes: int, blocksize: int = 512) -> int:
    """Free bytes below which a failed write is taken for a full disk: one uncompressed
    block (the most a single GDAL block write needs) and a little more."""
    return blocksize * blocksize * pixel_bytes + (64 << 10)


def is_out_of_space(exc: BaseException, folder: str, slack: int = 0) -> bool:
    """Whether a failed write ran out of space (call it before the scratch files go).

    An OSError says so by its errno. GDAL does not: libtiff prints "No space left on device"
    and the write goes on, to fail later as a short file. So a failure while the folder's
    file system has less than `slack` bytes (about one tile) free counts as out of space.
    """
    current: BaseException | None = exc
    seen = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in FULL_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    try:
        return shutil.disk_usage(folder).free < slack
    except OSError:
        return False


def space_needed_if_full(exc: BaseException, folder: str, pixels: int,
                         pixel_bytes: Sequence[int]) -> int | None:
    """When `exc` is a write into `folder` that ran out of space, about how many bytes the
    outputs need (`pixels` of each output, `pixel_bytes` per pixel of each, every pyramid
    level uncompressed); else None. Call it before the scratch files are removed."""
    if not isinstance(exc, Exception) or isinstance(exc, InvalidInput) or not pixel_bytes:
        return None
    # our own errors (a band that cannot be read, …) are full-disk errors only by errno;
    # the free-space test is for GDAL's writes, which fail without saying why
    slack = 0 if isinstance(exc, RsbatchError) else space_slack(max(pixel_bytes))
    if not is_out_of_space(exc, folder, slack):
        return None
    return pixels * 4 // 3 * sum(pixel_bytes)  # the overviews add a third at most


class LocalDestination:
    """file:// outputs."""

    def __init__(self, base_uri: str) -> None:
        self.base = urlparse(base_uri).path

    @staticmethod
    def path(uri: str) -> str:
        return urlparse(uri).path

    def prepare(self, uri: str) -> str:
        """Make the folder and prove it is writable; returns the local path to write to."""
        path = self.path(uri)
        folder = os.path.dirname(path)
        try:
            os.makedirs(folder, exist_ok=True)
            probe = scratch_path(os.path.join(folder, "rsbatch-write-test"))
            with open(probe, "w") as fh:
                fh.write("")
            os.remove(probe)
        except PermissionError as exc:
            raise AccessDenied(f"cannot write the output folder {folder}: permission denied"
                               ) from exc
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                raise no_space(folder) from exc
            raise OutputFailed(f"cannot write the output folder {folder}: {exc.strerror}"
                               ) from exc
        return path

    def publish(self, local_path: str, uri: str) -> None:
        target = self.path(uri)
        if os.path.abspath(local_path) != os.path.abspath(target):
            os.replace(local_path, target)

    def size(self, uri: str) -> int | None:
        path = self.path(uri)
        return os.path.getsize(path) if os.path.isfile(path) else None

    def local_copy(self, uri: str) -> str | None:
        path = self.path(uri)
        return path if os.path.isfile(path) else None

    def read_json(self, uri: str) -> Any:
        try:
            with open(self.path(uri)) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return None

    def write_json(self, uri: str, data: Any) -> None:
        path = self.path(uri)
        tmp = scratch_path(path)
        try:
            with open(tmp, "w") as fh:
                json.dump(data, fh, indent=1)
            os.replace(tmp, path)
        except OSError as exc:
            if os.path.exists(tmp):
                os.remove(tmp)
            if exc.errno in FULL_ERRNOS:
                raise no_space(os.path.dirname(path), len(json.dumps(data, indent=1))) from exc
            raise OutputFailed(f"cannot write {path}: {exc.strerror}") from exc

    def close(self) -> None:
        pass


class S3Destination:
    """s3:// outputs, uploaded with boto3 (multipart for large files)."""

    def __init__(self, base_uri: str, region: str | None = None) -> None:
        import boto3

        self._s3 = boto3.session.Session(region_name=region).client("s3")
        self._scratch = tempfile.mkdtemp(prefix="rsbatch-out-")

    @staticmethod
    def _split(uri: str) -> tuple[str, str]:
        parsed = urlparse(uri)
        return parsed.netloc, parsed.path.lstrip("/")

    def _fail(self, what: str, uri: str, exc: Exception) -> Exception:
        from botocore.exceptions import ClientError, NoCredentialsError

        if isinstance(exc, NoCredentialsError):
            return AccessDenied(f"cannot {what} {uri}: no AWS credentials found")
        if isinstance(exc, ClientError):
            code = aws_error_code(exc)
            if code in AWS_DENIED_CODES:
                return AccessDenied(f"cannot {what} {uri}: access denied ({code}); check the "
                                    "credentials and the bucket policy")
            if code in ("NoSuchBucket",):
                return OutputFailed(f"cannot {what} {uri}: the bucket does not exist")
            return OutputFailed(f"cannot {what} {uri}: {code}")
        return SourceUnavailable(f"cannot {what} {uri}: {exc}")

    def prepare(self, uri: str) -> str:
        return os.path.join(self._scratch, os.path.basename(self._split(uri)[1]))

    def publish(self, local_path: str, uri: str) -> None:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = self._split(uri)
        try:
            self._s3.upload_file(local_path, bucket, key,
                                 ExtraArgs={"ContentType": _content_type(key)})
        except S3UploadFailedError as exc:
            raise self._fail("upload", uri, exc.__cause__ or exc) from exc
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("upload", uri, exc) from exc
        finally:
            if os.path.exists(local_path):
                os.remove(local_path)

    def size(self, uri: str) -> int | None:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = self._split(uri)
        try:
            return int(self._s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            if aws_error_code(exc) in AWS_NOT_FOUND_CODES:
                return None
            raise self._fail("check", uri, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("check", uri, exc) from exc

    def local_copy(self, uri: str) -> str | None:
        return None  # the layout was validated before upload; size is the check here

    def read_json(self, uri: str) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = self._split(uri)
        try:
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            return json.loads(body)
        except (ClientError, BotoCoreError, ValueError):
            return None

    def write_json(self, uri: str, data: Any) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = self._split(uri)
        try:
            self._s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(data, indent=1).encode(),
                                ContentType="application/json")
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("write", uri, exc) from exc

    def close(self) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)


def _content_type(key: str) -> str:
    if key.endswith(".tif"):
        return "image/tiff; application=geotiff; profile=cloud-optimized"
    return "application/json" if key.endswith(".json") else "application/octet-stream"


def destination_for(base_uri: str, region: str | None = None) -> LocalDestination | S3Destination:
    if base_uri.startswith("s3://"):
        return S3Destination(base_uri, region)
    return LocalDestination(base_uri)
