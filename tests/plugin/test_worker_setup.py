"""Setting up the worker environment from the dock, as a fresh ZIP install does it: the first
Submit of a local job offers the set-up, runs it in a task and then submits; cancelling the
set-up kills pip and leaves nothing behind.

In this process the .venv's own Python could run workers, so these tests take it away the
way a ZIP install lacks it: no checkout .venv, QGIS's sys.executable not a Python.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qgis_rsbatch.settings import Settings
from tests.plugin.conftest import wait_until
from tests.plugin.test_job_flow import plan_job, wait_finished
from tests.plugin.test_zip_install import WHEELHOUSE

pytestmark = pytest.mark.slow


@pytest.fixture
def fresh_install(tmp_path, monkeypatch):
    """No worker Python anywhere but the profile's (empty) folder; pip only sees the
    wheelhouse."""
    if not (WHEELHOUSE / ".complete").is_file():
        pytest.fail(f"no wheelhouse in {WHEELHOUSE}: run `make setup` (or `make wheelhouse`)")
    profile = tmp_path / "profile" / "rsbatch"
    monkeypatch.setattr("qgis_rsbatch.environments.profile_folder", lambda: profile)
    monkeypatch.setattr("qgis_rsbatch.environments.checkout_python", lambda: None)
    monkeypatch.setattr("qgis_rsbatch.core.backends.local.checkout_python", lambda: None)
    monkeypatch.setattr("qgis_rsbatch.core.backends.local._is_python", lambda path: False)
    monkeypatch.delenv("RSBATCH_WORKER_PYTHON", raising=False)
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(WHEELHOUSE))
    from qgis_rsbatch.gui.backends import forget_checks

    forget_checks()
    yield profile
    forget_checks()


def test_first_submit_offers_the_set_up_then_runs_the_job(dock, sample, fresh_install):
    questions = []

    def confirm(parent, title, text):
        questions.append(title)
        return True

    dock.context.confirm = confirm
    plan_job(dock, sample)
    dock.run_panel.submit_button.click()
    wait_until(lambda: dock.jobs_panel.model.rowCount() == 1, 300,
               "the set-up, then the job in the list")
    assert questions == ["Set up the worker environment?"]
    job_id = dock.jobs_panel.model.job_ids()[0]
    status = wait_finished(dock, job_id, 180)
    assert status.counts["SUCCEEDED"] == 4
    python = str(fresh_install / "worker-env" / "bin" / "python")
    from qgis_rsbatch.core.backends import get_backend

    _, _, handle = get_backend("local").log.load_job(job_id)
    assert handle["python"] == python
    # the Settings tab now names it, with its rasterio and GDAL
    panel = dock.settings_panel
    panel.last_check = None
    panel.check_worker()
    wait_until(lambda: panel.last_check is not None, 60, "the check")
    assert panel.last_check.ok and panel.last_check.python == python
    assert "rasterio 1.4.4 (GDAL 3." in panel.check_label.text()


def test_declining_the_offer_says_what_to_do(dock, sample, fresh_install, qgis_iface):
    from qgis.core import Qgis

    dock.context.confirm = lambda parent, title, text: False
    plan_job(dock, sample)
    dock.run_panel.submit_button.click()
    wait_until(lambda: dock.run_panel._submit_task is None, 60, "the submit task")
    critical = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Critical)
    assert any("set up the worker environment" in m for m in critical), critical
    assert dock.jobs_panel.model.rowCount() == 0
    assert not fresh_install.exists() or not any(fresh_install.iterdir())


def _processes_using(path: Path) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path("/proc", pid, "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if str(path).encode() in command:
            found.append(int(pid))
    return found


def test_cancelling_the_set_up_kills_pip_and_leaves_nothing(dock, fresh_install):
    panel = dock.settings_panel
    task = panel.setup_worker()
    scratch = fresh_install / "worker-env.partial"
    # cancel while pip runs: its process is there, installing into the scratch folder
    wait_until(lambda: task.progress() >= 9 and _processes_using(scratch), 120,
               "pip installing into the scratch folder")
    task.cancel()
    wait_until(lambda: dock.context.worker_setup.task is None, 60, "the task to end")
    assert _processes_using(scratch) == []
    assert not scratch.exists() and not (fresh_install / "worker-env").exists()
    assert panel.setup_button.isEnabled()
    assert Settings().worker_python == ""


def test_try_it_with_sample_data_on_a_fresh_install(dock, fresh_install):
    """One click: the set-up is offered, the samples are generated with the worker's Python
    into the profile folder, and area, catalog and dates are filled; the job then runs."""
    from tests.plugin.test_job_flow import submit

    questions = []
    dock.context.confirm = lambda parent, title, text: questions.append(title) or True
    ready = []
    dock.sample_data.ready.connect(ready.append)
    dock.sample_button.click()
    wait_until(lambda: ready, 300, "the set-up and the sample data")
    assert questions == ["Set up the worker environment?"]
    catalog = fresh_install / "samples" / "catalog.json"
    assert ready[0]["catalog"] == str(catalog) and catalog.is_file()
    search = dock.search_panel
    assert search.catalog_location() == str(catalog)
    wait_until(lambda: dock.aoi_panel.tiles, 30, "tiles")
    assert [t.tile for t in dock.aoi_panel.tiles] == ["32TMT", "32TNT"]
    search.search_button.click()
    wait_until(search.model.scenes, 30, "scenes")
    assert len(search.model.scenes()) == 4
    wait_until(lambda: dock.run_panel.plan, 30, "the estimate")
    job_id = submit(dock)
    # the dock's defaults: 4 cells, then a mosaic per date and product
    records = wait_finished(dock, job_id, 180).records
    assert sorted((r.kind, r.status.value) for r in records) == [
        ("cell", "SUCCEEDED")] * 4 + [("mosaic", "SUCCEEDED")] * 4
