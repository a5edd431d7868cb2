"""Per-date mosaics and period composites from the dock, as an analyst gets them: the run
step's options (on by default, a CRS of one's own, a median per month), the estimate counting
the units, the units' rows and logs in the Jobs tab, and on the map one time-aware layer per
date and product, the composites in a group of their own, the tiles on request."""

from __future__ import annotations

import os

import pytest
import rasterio
from qgis.core import Qgis, QgsLayerTreeGroup, QgsProject
from qgis.PyQt.QtCore import QDateTime, Qt

from qgis_rsbatch.core.contract import Status
from qgis_rsbatch.gui.cell_log_view import CellLogDialog
from qgis_rsbatch.gui.compat import FIXED_TEMPORAL_RANGE
from qgis_rsbatch.gui.reduce_options import ReduceOptions
from qgis_rsbatch.settings import Settings
from tests.plugin.conftest import messages, wait_until
from tests.plugin.test_job_flow import result_layers, submit, wait_finished

pytestmark = pytest.mark.slow


def _search(dock, sample) -> None:
    """AOI, catalog, dates, a search, every scene ticked, the estimate ready (no option
    touched: the dock's own defaults)."""
    dock.aoi_panel.set_aoi(sample["aoi"])
    wait_until(lambda: dock.aoi_panel.tiles, 30, "tiles")
    search = dock.search_panel
    search.set_catalog(sample["catalog"])
    search.set_dates(sample["start"], sample["end"])
    search.cloud_spin.setValue(100)
    search.search_button.click()
    wait_until(search.model.scenes, 30, "scenes")
    wait_until(lambda: dock.run_panel.plan, 30, "the estimate")


def _estimate(dock) -> str:
    wait_until(lambda: dock.run_panel.plan or "color:#d7301f" in
               dock.run_panel.estimate_label.text(), 30, "the estimate")
    return dock.run_panel.estimate_label.text()


def _utc(text: str) -> QDateTime:
    return QDateTime.fromString(text, Qt.DateFormat.ISODate)


def _job_group(job_id: str) -> QgsLayerTreeGroup:
    root = QgsProject.instance().layerTreeRoot()
    return next(g for g in root.children() if isinstance(g, QgsLayerTreeGroup)
                and g.name() == f"rsbatch {job_id}")


