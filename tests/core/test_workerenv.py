"""Finding the Python QGIS runs, and the code path a worker process gets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from qgis_rsbatch.core import workerenv
from qgis_rsbatch.core.errors import DependencyMissing

ROOT = Path(__file__).resolve().parents[2]


def test_the_qgis_program_is_never_taken_for_a_python(tmp_path, monkeypatch):
    """Windows and macOS builds: sys.executable (and _base_executable) are QGIS itself."""
    qgis = tmp_path / "bin" / "qgis-bin"
    qgis.parent.mkdir()
    qgis.write_text("#!/bin/sh\ntouch started\n")
    qgis.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(qgis))
    monkeypatch.setattr(sys, "_base_executable", str(qgis), raising=False)
    candidates = workerenv._candidates()
    assert str(qgis) not in candidates
    assert all(Path(c).name.startswith("python") for c in candidates)


def test_the_python_beside_qgis_is_found(tmp_path, monkeypatch):
    """OSGeo4W-like: QGIS in bin/, the Python of the same version as exec_prefix."""
    qgis = tmp_path / "bin" / "qgis-bin"
    qgis.parent.mkdir()
    qgis.write_text("")
    monkeypatch.setattr(sys, "executable", str(qgis))
    monkeypatch.setattr(sys, "_base_executable", str(qgis), raising=False)
    prefix = tmp_path / "apps" / "Python3"
    (prefix / "bin").mkdir(parents=True)
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    os.symlink(os.path.realpath(sys.base_prefix + f"/bin/{version}"), prefix / "bin" / version)
    monkeypatch.setattr(sys, "base_exec_prefix", str(prefix))
    monkeypatch.setattr(sys, "exec_prefix", str(prefix))
    monkeypatch.setattr(workerenv.shutil, "which", lambda name: None)
    assert workerenv.base_python() == str(prefix / "bin" / version)


def test_no_python_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(workerenv, "_candidates", lambda: [str(tmp_path / "python3")])
    with pytest.raises(DependencyMissing, match="python3-venv"):
        workerenv.base_python()


def test_worker_processes_get_our_code_first_and_keep_the_rest():
    env = workerenv.worker_process_env({"PYTHONPATH": os.pathsep.join(["/x", str(ROOT)])})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/x"]  # a checkout: one root


def test_the_installation_qgis_runs_wins_over_another_of_the_same_version(tmp_path,
                                                                          monkeypatch):
    """An embedded interpreter's sys.executable may be the first python3 on PATH (a pyenv
    shim); the Python whose base prefix is QGIS's own comes first."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    other = tmp_path / "shims" / f"python{version}"
    other.parent.mkdir()
    other.write_text(f"#!/bin/sh\necho {version}; echo /somewhere/else\n")
    other.chmod(0o755)
    own = os.path.realpath(sys.base_prefix + f"/bin/python{version}")
    monkeypatch.setattr(workerenv, "_candidates", lambda: [str(other), own])
    assert workerenv.base_python() == own
    monkeypatch.setattr(workerenv, "_candidates", lambda: [str(other)])
    assert workerenv.base_python() == str(other)  # same version: still better than nothing
