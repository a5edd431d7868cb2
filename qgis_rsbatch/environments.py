"""The plugin's private environments, kept in the QGIS profile's folder (`<profile>/rsbatch/`),
and which worker Python a local job uses.

- `worker-env/`: the worker's virtual environment (core.workerenv makes it), so an analyst
  with nothing but QGIS and the plugin ZIP can run local jobs.
- `aws-libs/`: boto3 for QGIS's own process (core.awslibs), for AWS jobs.
- `samples/`: the generated sample scenes of "Try it with sample data".

Which Python runs workers: the one chosen in the settings; else, when the plugin runs from a
checkout that has a .venv, core's default (that .venv); else the profile's worker
environment when it exists (it is moved into place only once complete); else core's default
(which says what to do). Cheap (no process started): safe on the main thread.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from qgis.core import QgsApplication

from .core.backends.local import checkout_python
from .core.errors import DependencyMissing
from .core.workerenv import env_python, worker_process_env

FOLDER = "rsbatch"


def profile_folder() -> Path:
    """`<QGIS profile>/rsbatch`: everything the plugin installs or generates lives here."""
    return Path(QgsApplication.qgisSettingsDirPath()) / FOLDER


def worker_env_folder() -> Path:
    return profile_folder() / "worker-env"


def aws_libs_folder() -> Path:
    return profile_folder() / "aws-libs"


def samples_folder() -> Path:
    return profile_folder() / "samples"


def profile_worker_python() -> str | None:
    """The profile's worker environment's python, when the environment exists."""
    python = env_python(worker_env_folder())
    return python if os.path.isfile(python) else None


def worker_python(settings: Any) -> str:
    """The worker Python for local jobs ('' = core's default: $RSBATCH_WORKER_PYTHON, the
    checkout's .venv, or a message saying to set up the worker environment)."""
    chosen = str(settings.worker_python or "").strip()
    if chosen:
        return chosen
    if checkout_python() is not None:
        return ""
    return profile_worker_python() or ""


def remove_installed() -> None:
    """Delete what the set-up installed (the worker environment and boto3, with any scratch
    an interrupted set-up left); the sample data and job outputs stay."""
    for folder in (worker_env_folder(), aws_libs_folder()):
        for path in (folder, folder.with_name(folder.name + ".partial"),
                     folder.with_name(folder.name + ".old")):
            shutil.rmtree(path, ignore_errors=True)


def generate_samples(python: str, folder: str | os.PathLike, crop: int = 1600) -> dict:
    """Generate the sample scenes and their static catalog into `folder` with the worker's
    Python (they are written with rasterio); returns {"catalog", "aoi", "start", "end"}.
    Blocking: run it in a task. An existing complete sample catalog is reused."""
    summary = Path(folder) / "sample.json"
    if summary.is_file():
        try:
            found = json.loads(summary.read_text(encoding="utf-8"))
            if os.path.isfile(found.get("catalog", "")):
                return found
        except ValueError:
            pass
    try:
        answer = subprocess.run(  # noqa: S603 - our own module, our own arguments
            [python, "-m", "worker.samples", str(folder), "--crop", str(crop)],
            capture_output=True, text=True, timeout=600, check=False,
            env=worker_process_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DependencyMissing(f"{python} could not generate the sample data: {exc}") from exc
    if answer.returncode != 0:
        last = (answer.stderr.strip().splitlines() or ["no output"])[-1]
        raise DependencyMissing(f"{python} could not generate the sample data: {last}")
    found = json.loads(answer.stdout.strip().splitlines()[-1])
    summary.write_text(json.dumps(found), encoding="utf-8")
    return found
