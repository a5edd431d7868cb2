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

import os
import shutil
from pathlib import Path
from typing import Any

from qgis.core import QgsApplication

from .core.backends.local import checkout_python
from .core.workerenv import env_python

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


def remove_worker_env() -> None:
    """Delete the profile's worker environment (and any scratch left by an interrupted set-up)."""
    folder = worker_env_folder()
    for path in (folder, folder.with_name(folder.name + ".partial"),
                 folder.with_name(folder.name + ".old")):
        shutil.rmtree(path, ignore_errors=True)
