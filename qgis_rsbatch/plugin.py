"""The QGIS entry point: a toolbar button and a Raster menu entry open the rsbatch dock; the
Processing provider registers its algorithms.

`initProcessing()` works without an interface (qgis_process calls only it). `unload()` is
`initGui()` in reverse: tasks cancelled first (their callbacks dropped, so nothing touches a
dying widget), then the dock (which gives the canvas back and removes its rubber band and
tiles layer), the menu entry and toolbar button, the Processing provider, the translator.
The dock is built on first use, so QGIS starts as fast with the plugin as without it.
"""

from __future__ import annotations

import os
from typing import Any

from qgis.core import QgsApplication, QgsSettings
from qgis.PyQt.QtCore import QCoreApplication, QTranslator
from qgis.PyQt.QtGui import QIcon

try:  # Qt6 moved QAction to QtGui
    from qgis.PyQt.QtGui import QAction
except ImportError:
    from qgis.PyQt.QtWidgets import QAction

from .tasks import TaskRegistry

HERE = os.path.dirname(os.path.abspath(__file__))
ICON_PATH = os.path.join(HERE, "icons", "rsbatch.svg")
ACTION_NAME = "rsbatchShowDock"


def tr(text: str) -> str:
    return QCoreApplication.translate("rsbatch", text)


class RsbatchPlugin:
    """What QGIS's plugin manager loads (see `classFactory` in the package)."""

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: Any = None
        self.action: QAction | None = None
        self.dock: Any = None
        self.context: Any = None
        self.tasks: TaskRegistry | None = None
        self.translator: QTranslator | None = None
        self.menu_title = tr("&rsbatch")

    # --- set-up ----------------------------------------------------------------------------
    def initProcessing(self) -> None:
        if self.provider is not None:
            return
        from .processing.provider import RsbatchProvider

        self.provider = RsbatchProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self._install_translator()
        self.initProcessing()
        self.tasks = TaskRegistry(on_internal_error=self._internal_error)
        self.action = QAction(QIcon(ICON_PATH), tr("rsbatch: Sentinel-2 RGB / NDVI"),
                              self.iface.mainWindow())
        self.action.setObjectName(ACTION_NAME)
        self.action.setCheckable(True)
        self.action.setToolTip(tr("Open the rsbatch panel: draw an area, pick dates, get "
                                  "Sentinel-2 RGB and NDVI layers"))
        self.action.setWhatsThis(self.action.toolTip())
        self.action.triggered.connect(self.toggle_dock)
        self.iface.addRasterToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu(self.menu_title, self.action)

    def _install_translator(self) -> None:
        locale = str(QgsSettings().value("locale/userLocale", "") or "")[:2]
        path = os.path.join(HERE, "i18n", f"rsbatch_{locale}.qm")
        if locale and os.path.exists(path):
            self.translator = QTranslator()
            if self.translator.load(path):
                QCoreApplication.installTranslator(self.translator)
            else:
                self.translator = None

    def _internal_error(self, error: BaseException) -> None:
        from .gui.messages import Notifier

        Notifier(self.iface).error(tr("rsbatch hit an internal error ({}); the details are in "
                                      "the log (rsbatch tab)").format(error))

    # --- the dock ----------------------------------------------------------------------------
    def create_dock(self) -> Any:
        """Build the dock once (first use)."""
        if self.dock is None:
            if self.tasks is None:  # initGui() makes the registry; the dock needs it
                self.tasks = TaskRegistry(on_internal_error=self._internal_error)
            from .gui.context import Context
            from .gui.dock import DOCK_AREA, RsbatchDock
            from .gui.messages import Notifier

            self.context = Context(iface=self.iface, tasks=self.tasks,
                                   notifier=Notifier(self.iface))
            self.dock = RsbatchDock(self.context, self.iface.mainWindow())
            self.iface.addDockWidget(DOCK_AREA, self.dock)
            self.dock.setToggleVisibilityAction(self.action)
        return self.dock

    def toggle_dock(self, visible: bool = True) -> None:
        dock = self.create_dock()
        dock.setUserVisible(bool(visible))
        if self.action is not None and self.action.isChecked() != bool(visible):
            self.action.setChecked(bool(visible))

    # --- tear-down ------------------------------------------------------------------------
    def unload(self) -> None:
        if self.tasks is not None:
            self.tasks.cancel_all()
        if self.dock is not None:
            self.dock.cleanup()
            self.iface.removeDockWidget(self.dock)
            self.dock.close()
            self.dock.setParent(None)
            self.dock.deleteLater()
            self.dock = None
        self.context = None
        if self.action is not None:
            self.iface.removePluginRasterMenu(self.menu_title, self.action)
            self.iface.removeRasterToolBarIcon(self.action)
            self.action.setParent(None)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.translator is not None:
            QCoreApplication.removeTranslator(self.translator)
            self.translator = None
        self.tasks = None