def test_mosaics_and_a_monthly_median_from_the_dock(dock, sample, qgis_iface):
    options = dock.run_panel.reduce_options
    assert options.mosaic_check.isChecked()                   # mosaics are the default
    assert options.composite_combo.currentData() == "none"
    _search(dock, sample)
    # the estimate counts the units; the automatic CRS is the zone of most of the AOI
    text = _estimate(dock)
    assert "4 cell(s)" in text and "4 mosaic(s) in EPSG:32632" in text
    assert "composite" not in text

    # a CRS of one's own: a geographic one cannot hold 10 m pixels, a UTM zone can
    options.set_crs("EPSG:4326")
    assert "EPSG:4326" in _estimate(dock) and "not projected in metres" in _estimate(dock)
    options.set_crs("EPSG:32633")
    wait_until(lambda: "EPSG:32633" in _estimate(dock), 30, "the estimate in EPSG:32633")
    options.set_crs("")
    # a median per calendar month: the range lies in June, so one period, two products
    options.composite_combo.setCurrentIndex(options.composite_combo.findData("median"))
    options.period_combo.setCurrentIndex(options.period_combo.findData("month"))
    assert options.period_combo.isEnabled() and options.days_spin.isHidden()
    wait_until(lambda: "2 median composite(s)" in _estimate(dock), 30, "the composites")
    assert "4 mosaic(s), 2 median composite(s) in EPSG:32632" in _estimate(dock)

    job_id = submit(dock)
    status = wait_finished(dock, job_id, timeout=180)
    assert status.counts["SUCCEEDED"] == 10                   # 4 cells, 4 mosaics, 2 composites
    tag = job_id.rsplit("-", 1)[1]
    assert any(m.endswith(f"Job {job_id} submitted: 4 cell(s), 4 mosaic(s) and 2 composite(s)"
                          " on this computer")
               for m in messages(qgis_iface, Qgis.MessageLevel.Info))
    assert any(m.endswith(f"Job {job_id} finished: 4 cell(s), 4 mosaic(s) and 2 composite(s)"
                          " succeeded") for m in messages(qgis_iface, Qgis.MessageLevel.Success))
    # the options persist like the others
    settings = Settings()
    assert (settings.mosaic, settings.mosaic_crs, settings.composite,
            settings.composite_period) == (True, "", "median", "month")
    again = ReduceOptions(dock.context)
    assert again.state() == (True, "", "median", "month")

    # the units have rows of their own with their state, named for what they make, after
    # the cells: the mosaics by date, then the composites reading them
    panel = dock.jobs_panel
    head = panel.model.item(panel.model.job_row(job_id), 0)
    assert [head.child(row, 0).text() for row in range(head.rowCount())][4:] == [
        "Mosaic 2024-06-01 NDVI", "Mosaic 2024-06-01 RGB", "Mosaic 2024-06-11 NDVI",
        "Mosaic 2024-06-11 RGB", "Composite 2024-06-01 – 2024-06-11 NDVI",
        "Composite 2024-06-01 – 2024-06-11 RGB"]
    assert panel.cell_text(job_id, "mosaic_2024-06-11_ndvi", 0) == "Mosaic 2024-06-11 NDVI"
    assert panel.cell_text(job_id, "mosaic_2024-06-11_ndvi", 1) == "succeeded"
    composite_id = "composite_2024-06-01_2024-06-11_rgb_median"
    assert panel.cell_text(job_id, composite_id, 0) == "Composite 2024-06-01 – 2024-06-11 RGB"
    assert panel.cell_text(job_id, composite_id, 1) == "succeeded"
    # … and right-click ▸ Show log opens the unit's worker log
    unit_row = panel.model.cell_item(job_id, "mosaic_2024-06-11_ndvi", 0).index()
    menu = panel.context_menu(unit_row)
    assert menu.actions()[0].text() == "Show log"
    menu.actions()[0].trigger()
    dialog = panel.findChildren(CellLogDialog)[-1]
    wait_until(lambda: dialog.task is None, 30, "the unit's log")
    assert "mosaic_2024-06-11_ndvi" in dialog.text.toPlainText()
    assert dialog.state.text() != "The log could not be read"
    dialog.close()
    # double-clicking a unit zooms to its layer
    wait_until(lambda: len(result_layers(job_id)) == 6, 60, "6 layers")
    assert panel.zoom_to(unit_row)

    # on the map: one layer per date and product from the mosaics, the composites apart
    group = _job_group(job_id)
    assert [g.name() for g in group.children()] == ["NDVI", "RGB", "Composites"]
    ndvi = [n.layer() for n in group.children()[0].findLayers()]
    assert [la.name() for la in ndvi] == [f"2024-06-11 NDVI · {tag}", f"2024-06-01 NDVI · {tag}"]
    rgb = [n.layer() for n in group.children()[1].findLayers()]
    assert [la.name() for la in rgb] == [f"2024-06-11 RGB · {tag}", f"2024-06-01 RGB · {tag}"]
    composites = group.children()[2]
    assert [g.name() for g in composites.children()] == ["NDVI", "RGB"]
    made = [n.layer() for n in composites.findLayers()]
    assert sorted(la.name() for la in made) == [
        f"2024-06-01 – 2024-06-11 NDVI composite · {tag}",
        f"2024-06-01 – 2024-06-11 RGB composite · {tag}"]
    layers = ndvi + rgb + made
    assert {la.crs().authid() for la in layers} == {"EPSG:32632"}
    assert all(la.source().startswith(os.path.join(settings.output_folder, job_id))
               for la in layers)
    # the tiles' look: the NDVI ramp from −1 to 1, RGB's fixed reflectance stretch
    for layer in ndvi + [la for la in made if "NDVI" in la.name()]:
        renderer = layer.renderer()
        assert renderer.type() == "singlebandpseudocolor"
        assert (renderer.classificationMin(), renderer.classificationMax()) == (-1.0, 1.0)
    for layer in rgb:
        assert layer.renderer().type() == "multibandcolor"
        assert layer.renderer().redContrastEnhancement().maximumValue() == 0.3
    # a mosaic layer is the mosaic file: on the 10 m grid of its CRS
    with rasterio.open(ndvi[0].source()) as ds:
        assert ds.crs.to_epsg() == 32632 and ds.res == (10.0, 10.0)
        assert ds.width == ndvi[0].width() and ds.height == ndvi[0].height()
    # time-aware: a mosaic holds its day, a composite its month's part of the range
    day = ndvi[1].temporalProperties()
    assert day.isActive() and day.mode() == FIXED_TEMPORAL_RANGE
    assert (day.fixedTemporalRange().begin(), day.fixedTemporalRange().end()) == (
        _utc("2024-06-01T00:00:00Z"), _utc("2024-06-02T00:00:00Z"))
    period = made[0].temporalProperties().fixedTemporalRange()
    assert (period.begin(), period.end()) == (_utc("2024-06-01T00:00:00Z"),
                                              _utc("2024-06-12T00:00:00Z"))
    # the temporal controller's frame on 11 June shows that date's mosaics (and the composites)
    frame = _utc("2024-06-11T12:00:00Z")
    shown = sorted(la.name() for la in layers
                   if la.temporalProperties().fixedTemporalRange().contains(frame))
    assert shown == sorted([f"2024-06-11 NDVI · {tag}", f"2024-06-11 RGB · {tag}"]
                           + [la.name() for la in made])
    # every layer name is the job's own: a second job cannot repeat them
    names = [la.name() for la in result_layers()]
    assert len(names) == len(set(names)) and all(name.endswith(f"· {tag}") for name in names)

    # the tiles stay reachable: right-click the job ▸ Add tile layers
    job_menu = panel.context_menu(panel.model.index(panel.model.job_row(job_id), 0))
    action = next(a for a in job_menu.actions() if a.text() == "Add tile layers")
    assert action.isEnabled()
    action.trigger()
    wait_until(lambda: len(result_layers(job_id)) == 14, 60, "the 8 tile layers")
    tiles = next(g for g in group.children() if g.name() == "Tiles")
    assert group.children()[-1] is tiles and [g.name() for g in tiles.children()] == [
        "NDVI", "RGB"]
    assert [n.name() for n in tiles.children()[0].findLayers()] == [
        f"32TMT 2024-06-11 NDVI · {tag}", f"32TNT 2024-06-11 NDVI · {tag}",
        f"32TMT 2024-06-01 NDVI · {tag}", f"32TNT 2024-06-01 NDVI · {tag}"]
    cells = [r for r in status.records if r.kind == "cell"]
    assert {uri for r in cells for uri in r.outputs.values()} == {
        n.layer().customProperty("rsbatch/uri") for n in tiles.findLayers()}
    action.trigger()  # a second time adds nothing
    wait_until(lambda: not dock.jobs_panel.loader._pending, 30, "the loader")
    assert len(result_layers(job_id)) == 14


def test_mosaics_off_give_tile_layers_and_no_tile_action(dock, sample):
    options = dock.run_panel.reduce_options
    options.mosaic_check.setChecked(False)
    _search(dock, sample)
    text = _estimate(dock)
    assert "4 cell(s)" in text and "mosaic" not in text
    job_id = submit(dock)
    status = wait_finished(dock, job_id)
    assert [r.kind for r in status.records] == ["cell"] * 4
    assert status.counts["SUCCEEDED"] == 4
    wait_until(lambda: len(result_layers(job_id)) == 8, 60, "8 tile layers")
    assert [g.name() for g in _job_group(job_id).children()] == ["NDVI", "RGB"]
    panel = dock.jobs_panel
    job_menu = panel.context_menu(panel.model.index(panel.model.job_row(job_id), 0))
    action = next(a for a in job_menu.actions() if a.text() == "Add tile layers")
    assert not action.isEnabled()  # the tiles are the results already
    assert Settings().mosaic is False
    assert all(r.status is Status.SUCCEEDED for r in status.records)
