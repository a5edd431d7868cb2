"""The plugin's persistent choices, in QgsSettings under the `rsbatch/` prefix.

Only choices live here: folders, the worker Python, the AWS profile *name*, region and
stack, thresholds. Never a credential: AWS access goes through the profile chain
(~/.aws, environment, SSO), so neither the settings nor a project ever hold a secret.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from qgis.core import QgsSettings

from .core import products as registry

PREFIX = "rsbatch/"


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _list(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


class _Setting:
    """One key: its default and how a stored value (often a string) becomes the right type."""

    def __init__(self, key: str, default: Any, convert: Callable[[Any], Any]) -> None:
        self.key = PREFIX + key
        self.default = default
        self.convert = convert

    def __get__(self, settings: Settings | None, owner: type) -> Any:
        if settings is None:
            return self
        raw = settings.store.value(self.key, None)
        if raw is None:
            return self.default() if callable(self.default) else self.default
        try:
            return self.convert(raw)
        except (TypeError, ValueError):
            return self.default() if callable(self.default) else self.default

    def __set__(self, settings: Settings, value: Any) -> None:
        settings.store.setValue(self.key, value)


def _default_output() -> str:
    return os.path.join(os.path.expanduser("~"), "rsbatch")


class Settings:
    """Typed access to the plugin's settings (a fresh QgsSettings each time is cheap)."""

    # --- what to search ---------------------------------------------------------------
    catalog = _Setting("search/catalog", "", str)          # "" = Earth Search v1
    recent_catalogs = _Setting("search/recent_catalogs", list, _list)
    max_cloud = _Setting("search/max_cloud", 30.0, float)
    max_aoi_cloud = _Setting("search/max_aoi_cloud", -1.0, float)  # < 0: no limit
    products = _Setting("search/products", lambda: list(registry.DEFAULT_PRODUCTS), _list)
    cloud_mask = _Setting("search/cloud_mask", True, _bool)
    clip = _Setting("search/clip", True, _bool)
    days_back = _Setting("search/days_back", 30, int)

    # --- what to make of the cells (per-date mosaics, period composites) ----------------
    mosaic = _Setting("reduce/mosaic", True, _bool)
    mosaic_crs = _Setting("reduce/mosaic_crs", "", str)          # "" = the AOI's UTM zone
    composite = _Setting("reduce/composite", "none", str)        # "none" | "median"
    composite_period = _Setting("reduce/composite_period", "all", str)  # all | month | Nd

    # --- where to run -----------------------------------------------------------------
    backend = _Setting("backend", "local", str)
    output_folder = _Setting("local/output_folder", _default_output, str)
    worker_python = _Setting("local/worker_python", "", str)   # "" = core's default
    workers = _Setting("local/workers", 0, int)                # 0 = one per core
    task_log = _Setting("local/task_log", "", str)             # "" = core's default
    aws_stack = _Setting("aws/stack", "rsbatch", str)
    aws_region = _Setting("aws/region", "", str)
    aws_profile = _Setting("aws/profile", "", str)             # a profile NAME only
    aws_output = _Setting("aws/output", "", str)               # "" = the stack's bucket
    spot_price = _Setting("aws/spot_price", 0.02, float)

    # --- results and safety -----------------------------------------------------------
    s3_mode = _Setting("results/s3_mode", "stream", str)       # "stream" | "download"
    download_folder = _Setting("results/download_folder", "", str)
    rgb_stretch = _Setting("results/rgb_stretch", "fixed", str)  # "fixed" | "cumulative"
    auto_load = _Setting("results/auto_load", True, _bool)
    #: jobs whose results the dock adds as cells finish, also across QGIS sessions
    loading_jobs = _Setting("results/loading_jobs", list, _list)
    confirm_cells = _Setting("confirm/cells", 50, int)
    confirm_dollars = _Setting("confirm/dollars", 5.0, float)
    poll_ms = _Setting("poll_ms", 2000, int)

    def __init__(self, store: Any = None) -> None:
        self.store = store or QgsSettings()

    def add_recent_catalog(self, location: str, keep: int = 8) -> None:
        if not location:
            return
        recent = [c for c in self.recent_catalogs if c != location]
        self.recent_catalogs = [location, *recent][:keep]

    def clear(self) -> None:
        """Forget every rsbatch setting (tests, and a 'reset' for users)."""
        self.store.remove(PREFIX.rstrip("/"))
