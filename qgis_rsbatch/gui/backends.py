"""Where jobs run, seen from the plugin: backend objects by key, the checks that say exactly
what to install, and the AWS stacks `make deploy` left in the user data folder.

Backends are built lazily inside tasks (the AWS one imports boto3 and may reach the
network), cached by the options that make them, and shared by every task (thread-safe).
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.backends import get_backend
from ..core.errors import DependencyMissing, InvalidInput
from ..core.tasklog import user_data_dir
from ..core.workerenv import worker_process_env

#: (backend name, sorted option items): what a job needs to find its backend again
BackendKey = tuple


def local_key(*, task_log: str = "", worker_python: str = "", workers: int = 0) -> BackendKey:
    return ("local", (("task_log_path", task_log or None),
                      ("worker_python", worker_python or None),
                      ("workers", workers or None)))


def aws_key(*, stack: str, region: str = "", profile: str = "") -> BackendKey:
    return ("aws", (("profile", profile or None), ("region", region or None),
                    ("stack", stack)))


class BackendPool:
    """One backend object per key, made on first use in whichever thread asks first."""

    def __init__(self, factory: Callable[..., Any] = get_backend) -> None:
        self.factory = factory
        self._backends: dict[BackendKey, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: BackendKey) -> Any:
        with self._lock:
            backend = self._backends.get(key)
            if backend is None:
                name, options = key
                backend = self.factory(name, **dict(options))
                self._backends[key] = backend
            return backend

    def clear(self) -> None:
        with self._lock:
            self._backends.clear()


# --- the local worker's Python -------------------------------------------------------------
@dataclass(frozen=True)
class WorkerCheck:
    ok: bool
    python: str
    message: str


_PROBE = """
import importlib, json, sys
found = {}
for name in ("numpy", "rasterio", "numba", "zstandard", "worker.cli",
             "qgis_rsbatch.core.backends.local"):
    try:
        module = importlib.import_module(name)
        found[name] = getattr(module, "__version__", "ok")
    except Exception as exc:
        found[name] = None
gdal = getattr(sys.modules.get("rasterio"), "__gdal_version__", None)
print(json.dumps({"python": sys.version.split()[0], "found": found, "gdal": gdal}))
"""


#: successful checks by path (a probe starts a Python: ~1 s); failures are checked again
_WORKING: dict[str, WorkerCheck] = {}


def forget_checks() -> None:
    """Probe again from now on (a worker environment was just set up)."""
    from ..core.backends.local import _has_worker

    _WORKING.clear()
    _has_worker.cache_clear()


def require_worker_python(python: str | None) -> None:
    """DependencyMissing with what to install unless `python` can run the worker (blocking)."""
    result = _WORKING.get(python or "") or check_worker_python(python)
    if not result.ok:
        raise DependencyMissing(result.message)


def check_worker_python(python: str | None) -> WorkerCheck:
    """Can `python` (None: core's default choice) run rsbatch's worker? Blocking: use a task."""
    result = _check_worker_python(python)
    if result.ok:
        _WORKING[python or ""] = result
    return result


def _check_worker_python(python: str | None) -> WorkerCheck:
    if not python:
        from ..core.backends.local import default_worker_python

        try:
            python = default_worker_python()
        except DependencyMissing as exc:
            return WorkerCheck(False, "", str(exc))
    if not os.path.isfile(python) or not os.access(python, os.X_OK):
        return WorkerCheck(False, python, f"{python} is not an executable file: choose the "
                                          "python of an environment where rsbatch is installed")
    try:
        answer = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True,  # noqa: S603
                                timeout=60, check=False, env=worker_process_env())
        report = json.loads(answer.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return WorkerCheck(False, python, f"{python} did not run a short Python probe; is it "
                                          "a Python 3.9+ interpreter?")
    found = report["found"]
    missing = [name for name, version in found.items() if version is None]
    if not missing:
        return WorkerCheck(True, python, f"Python {report['python']}, rasterio "
                                         f"{found['rasterio']} (GDAL {report.get('gdal')}), "
                                         f"numpy {found['numpy']}")
    packages = [n for n in ("numpy", "rasterio", "numba", "zstandard") if n in missing]
    steps = []
    if packages:
        steps.append(f"{python} -m pip install {' '.join(packages)}")
    if any(n.startswith(("worker", "qgis_rsbatch")) for n in missing):
        steps.append("reinstall the plugin: its ZIP carries the worker package")
    return WorkerCheck(False, python, f"{python} lacks {', '.join(missing)}: run "
                                      + "; then ".join(steps))


# --- AWS -------------------------------------------------------------------------------------
def boto3_missing() -> str | None:
    """None when QGIS's Python can import boto3 (its own, or the one rsbatch's set-up put in
    the profile folder, added to sys.path here), else exactly what to install."""
    from ..core.awslibs import activate
    from ..environments import aws_libs_folder

    if activate(aws_libs_folder()):
        return None
    python = sys.executable if Path(sys.executable).name.lower().startswith("python") \
        else "QGIS's python"
    return ("the AWS backend needs boto3 in QGIS's Python: install it from rsbatch's "
            "settings (Set up, with 'boto3 for AWS jobs'), or Processing rsbatch:setupworker "
            f"with AWS ticked; or by hand: `{python} -m pip install boto3` (Debian/Ubuntu: "
            "`sudo apt install python3-boto3`)")


def stacks_folder() -> Path:
    return Path(user_data_dir()) / "stacks"


def list_stacks() -> list[str]:
    """Stacks deployed from this machine (`make deploy` wrote their outputs here)."""
    folder = stacks_folder()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json"))


def read_stack(stack: str) -> dict[str, Any]:
    """A stack's outputs file (Region, ResultsBucket, TaskLogUri, …); InvalidInput if absent."""
    path = stacks_folder() / f"{stack}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"no outputs of stack '{stack}' in {path.parent}: run `make deploy "
                           f"STACK={stack}` first") from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} does not hold a stack's outputs")
    return data


def default_s3_output(stack: dict[str, Any]) -> str:
    bucket = stack.get("ResultsBucket")
    return f"s3://{bucket}/results" if bucket else ""


def aws_profiles() -> list[str]:
    """Profile names from the AWS config file (names only; nothing else is read or kept)."""
    path = os.environ.get("AWS_CONFIG_FILE") or os.path.join(os.path.expanduser("~"), ".aws",
                                                              "config")
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error):
        return []
    names = []
    for section in parser.sections():
        if section == "default":
            names.append("default")
        elif section.startswith("profile "):
            names.append(section.removeprefix("profile ").strip())
    return names
