"""Loading and unloading the plugin: everything initGui and the dock put into QGIS goes away."""

from __future__ import annotations

import time

from qgis.core import QgsApplication, QgsProject
from qgis.gui import QgsRubberBand
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QAction, QDockWidget

from qgis_rsbatch.gui.aoi_tool import AoiMapTool
from qgis_rsbatch.gui.dock import OBJECT_NAME
from qgis_rsbatch.plugin import ACTION_NAME, RsbatchPlugin
from tests.plugin.conftest import process_events, rsbatch_tasks, wait_until


def _rubber_bands(canvas):
    return [item for item in canvas.scene().items() if isinstance(item, QgsRubberBand)]


def test_init_gui_adds_a_raster_menu_entry_toolbar_button_and_provider(plugin, qgis_iface):
    assert plugin.action.objectName() == ACTION_NAME
    assert plugin.action.icon().availableSizes() or not plugin.action.icon().isNull()
    qgis_iface.addRasterToolBarIcon.assert_called_with(plugin.action)
    qgis_iface.addPluginToRasterMenu.assert_called_with(plugin.menu_title, plugin.action)
    provider = QgsApplication.processingRegistry().providerById("rsbatch")
    assert provider is not None
    assert sorted(a.name() for a in provider.algorithms()) == [
        "resolvetiles", "runjob", "searchscenes", "setupworker"]
    assert plugin.dock is None  # built on first use


def test_action_opens_and_closes_the_dock(plugin):
    plugin.action.trigger()
    assert plugin.dock is not None and plugin.dock.isUserVisible()
    assert plugin.action.isChecked()
    plugin.action.trigger()
    assert not plugin.dock.isUserVisible()


def test_unload_leaves_no_action_dock_tool_band_provider_timer_task_or_layer(
        plugin, qgis_iface, qgis_canvas, sample):
    bands_before = len(_rubber_bands(qgis_canvas))
    plugin.toggle_dock(True)
    dock = plugin.dock
    wait_until(lambda: dock.jobs_panel._history_task is None, 30, "history")
    # use everything that leaves traces: the drawing tool, the tiles layer, a poll timer
    tool = dock.aoi_panel.start_drawing("polygon")
    assert qgis_canvas.mapTool() is tool
    dock.aoi_panel.set_aoi(sample["aoi"])
    wait_until(lambda: dock.aoi_panel.tiles, 30, "tiles")
    assert QgsProject.instance().mapLayersByName("rsbatch: area and tiles")
    timers = dock.findChildren(QTimer)
    assert timers
    action = plugin.action

    plugin.unload()
    process_events(0.1)

    main = qgis_iface.mainWindow()
    assert not [a for a in main.findChildren(QAction) if a.objectName() == ACTION_NAME]
    assert not [d for d in main.findChildren(QDockWidget) if d.objectName() == OBJECT_NAME]
    assert not isinstance(qgis_canvas.mapTool(), AoiMapTool)
    assert len(_rubber_bands(qgis_canvas)) == bands_before
    assert QgsApplication.processingRegistry().providerById("rsbatch") is None
    assert not QgsProject.instance().mapLayersByName("rsbatch: area and tiles")
    assert all(sip.isdeleted(timer) or not timer.isActive() for timer in timers)
    qgis_iface.removeRasterToolBarIcon.assert_called_with(action)
    qgis_iface.removePluginRasterMenu.assert_called_with(plugin.menu_title, action)
    wait_until(lambda: not rsbatch_tasks(), 30, "tasks to end")
    assert plugin.tasks is None and plugin.dock is None and plugin.action is None


def test_unload_cancels_running_tasks_and_drops_their_callbacks(plugin):
    from qgis_rsbatch.tasks import FunctionTask

    called = []

    def slow(task):
        for _ in range(500):
            task.check_cancelled()
            time.sleep(0.01)
        return "done"

    task = plugin.tasks.start(FunctionTask("rsbatch: slow", slow,
                                           on_success=called.append,
                                           on_cancel=lambda: called.append("cancel")))
    wait_until(lambda: task.status() == task.TaskStatus.Running, 10, "the task to run")
    plugin.unload()
    wait_until(lambda: not rsbatch_tasks(), 10, "the cancelled task to end")
    process_events(0.05)
    assert called == []  # nobody listens after unload


def test_init_processing_works_without_an_interface():
    plugin = RsbatchPlugin(None)
    plugin.initProcessing()
    try:
        assert QgsApplication.processingRegistry().providerById("rsbatch") is not None
    finally:
        plugin.unload()
    assert QgsApplication.processingRegistry().providerById("rsbatch") is None


def test_load_unload_twice_does_not_accumulate(qgis_iface, qgis_new_project):
    from qgis_rsbatch import classFactory

    for _ in range(2):
        plugin = classFactory(qgis_iface)
        plugin.initGui()
        plugin.toggle_dock(True)
        wait_until(lambda p=plugin: p.dock.jobs_panel._history_task is None, 30, "history")
        plugin.unload()
        process_events(0.05)
    main = qgis_iface.mainWindow()
    assert not [d for d in main.findChildren(QDockWidget) if d.objectName() == OBJECT_NAME]
    assert QgsApplication.processingRegistry().providerById("rsbatch") is None


def test_a_failing_callback_is_a_message_not_a_traceback_dialog(plugin, qgis_iface):
    from qgis.core import Qgis

    from qgis_rsbatch.tasks import FunctionTask

    def broken(_result):
        raise ValueError("a bug")

    plugin.tasks.start(FunctionTask("rsbatch: fine", lambda task: 1, on_success=broken))
    wait_until(lambda: not rsbatch_tasks(), 10, "the task")
    process_events(0.05)
    critical = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Critical)
    assert any("internal error (a bug)" in m for m in critical)
