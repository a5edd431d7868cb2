"""Backends: where a job's cells run. One interface (base.Backend), two implementations."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInput
from .base import Backend, JobStatus

BACKENDS = ("local", "aws")

__all__ = ["BACKENDS", "Backend", "JobStatus", "get_backend"]


def get_backend(name: str = "local", **options: Any) -> Backend:
    """The backend called `name`, built with its options."""
    if name == "local":
        from .local import LocalBackend

        return LocalBackend(**options)
    if name == "aws":
        from .aws import AwsBackend

        return AwsBackend(**options)
    raise InvalidInput(f"unknown backend '{name}': use one of {', '.join(BACKENDS)}")
