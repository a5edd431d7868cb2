"""Closing and reopening QGIS while a local job runs: QGIS asks once and closes; cells that
finish while QGIS is closed are added to the map in the next session, each exactly once."""

from __future__ import annotations

from typing import Any

import pytest
from qgis.core import QgsApplication, QgsProject

from qgis_rsbatch.core.backends import get_backend
from qgis_rsbatch.settings import Settings
from tests.plugin.conftest import process_events, rsbatch_tasks, wait_until
from tests.plugin.test_job_flow import plan_job, submit

pytestmark = pytest.mark.slow


def start_session(iface: Any) -> Any:
    """What QGIS does on start with the plugin enabled, and the user opening the dock."""
    from qgis_rsbatch import classFactory

    main = iface.mainWindow()
    iface.addDockWidget = main.addDockWidget
    iface.removeDockWidget = main.removeDockWidget
    main.show()
    plugin = classFactory(iface)
    plugin.initGui()
    plugin.toggle_dock(True)
    wait_until(lambda: plugin.dock.jobs_panel._history_task is None, 30, "the job history")
    return plugin


def result_uris(project: QgsProject) -> list[str]:
    return [layer.customProperty("rsbatch/uri") for layer in project.mapLayers().values()
            if layer.customProperty("rsbatch/uri")]


def test_cells_finished_while_qgis_was_closed_are_added_once(qgis_iface, qgis_new_project,
                                                            sample, tmp_path):
    Settings().output_folder = str(tmp_path / "results")
    Settings().workers = 1
    first = start_session(qgis_iface)
    dock = first.dock
    dock.run_panel.backend_form.workers_spin.setValue(1)
    plan_job(dock, sample)
    job_id = submit(dock)
    project = QgsProject.instance()
    # the first cell's two layers arrive; then QGIS is closed, the job still running
    wait_until(lambda: len(result_uris(project)) >= 2, 120, "the first results")
    first.unload()
    wait_until(lambda: not rsbatch_tasks(), 60, "rsbatch tasks to end")
    backend = get_backend("local")
    assert not backend.status(job_id).finished, "the job ended before QGIS closed"
    before = len(result_uris(project))
    status = backend.wait(job_id, interval=0.2, timeout=300)  # no QGIS runs meanwhile
    assert status.counts["SUCCEEDED"] == 4
    assert len(result_uris(project)) == before

    second = start_session(qgis_iface)
    try:
        wait_until(lambda: len(result_uris(project)) >= 8, 120, "every result")
        process_events(2.0)  # several polls later: nothing added twice
        uris = result_uris(project)
        assert len(uris) == 8 and len(set(uris)) == 8
        assert job_id not in Settings().loading_jobs  # finished: not loaded again next time
    finally:
        second.unload()
        wait_until(lambda: not rsbatch_tasks(), 60, "rsbatch tasks to end")
        project.clear()


@pytest.mark.parametrize("cancel", [False, True])
def test_quitting_with_a_running_local_job_asks_once_then_closes(dock, sample, qgis_iface,
                                                                cancel):
    asked = []
    dock.context.confirm = lambda parent, title, text: asked.append(title) or cancel
    Settings().workers = 1
    dock.run_panel.backend_form.workers_spin.setValue(1)
    plan_job(dock, sample)
    job_id = submit(dock)
    wait_until(rsbatch_tasks, 30, "a poll task")  # QGIS would ask about it
    main = qgis_iface.mainWindow()
    assert main.close()  # the close event was accepted
    assert asked == ["rsbatch jobs are running"]
    assert not main.isVisible()
    active = [t.description() for t in QgsApplication.taskManager().activeTasks()
              if t.description().startswith("rsbatch")]
    assert active == []  # nothing left for QGIS to ask about
    backend = get_backend("local")
    if cancel:
        assert backend.status(job_id).counts["CANCELLED"] >= 1
    else:  # it goes on without QGIS
        assert backend.wait(job_id, interval=0.2, timeout=300).counts["SUCCEEDED"] == 4
