"""The rsbatch panel: three tabs, "New job" (area → scenes → run), "Jobs" and "Settings".

The dock only wires the panels together; each panel owns its widgets and tasks:
AOI panel (tilesChanged) → search panel (scenesChanged) → run panel (submitted) → jobs panel.
"""

from __future__ import annotations

from typing import Any

from qgis.gui import QgsCollapsibleGroupBox, QgsDockWidget
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QFrame,
    QLabel,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .aoi_panel import AoiPanel
from .context import Context
from .jobs_panel import JobsPanel
from .quit_guard import QuitGuard
from .run_panel import RunPanel
from .sample_data import SampleData
from .search_panel import SearchPanel
from .settings_panel import SettingsPanel
from .worker_setup import WorkerSetup

OBJECT_NAME = "RsbatchDock"


def _section(title: str, body: QWidget, parent: QWidget) -> QgsCollapsibleGroupBox:
    box = QgsCollapsibleGroupBox(title, parent)
    box.setSaveCollapsedState(False)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(6, 6, 6, 6)
    layout.addWidget(body)
    return box


class RsbatchDock(QgsDockWidget):
    """The dock widget holding every panel."""

    def __init__(self, context: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("rsbatch · Sentinel-2 RGB / NDVI"))
        self.setObjectName(OBJECT_NAME)
        self.context = context
        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        context.worker_setup = WorkerSetup(context, self)

        plan = QWidget()
        layout = QVBoxLayout(plan)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self._sample_button(plan), 0, Qt.AlignmentFlag.AlignRight)
        self.aoi_panel = AoiPanel(context, plan)
        self.search_panel = SearchPanel(context, plan)
        self.run_panel = RunPanel(context, plan)
        layout.addWidget(_section(self.tr("1 · Area of interest"), self.aoi_panel, plan))
        layout.addWidget(_section(self.tr("2 · Scenes"), self.search_panel, plan), 1)
        layout.addWidget(_section(self.tr("3 · Run"), self.run_panel, plan))
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(plan)
        self.tabs.addTab(scroll, self.tr("New job"))

        self.jobs_panel = JobsPanel(context)
        self.tabs.addTab(self.jobs_panel, self.tr("Jobs"))

        self.settings_panel = SettingsPanel(context)
        settings_scroll = QScrollArea()
        settings_scroll.setWidgetResizable(True)
        settings_scroll.setFrameShape(QFrame.Shape.NoFrame)
        settings_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        settings_scroll.setWidget(self.settings_panel)
        self.tabs.addTab(settings_scroll, self.tr("Settings"))

        footer = QLabel(self.tr("Results: one layer group per job. Log: View ▸ Panels ▸ Log "
                                "Messages ▸ rsbatch."))
        footer.setWordWrap(True)
        footer.setStyleSheet("color: palette(mid); font-size: 8pt;")
        body = QWidget(self)
        outer = QVBoxLayout(body)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.tabs, 1)
        outer.addWidget(footer)
        self.setWidget(body)
        self.setMinimumWidth(360)

        self.aoi_panel.tilesChanged.connect(self._tiles_changed)
        self.search_panel.scenesChanged.connect(self._scenes_changed)
        self.run_panel.submitted.connect(self._submitted)
        self.settings_panel.pollIntervalChanged.connect(self.jobs_panel.set_poll_interval)
        self.jobs_panel.load_history()
        window = context.iface.mainWindow() if context.iface is not None else None
        self.quit_guard = QuitGuard(context, self.jobs_panel, window, self)
        # can this computer run jobs? said at once when it is the chosen backend
        self.settings_panel.check_worker(announce=context.settings().backend == "local")

    def _tiles_changed(self, aoi: Any, tiles: list) -> None:
        self.search_panel.set_tiles(aoi, tiles)
        self._scenes_changed()

    def _scenes_changed(self) -> None:
        options = self.search_panel.request_options() if self.search_panel.aoi else None
        self.run_panel.set_inputs(options, self.search_panel.selected_scenes())

    def _submitted(self, job: Any, status: Any, key: Any, label: str) -> None:
        self.jobs_panel.add_job(job, status, key, label)
        self.tabs.setCurrentWidget(self.jobs_panel)

    def _sample_button(self, parent: QWidget) -> QPushButton:
        self.sample_data = SampleData(self.context, self.fill_sample, self)
        self.sample_button = QPushButton(self.tr("Try it with sample data"), parent)
        self.sample_button.setToolTip(self.tr(
            "Generate two small Sentinel-2-like tiles on two dates and their catalog in the "
            "QGIS profile folder (rsbatch/samples; no download), and fill in the area, dates "
            "and catalog"))
        self.sample_button.clicked.connect(self.sample_data.start)
        return self.sample_button

    def fill_sample(self, sample: dict) -> None:
        """Area, catalog and dates of the sample data (a cloud limit that keeps every scene)."""
        self.show_tab("new")
        self.aoi_panel.set_aoi(sample["aoi"])
        self.search_panel.set_catalog(sample["catalog"])
        self.search_panel.set_dates(sample["start"], sample["end"])
        self.search_panel.cloud_spin.setValue(100)

    def show_tab(self, name: str) -> None:
        index = {"new": 0, "jobs": 1, "settings": 2}[name]
        self.tabs.setCurrentIndex(index)

    def cleanup(self) -> None:
        """Unload: stop polling, drop task callbacks, give the canvas back."""
        self.quit_guard.cleanup()
        self.jobs_panel.cleanup()
        self.run_panel.cleanup()
        self.search_panel.cleanup()
        self.settings_panel.cleanup()
        self.aoi_panel.cleanup()
        self.sample_data.cleanup()
        if self.context.worker_setup is not None:
            self.context.worker_setup.cleanup()


DOCK_AREA = Qt.DockWidgetArea.RightDockWidgetArea
