"""The dock end to end on the local backend with generated Sentinel-2 scenes: search, tick,
estimate, submit, watch the cells, get styled layers in the job's group; failures, retry,
cancel, a restart; and the blocking work never runs on the GUI thread."""

from __future__ import annotations

import math
import os
import shutil

import pytest
import rasterio
from qgis.core import (
    Qgis,
    QgsCoordinateTransform,
    QgsLayerTreeGroup,
    QgsPointXY,
    QgsProject,
    QgsRaster,
)

from qgis_rsbatch.core.contract import Status
from qgis_rsbatch.gui.job_model import PROGRESS_ROLE
from qgis_rsbatch.gui.layer_tree import URI_PROPERTY
from qgis_rsbatch.gui.styles import NDVI_COLORS
from tests.plugin.conftest import messages, wait_until

pytestmark = pytest.mark.slow


def plan_job(dock, sample: dict, catalog: str | None = None, *, mosaic: bool = False) -> None:
    """AOI, catalog, dates, a search, all scenes ticked, the estimate ready. The Mosaic box
    (on by default in the dock) is set to `mosaic`: most tests here count per-tile layers
    and records; test_reduce_ui drives the mosaics."""
    dock.run_panel.reduce_options.mosaic_check.setChecked(mosaic)
    dock.aoi_panel.set_aoi(sample["aoi"])
    wait_until(lambda: dock.aoi_panel.tiles, 30, "tiles")
    search = dock.search_panel
    search.set_catalog(catalog or sample["catalog"])
    search.set_dates(sample["start"], sample["end"])
    search.cloud_spin.setValue(100)
    assert search.search_button.isEnabled()
    search.search_button.click()
    wait_until(search.model.scenes, 30, "scenes")
    wait_until(lambda: dock.run_panel.plan, 30, "the estimate")


def submit(dock) -> str:
    count = dock.jobs_panel.model.rowCount()
    dock.run_panel.submit_button.click()
    wait_until(lambda: dock.jobs_panel.model.rowCount() > count, 30, "the job in the list")
    return dock.jobs_panel.model.job_ids()[0]


def wait_finished(dock, job_id: str, timeout: float = 120):
    monitor = dock.jobs_panel.monitor
    wait_until(lambda: monitor.jobs[job_id].finished, timeout, f"job {job_id} to finish")
    return monitor.jobs[job_id].status


def result_layers(job_id: str | None = None) -> list:
    layers = [layer for layer in QgsProject.instance().mapLayers().values()
              if layer.customProperty(URI_PROPERTY)]
    return [la for la in layers if job_id is None or la.customProperty("rsbatch/job_id") == job_id]


