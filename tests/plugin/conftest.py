"""Fixtures for the plugin's tests: a loaded plugin with its dock, generated sample scenes,
helpers that wait on Qt's event loop, and a spy on which thread blocking work runs in.

pytest-qgis gives the QGIS application, a stub iface (its message bar records messages) and
a canvas; everything runs offscreen (pyproject: qgis_gui_enabled = false).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import QCoreApplication, QThread

from tests import polling


def process_events(seconds: float = 0.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        QCoreApplication.processEvents()
        if time.monotonic() >= deadline:
            return
        time.sleep(0.005)


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    """Run the event loop until `predicate()` is truthy; fail after `timeout` seconds."""
    return polling.wait_until(predicate, timeout, what, interval=0.005,
                              tick=QCoreApplication.processEvents)


class ThreadSpy:
    """Wraps blocking functions to record the thread each call ran in.

    What keeps the GUI responsive is that blocking work (tile lookup, catalog search,
    submitting, polling the task log) runs in QgsTask threads, never on the GUI thread;
    that is what tests assert, because how long a stall lasts depends on the machine
    (`make bench` measures it).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.calls: list[tuple[str, int, bool]] = []  # (name, thread id, on the GUI thread)

    def watch(self, owner: Any, name: str) -> None:
        original = getattr(owner, name)
        label = f"{getattr(owner, '__name__', owner)}.{name}"

        def spy(*args: Any, **kwargs: Any) -> Any:
            gui = QThread.currentThread() is QCoreApplication.instance().thread()
            self.calls.append((label, threading.get_ident(), gui))
            return original(*args, **kwargs)

        self.monkeypatch.setattr(owner, name, spy)

    def called(self) -> set[str]:
        return {label for label, _, _ in self.calls}

    def on_gui_thread(self) -> list[str]:
        return [label for label, ident, gui in self.calls
                if gui or ident == threading.main_thread().ident]


@pytest.fixture
def thread_spy(monkeypatch: pytest.MonkeyPatch) -> ThreadSpy:
    return ThreadSpy(monkeypatch)


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
