"""What every part of the dock shares: QGIS's interface, the task registry, the notifier, the
backend pool and the settings. One object passed down instead of five arguments."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qgis.core import QgsProject
from qgis.PyQt.QtWidgets import QMessageBox

from ..settings import Settings
from ..tasks import TaskRegistry
from .backends import BackendKey, BackendPool, local_key
from .messages import Notifier


def ask(parent: Any, title: str, text: str) -> bool:
    """A yes/no question in a standard modal box (the only modal the plugin opens)."""
    answer = QMessageBox.question(parent, title, text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


@dataclass
class Context:
    iface: Any
    tasks: TaskRegistry
    notifier: Notifier
    pool: BackendPool = field(default_factory=BackendPool)
    settings: Callable[[], Settings] = Settings
    #: asks the user a yes/no question; tests replace it
    confirm: Callable[[Any, str, str], bool] = ask
    #: sets up the worker environment (gui.worker_setup.WorkerSetup; the dock makes it)
    worker_setup: Any = None

    @property
    def project(self) -> QgsProject:
        return QgsProject.instance()

    @property
    def canvas(self) -> Any:
        return self.iface.mapCanvas() if self.iface is not None else None

    def local_key(self) -> BackendKey:
        from ..environments import worker_python

        settings = self.settings()
        return local_key(task_log=settings.task_log, worker_python=worker_python(settings),
                         workers=settings.workers)