def _valid_pixel(path: str) -> tuple[float, float, list[float]]:
    """Map coordinates of a valid pixel near the middle, and its raw values per band."""
    with rasterio.open(path) as ds:
        data = ds.read(masked=True)
        rows, cols = data.shape[1:]
        for dr in range(rows // 2):
            for r, c in ((rows // 2 + dr, cols // 2), (rows // 2 - dr, cols // 2)):
                if not data[:, r, c].mask.any():
                    x, y = ds.xy(r, c)
                    return x, y, [float(v) for v in data[:, r, c]]
    raise AssertionError(f"no valid pixel in {path}")


def test_full_job_ends_with_styled_layers_in_their_group(dock, sample, qgis_iface,
                                                         thread_spy):
    from qgis_rsbatch.core import catalog, grid
    from qgis_rsbatch.core.backends.local import LocalBackend

    for owner, name in ((grid, "tiles_for_aoi"), (catalog, "search"),
                        (LocalBackend, "submit"), (LocalBackend, "status")):
        thread_spy.watch(owner, name)
    plan_job(dock, sample)
    assert len(dock.search_panel.model.selected()) == 4
    assert "4 cell(s)" in dock.run_panel.estimate_label.text()
    assert "GB to read" in dock.run_panel.estimate_label.text()
    job_id = submit(dock)
    assert dock.tabs.currentWidget() is dock.jobs_panel
    status = wait_finished(dock, job_id)
    wait_until(lambda: len(result_layers(job_id)) == 8, 60, "8 result layers")

    # the blocking work ran in task threads, never on the GUI thread (how long the GUI
    # thread stalls depends on the machine: `make bench` measures it, bench/results/gui.md)
    assert thread_spy.called() == {"qgis_rsbatch.core.grid.tiles_for_aoi",
                                   "qgis_rsbatch.core.catalog.search",
                                   "LocalBackend.submit", "LocalBackend.status"}
    assert thread_spy.on_gui_thread() == []

    assert status.counts["SUCCEEDED"] == 4
    model = dock.jobs_panel.model
    row = model.job_row(job_id)
    assert model.item(row, 1).text() == "succeeded"
    assert model.item(row, 2).data(PROGRESS_ROLE) == 1.0 and model.item(row, 2).text() == "4/4 ✓"
    assert [dock.jobs_panel.cell_text(job_id, c, 1) for c in
            ("32TMT_2024-06-01", "32TNT_2024-06-11")] == ["succeeded", "succeeded"]
    assert any(m.endswith(f"Job {job_id} submitted: 4 cell(s) on this computer")
               for m in messages(qgis_iface, Qgis.MessageLevel.Info))
    assert any(m.endswith(f"Job {job_id} finished: 4 cell(s) succeeded")
               for m in messages(qgis_iface, Qgis.MessageLevel.Success))

    # one group per job, NDVI above RGB, newest date first
    root = QgsProject.instance().layerTreeRoot()
    group = next(g for g in root.children() if isinstance(g, QgsLayerTreeGroup)
                 and g.name() == f"rsbatch {job_id}")
    assert [g.name() for g in group.children()] == ["NDVI", "RGB"]
    ndvi_names = [node.name() for node in group.findGroup("NDVI").findLayers()]
    tag = job_id.rsplit("-", 1)[1]  # another job's layers have other names
    assert ndvi_names == [f"32TMT 2024-06-11 NDVI · {tag}", f"32TNT 2024-06-11 NDVI · {tag}",
                          f"32TMT 2024-06-01 NDVI · {tag}", f"32TNT 2024-06-01 NDVI · {tag}"]

    ndvi = next(la for la in result_layers(job_id)
                if la.name() == f"32TMT 2024-06-01 NDVI · {tag}")
    renderer = ndvi.renderer()
    assert renderer.type() == "singlebandpseudocolor" and renderer.band() == 1
    assert (renderer.classificationMin(), renderer.classificationMax()) == (-1.0, 1.0)
    items = renderer.shader().rasterShaderFunction().colorRampItemList()
    assert [items[0].value, items[-1].value] == [-1.0, 1.0]
    assert [items[0].color.name(), items[5].color.name(), items[-1].color.name()] == [
        NDVI_COLORS[0], NDVI_COLORS[5], NDVI_COLORS[-1]]
    assert ndvi.dataProvider().sourceHasNoDataValue(1)
    assert math.isnan(ndvi.dataProvider().sourceNoDataValue(1))

    rgb = next(la for la in result_layers(job_id) if la.name() == f"32TMT 2024-06-01 RGB · {tag}")
    renderer = rgb.renderer()
    assert renderer.type() == "multibandcolor"
    assert (renderer.redBand(), renderer.greenBand(), renderer.blueBand()) == (1, 2, 3)
    for enhancement in (renderer.redContrastEnhancement(), renderer.greenContrastEnhancement(),
                        renderer.blueContrastEnhancement()):
        # QGIS reads the files' band scale 0.0001: the layer's values are reflectance
        assert (enhancement.minimumValue(), enhancement.maximumValue()) == (0.0, 0.3)
    assert rgb.dataProvider().sourceNoDataValue(1) == 0

    # double-clicking the job zooms the map to its results
    canvas = dock.context.canvas
    canvas.setExtent(canvas.extent().buffered(1e6))
    assert dock.jobs_panel.zoom_to(model.index(row, 0))
    to_canvas = QgsCoordinateTransform(rgb.crs(), canvas.mapSettings().destinationCrs(),
                                       QgsProject.instance())
    layer_box = to_canvas.transformBoundingBox(rgb.extent())
    assert canvas.extent().contains(layer_box)
    assert canvas.extent().width() < 6 * layer_box.width()

    # the layers show the files' values: a pixel through QGIS equals the pixel in the file
    path = ndvi.source()
    x, y, (value,) = _valid_pixel(path)
    sample_value, ok = ndvi.dataProvider().sample(QgsPointXY(x, y), 1)
    assert ok and sample_value == pytest.approx(value, abs=1e-7)
    x, y, values = _valid_pixel(rgb.source())
    identified = rgb.dataProvider().identify(QgsPointXY(x, y),
                                             QgsRaster.IdentifyFormat.IdentifyFormatValue)
    assert identified.isValid()
    got = [identified.results()[band] for band in (1, 2, 3)]
    assert got == pytest.approx([v * 0.0001 for v in values], abs=1e-6)
    assert all(v > 0 for v in values)


def test_a_failing_cell_shows_its_reason_and_retry_runs_it_again(dock, sample, tmp_path,
                                                                  qgis_iface):
    catalog_dir = tmp_path / "catalog"
    shutil.copytree(os.path.dirname(sample["catalog"]), catalog_dir)
    plan_job(dock, sample, str(catalog_dir / "catalog.json"))
    red = next((catalog_dir / "32TNT_2024-06-11").glob("B04*"))
    hidden = red.with_name(red.name + ".hidden")
    red.rename(hidden)
    job_id = submit(dock)
    status = wait_finished(dock, job_id)
    assert status.counts["FAILED"] == 1 and status.counts["SUCCEEDED"] == 3
    failed = next(r for r in status.records if r.status is Status.FAILED)
    assert failed.cell_id == "32TNT_2024-06-11" and failed.error
    # the reason is in the dock (cell row), and in a message-bar notice
    assert dock.jobs_panel.cell_text(job_id, failed.cell_id, 1) == "failed"
    assert dock.jobs_panel.cell_text(job_id, failed.cell_id, 3) == failed.error
    assert "B04" in failed.error or red.name in failed.error
    warnings = messages(qgis_iface, Qgis.MessageLevel.Warning)
    assert any(f"Cell {failed.cell_id} of job {job_id} failed: {failed.error}" in m
               for m in warnings)
    assert any(m.endswith(f"Job {job_id} finished: 3/4 cell(s) succeeded, 1 failed")
               for m in warnings)
    model = dock.jobs_panel.model
    assert model.item(model.job_row(job_id), 1).text() == "1 failed"
    wait_until(lambda: len(result_layers(job_id)) == 6, 60, "the 6 layers that succeeded")

    hidden.rename(red)
    dock.jobs_panel.select_job(job_id)
    assert dock.jobs_panel._actions["retry"].isEnabled()
    dock.jobs_panel._actions["retry"].click()
    wait_until(lambda: dock.jobs_panel.cell_status(job_id, failed.cell_id) is Status.SUCCEEDED,
               120, "the retried cell")
    assert dock.jobs_panel.monitor.jobs[job_id].status.succeeded
    wait_until(lambda: len(result_layers(job_id)) == 8, 60, "all 8 layers")


def test_cancel_stops_the_job_and_marks_unfinished_cells(dock, sample):
    from qgis_rsbatch.settings import Settings

    Settings().workers = 1
    dock.run_panel.backend_form.workers_spin.setValue(1)
    plan_job(dock, sample)
    job_id = submit(dock)
    dock.jobs_panel.select_job(job_id)
    assert dock.jobs_panel._actions["cancel"].isEnabled()
    dock.jobs_panel._actions["cancel"].click()
    status = wait_finished(dock, job_id)
    assert status.counts["CANCELLED"] >= 1
    cancelled = [r.cell_id for r in status.records if r.status is Status.CANCELLED]
    assert dock.jobs_panel.cell_text(job_id, cancelled[0], 1) == "cancelled"
    assert dock.jobs_panel.cell_text(job_id, cancelled[0], 3) == "cancelled by the user"


def test_jobs_survive_a_restart(plugin, qgis_iface, sample):
    plugin.toggle_dock(True)
    dock = plugin.dock
    wait_until(lambda: dock.jobs_panel._history_task is None, 30, "history")
    plan_job(dock, sample)
    job_id = submit(dock)
    wait_finished(dock, job_id)
    plugin.unload()

    from qgis_rsbatch import classFactory

    again = classFactory(qgis_iface)
    again.initGui()
    try:
        again.toggle_dock(True)
        panel = again.dock.jobs_panel
        wait_until(lambda: job_id in panel.model.job_ids(), 30, "the job from the task log")
        assert panel.model.item(panel.model.job_row(job_id), 1).text() == "succeeded"
        assert panel.cell_text(job_id, "32TMT_2024-06-01", 1) == "succeeded"
        # history does not reload results on its own; the button does
        panel.select_job(job_id)
        assert panel._actions["load"].isEnabled()
        panel._actions["load"].click()
        wait_until(lambda: len(result_layers(job_id)) == 8, 60, "the job's layers")
    finally:
        again.unload()
