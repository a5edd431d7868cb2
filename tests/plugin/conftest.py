"""Fixtures for the plugin's tests: a loaded plugin with its dock, generated sample scenes,
helpers that wait on Qt's event loop, and a recorder of the GUI thread's longest stall.

pytest-qgis gives the QGIS application, a stub iface (its message bar records messages) and
a canvas; everything runs offscreen (pyproject: qgis_gui_enabled = false).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import QCoreApplication, QElapsedTimer, QTimer


def process_events(seconds: float = 0.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        QCoreApplication.processEvents()
        if time.monotonic() >= deadline:
            return
        time.sleep(0.005)


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    """Run the event loop until `predicate()` is truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        QCoreApplication.processEvents()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.005)


class GapRecorder:
    """A 10 ms timer on the GUI thread; the longest interval between its ticks is the longest
    time the GUI thread was busy (blocked) while recording."""

    def __init__(self, interval_ms: int = 10) -> None:
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.clock = QElapsedTimer()
        self.max_gap_ms = 0
        self.ticks = 0

    def _tick(self) -> None:
        elapsed = self.clock.restart()
        if self.ticks:
            self.max_gap_ms = max(self.max_gap_ms, elapsed)
        self.ticks += 1

    def start(self) -> GapRecorder:
        self.clock.start()
        self.timer.start()
        return self

    def stop(self) -> None:
        self.timer.stop()


@pytest.fixture(autouse=True)
def _clean_settings(qgis_app: Any) -> Iterator[None]:
    from qgis_rsbatch.settings import Settings

    Settings().clear()
    settings = Settings()
    settings.poll_ms = 200
    settings.confirm_cells = 1000
    yield
    Settings().clear()


@pytest.fixture
def plugin(qgis_iface: Any, qgis_new_project: QgsProject, tmp_path: Any) -> Iterator[Any]:
    """The plugin, loaded as QGIS loads it (classFactory + initGui); unloaded afterwards."""
    from qgis_rsbatch import classFactory
    from qgis_rsbatch.settings import Settings

    Settings().output_folder = str(tmp_path / "results")
    # the stub iface docks nothing: dock into its main window as QGIS does, and show it
    main = qgis_iface.mainWindow()
    qgis_iface.addDockWidget = main.addDockWidget
    qgis_iface.removeDockWidget = main.removeDockWidget
    main.show()
    instance = classFactory(qgis_iface)
    instance.initGui()
    yield instance
    if instance.action is not None:
        instance.unload()
    wait_until(lambda: not rsbatch_tasks(), 60, "rsbatch tasks to end")
    process_events(0.05)
    QgsProject.instance().clear()


@pytest.fixture
def dock(plugin: Any) -> Any:
    plugin.toggle_dock(True)
    dock = plugin.dock
    wait_until(lambda: dock.jobs_panel._history_task is None, 30, "the job history")
    return dock


def rsbatch_tasks() -> list[Any]:
    return [t for t in QgsApplication.taskManager().tasks()
            if t.description().startswith("rsbatch")]


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Generated scenes of 32TMT and 32TNT on two dates, a static STAC catalog, an AOI."""
    from worker.samples import write_sample_catalog

    return write_sample_catalog(str(tmp_path_factory.mktemp("sample")), crop=600)


def messages(iface: Any, level: Any) -> list[str]:
    return list(iface.messageBar().get_messages(level))
