"""boto3 for QGIS's own process (AWS jobs from a ZIP install), without shadowing anything.

QGIS does not ship boto3, and a plugin must never put its own copy of numpy, dateutil,
urllib3 or six where QGIS would import it instead of its own (the QGIS STAC API Browser's
vendored libraries did: its issues #261, #276, #279). So boto3 goes into a private `--target`
folder with only what QGIS's Python cannot already import: boto3, botocore, s3transfer and
jmespath (`--no-deps`), plus whichever of their pure-Python dependencies are missing. The
folder is *appended* to sys.path when the AWS backend is first used, so a module QGIS has
always wins, and a module already imported is never replaced.

Versions are the worker environment's (pip resolved them together there), installed with
that environment's pip (same Python version as QGIS; these wheels are pure Python). Built in
a scratch folder, moved into place last, marked complete by a file written last.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from .errors import DependencyMissing
from .workerenv import pip_env, pip_failure, pip_source, run_step, swap_in

#: installed always (QGIS has none of them)
AWS_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath")
#: their dependencies (module → distribution): installed only when QGIS's Python lacks them
DEPENDENCIES = {"dateutil": "python-dateutil", "urllib3": "urllib3", "six": "six"}
MARKER = "rsbatch-aws-libs.json"

_VERSIONS = ("import json, sys; from importlib.metadata import version; "
             "print(json.dumps({n: version(n) for n in sys.argv[1:]}))")


def missing_dependencies() -> list[str]:
    """Distributions boto3 needs that this Python cannot import (before our folder is added)."""
    return [dist for module, dist in DEPENDENCIES.items()
            if importlib.util.find_spec(module) is None]


def _versions(python: str, names: list[str]) -> dict[str, str]:
    try:
        answer = subprocess.run([python, "-c", _VERSIONS, *names],  # noqa: S603
                                capture_output=True, text=True, timeout=60, check=False)
        return json.loads(answer.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        raise DependencyMissing(
            f"{python} has no {', '.join(names)}: set up the worker environment first "
            "(rsbatch Settings ▸ Set up, or Processing rsbatch:setupworker)") from None


def install_aws_libs(folder: str | os.PathLike, python: str, *,
                     proxies: Mapping[str, str] | None = None,
                     cancelled: Callable[[], bool] | None = None) -> Path:
    """Install boto3 and QGIS's missing dependencies of it into `folder` with `python`'s pip
    (the worker environment's), at the versions installed there. Returns the folder."""
    final = Path(folder)
    scratch = final.with_name(final.name + ".partial")
    names = [*AWS_PACKAGES, *missing_dependencies()]
    pins = _versions(python, names)
    env = pip_env(proxies)
    shutil.rmtree(scratch, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        code, output = run_step(
            [python, "-m", "pip", "install", "--no-input", "--progress-bar", "off",
             "--no-deps", "--target", str(scratch), *(f"{n}=={v}" for n, v in pins.items())],
            env=env, cancelled=cancelled)
        if code != 0:
            raise DependencyMissing(
                f"boto3 was not installed for QGIS: {pip_failure(output)} from {pip_source(env)}; "
                f"nothing was installed. By hand: {python} -m pip install --no-deps --target "
                f"{final} {' '.join(f'{n}=={v}' for n, v in pins.items())}")
        (scratch / MARKER).write_text(json.dumps(pins, indent=1), encoding="utf-8")
        swap_in(scratch, final)
        return final
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def activate(folder: str | os.PathLike) -> bool:
    """Make the folder's boto3 importable (appended to sys.path, once) if it is complete.
    Returns whether boto3 can now be imported."""
    path = str(folder)
    if os.path.isfile(os.path.join(path, MARKER)) and path not in sys.path:
        sys.path.append(path)
        importlib.invalidate_caches()
    return importlib.util.find_spec("boto3") is not None
