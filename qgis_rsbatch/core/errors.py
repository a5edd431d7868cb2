"""One small hierarchy of errors whose messages a person can act on.

Entry points turn them into exit codes (`exit_code`), FAILED task-log records or
message-bar notices. Each class also inherits the builtin it resembles, so callers
that only know Python's own exceptions still catch them sensibly.
"""

from __future__ import annotations


class RsbatchError(Exception):
    """Base of every error rsbatch raises on purpose."""

    #: process exit code an entry point uses for this error
    exit_code = 1
    #: whether running the same thing again may succeed (AWS Batch retries these)
    retryable = True


class InvalidInput(RsbatchError, ValueError):
    """The request itself is wrong: retrying cannot help."""

    exit_code = 2
    retryable = False


class MissingInput(InvalidInput, FileNotFoundError):
    """A band, file or object that the request names does not exist."""


class CorruptInput(InvalidInput):
    """An input exists but cannot be decoded as a raster."""


class SourceUnavailable(RsbatchError, OSError):
    """An input exists (or may) but could not be reached now: network, throttling, 5xx."""


class AccessDenied(RsbatchError, PermissionError):
    """Credentials are missing, expired or lack a permission."""

    exit_code = 2
    retryable = False


class OutputFailed(RsbatchError, OSError):
    """The result could not be written to its destination."""


class CatalogError(SourceUnavailable):
    """The STAC catalog could not be reached or answered with something unusable."""


class TransitionRejected(RsbatchError):
    """A task-log write was refused because the record is not in an expected state."""

    retryable = False


class Cancelled(RsbatchError):
    """The cell's job was cancelled before or while the cell ran."""

    exit_code = 3
    retryable = False


class NothingToReduce(RsbatchError):
    """Every input of a reduce unit (mosaic, composite) failed or was skipped: the unit has
    nothing to read. Not a failure of the unit itself; a backend records it as skipped."""

    exit_code = 4
    retryable = False


class TaskLogUnavailable(RsbatchError, OSError):
    """The task log cannot be opened or read: deleted, damaged, or not a task log."""


class JobBusy(InvalidInput):
    """Another process already runs this job (it holds the job's supervisor lock)."""


class Terminated(BaseException):
    """This process was told to stop (SIGTERM): clean up, record nothing, exit.

    Not an RsbatchError (nor an Exception), so no handler mistakes it for a cell's
    failure; whoever stopped the process records why (cancel, an interrupted runner).
    """


class DependencyMissing(RsbatchError, ImportError):
    """An optional package is needed for this feature; the message says which."""

    exit_code = 2
    retryable = False


#: AWS error codes that mean "these credentials may not do this": a missing permission,
#: expired or invalid credentials, a bad signature. Every AWS caller maps them to AccessDenied.
AWS_DENIED_CODES = frozenset({
    "403", "AccessDenied", "AccessDeniedException", "AllAccessDisabled", "ExpiredToken",
    "ExpiredTokenException", "InvalidAccessKeyId", "InvalidClientTokenId",
    "InvalidSignatureException", "SignatureDoesNotMatch", "UnrecognizedClientException",
})
#: S3 error codes of an object that is not there
AWS_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def aws_error_code(exc: BaseException) -> str:
    """The error code of a botocore ClientError ('' for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def require(module: str, feature: str, pip_name: str | None = None):
    """Import an optional dependency, or raise DependencyMissing naming what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = pip_name or module.split(".", maxsplit=1)[0]
        raise DependencyMissing(
            f"{feature} needs the Python package '{package}': pip install {package}"
        ) from exc
