"""The Jobs tab as an analyst reads it: what a job was about, "3/4 ✓, 1 ✗", a failed cell's
reason in full; a failed job retried into another folder; an output folder that cannot
take the results refused before anything runs."""

from __future__ import annotations

import os
import shutil

from qgis.core import Qgis

from qgis_rsbatch.core.contract import Status
from qgis_rsbatch.gui.cell_log_view import CellLogDialog
from tests.plugin.conftest import messages, wait_until
from tests.plugin.test_job_flow import plan_job, submit, wait_finished


def test_a_failed_cell_reads_in_full_and_retries_into_another_folder(dock, sample, tmp_path):
    catalog_dir = tmp_path / "catalog"
    shutil.copytree(os.path.dirname(sample["catalog"]), catalog_dir)
    plan_job(dock, sample, str(catalog_dir / "catalog.json"))
    red = next((catalog_dir / "32TNT_2024-06-11").glob("B04*"))
    hidden = red.with_name(red.name + ".hidden")
    red.rename(hidden)
    job_id = submit(dock)
    status = wait_finished(dock, job_id)
    failed = next(r for r in status.records if r.status is Status.FAILED)
    panel, model = dock.jobs_panel, dock.jobs_panel.model
    row = model.job_row(job_id)
    assert model.item(row, 2).text() == "3/4 ✓, 1 ✗"
    about = model.item(row, 3).text()
    assert "47.6" in about and "°N" in about and "°E" in about
    assert "2024-06-01 → 2024-06-11" in about and "RGB + NDVI" in about
    # the reason in full: the cell's tooltip and the details pane
    cell = model.cell_item(job_id, failed.cell_id, 3)
    assert cell.toolTip() == failed.error and len(failed.error) > 40
    panel.tree.setCurrentIndex(cell.index())
    assert f"Reason: {failed.error}" in panel.details.toPlainText()
    panel.select_job(job_id)
    assert f"✗ 32TNT 2024-06-11: {failed.error}" in panel.details.toPlainText()

    # retried into another folder: a new job of the failed cell only, writing there
    hidden.rename(red)
    assert panel._actions["elsewhere"].isEnabled()
    elsewhere = tmp_path / "elsewhere"
    panel.choose_folder = lambda: str(elsewhere)
    panel._actions["elsewhere"].click()
    wait_until(lambda: model.rowCount() == 2, 60, "the retry job")
    again = model.job_ids()[0]
    assert again != job_id
    done = wait_finished(dock, again)
    assert [r.cell_id for r in done.records] == [failed.cell_id]
    assert done.records[0].status is Status.SUCCEEDED
    outputs = list(done.records[0].outputs.values())
    assert outputs and all(uri.startswith(f"file://{elsewhere}/{again}/") for uri in outputs)
    assert model.item(model.job_row(again), 2).text() == "1/1 ✓"


def test_an_output_folder_that_cannot_take_the_results_is_refused(dock, sample, tmp_path,
                                                                   qgis_iface):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    plan_job(dock, sample)
    dock.run_panel.backend_form.folder_widget.setFilePath(str(blocker / "results"))
    wait_until(lambda: dock.run_panel.plan, 30, "the estimate")
    dock.run_panel.submit_button.click()
    wait_until(lambda: messages(qgis_iface, Qgis.MessageLevel.Critical), 60, "the refusal")
    critical = messages(qgis_iface, Qgis.MessageLevel.Critical)
    assert any(f"the output folder {blocker}/results cannot be created (Not a directory)"
               in m for m in critical), critical
    assert dock.jobs_panel.model.rowCount() == 0


def test_a_cells_worker_log_opens_from_its_context_menu(dock, sample, tmp_path):
    """Right-click a cell ▸ Show log: its worker's own log, read in a task, as
    `rsbatch logs` prints it; a job gone from the history says so instead."""
    plan_job(dock, sample, sample["catalog"])
    job_id = submit(dock)
    status = wait_finished(dock, job_id)
    cell = status.records[0]
    panel = dock.jobs_panel
    menu = panel.context_menu(panel.model.cell_item(job_id, cell.cell_id, 0).index())
    assert menu.actions()[0].text() == "Show log"
    job_menu = panel.context_menu(panel.model.index(panel.model.job_row(job_id), 0))
    assert "Show log" not in [action.text() for action in job_menu.actions()]
    menu.actions()[0].trigger()
    dialog = panel.findChildren(CellLogDialog)[-1]
    wait_until(lambda: dialog.task is None, 30, "the log")
    text = dialog.text.toPlainText()
    assert "attempt started by the rsbatch supervisor" in text
    assert cell.cell_id in text                       # the worker's own progress lines
    folder = os.path.dirname(next(iter(cell.outputs.values())).removeprefix("file://"))
    with open(os.path.join(folder, "logs", f"{cell.cell_id}.log")) as fh:
        assert text == fh.read()
    assert dialog.refresh_button.isEnabled()
    dialog.close()

    ghost = panel.show_log(job_id, "32TMT_1999-01-01")
    wait_until(lambda: ghost.task is None, 30, "the error")
    assert ghost.state.text() == "The log could not be read"
    assert "has no cell 32TMT_1999-01-01" in ghost.text.toPlainText()
    ghost.close()
