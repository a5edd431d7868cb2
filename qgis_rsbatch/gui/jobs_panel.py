"""The dock's job list: history from the task log, live status by polling, and what a user
does with a job (cancel, retry the failed cells, add its results, open its folder).

Every backend call (status, cancel, resume) runs in a task. Notices and result layers are
`job_results`' business.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, QModelIndex, Qt, QUrl
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGridLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from ..core.contract import Status
from ..core.errors import InvalidInput
from ..tasks import FunctionTask
from .backends import BackendKey
from .context import Context
from .job_history import HISTORY_LIMIT, backend_label, read_history
from .job_model import (
    CELL_ID_ROLE,
    JobModel,
    ProgressDelegate,
    counted,
    describe_job,
    details_text,
)
from .job_monitor import JobMonitor
from .job_results import JobResults
from .messages import describe


def tr(text: str) -> str:
    return QCoreApplication.translate("rsbatch", text)


class JobsPanel(QWidget):
    """The job tree, its buttons, the monitor and the result loader."""

    def __init__(self, context: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        settings = context.settings()
        self.model = JobModel(self)
        self.monitor = JobMonitor(context.tasks, context.pool, settings.poll_ms, self)
        self.results = JobResults(context, self.monitor, self)
        self.loader = self.results.loader
        self.labels: dict[str, str] = {}
        self.created: dict[str, str] = {}
        self.descriptions: dict[str, str] = {}
        self._history_task: Any = None
        self._actions: dict[str, Any] = {}
        self._build()
        self.monitor.jobChanged.connect(self._job_changed)

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        self.tree = QTreeView(self)
        self.tree.setModel(self.model)
        self.tree.setItemDelegate(ProgressDelegate(self.tree))
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(2, 80)
        header.setStretchLastSection(True)
        layout.addWidget(self.tree, 1)
        self.details = QPlainTextEdit(self)
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(110)
        self.details.setPlaceholderText(self.tr("Select a job or a cell: its details, and why "
                                                "a cell failed, in full"))
        layout.addWidget(self.details)
        self.empty_label = QLabel(self.tr("No job yet: submit one from the first tab."), self)
        layout.addWidget(self.empty_label)
        # two rows of three: one row of six would make the whole dock as wide as it
        buttons = QGridLayout()
        for number, (name, icon, text, tip) in enumerate((
                ("cancel", "/mTaskCancel.svg", self.tr("Cancel"),
                 self.tr("Stop the job: unfinished cells become cancelled")),
                ("retry", "/mActionRefresh.svg", self.tr("Retry failed"),
                 self.tr("Run again the cells that failed or were cancelled")),
                ("elsewhere", "/mActionFileSaveAs.svg", self.tr("Retry elsewhere…"),
                 self.tr("Run the cells that failed again as a new job writing into another "
                         "folder (e.g. when the first one was full or read-only)")),
                ("load", "/mActionAddRasterLayer.svg", self.tr("Add results"),
                 self.tr("Add the job's finished results to the map")),
                ("folder", "/mIconFolderOpen.svg", self.tr("Open folder"),
                 self.tr("Open the job's output folder")),
                ("series", "/mIconTemporal.svg", self.tr("Time series"),
                 self.tr("Each index over the area, date by date (mean, p10–p90)")))):
            button = QPushButton(QgsApplication.getThemeIcon(icon), text, self)
            button.setToolTip(tip)
            buttons.addWidget(button, number // 3, number % 3)
            self._actions[name] = button
        layout.addLayout(buttons)
        self._actions["cancel"].clicked.connect(lambda: self.cancel(self.selected_job()))
        self._actions["retry"].clicked.connect(lambda: self.retry(self.selected_job()))
        self._actions["elsewhere"].clicked.connect(
            lambda: self.retry_elsewhere(self.selected_job()))
        self._actions["load"].clicked.connect(lambda: self.load_results(self.selected_job()))
        self._actions["folder"].clicked.connect(lambda: self.open_folder(self.selected_job()))
        self._actions["series"].clicked.connect(lambda: self.time_series(self.selected_job()))
        self.tree.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())
        self.tree.selectionModel().currentChanged.connect(lambda *_: self._show_details())
        self.tree.customContextMenuRequested.connect(self._context_menu)
        self.tree.doubleClicked.connect(self.zoom_to)
        self.tree.setToolTip(self.tr("Double-click a job or a cell to zoom to its results"))
        self._update_buttons()

    # --- selection and buttons -----------------------------------------------------------------
    def selected_job(self) -> str | None:
        indexes = self.tree.selectionModel().selectedRows(0)
        return self.model.job_of(indexes[0]) if indexes else None

    def select_job(self, job_id: str) -> None:
        row = self.model.job_row(job_id)
        if row >= 0:
            self.tree.setCurrentIndex(self.model.index(row, 0))

    def _update_buttons(self) -> None:
        job = self.monitor.jobs.get(self.selected_job() or "")
        status = job.status if job is not None else None
        counts = status.counts if status is not None else {}
        running = status is not None and not status.finished
        self._actions["cancel"].setEnabled(running)
        retryable = status is not None and status.finished and \
            bool(counts.get("FAILED") or counts.get("CANCELLED"))
        self._actions["retry"].setEnabled(retryable)
        self._actions["elsewhere"].setEnabled(
            retryable and job is not None and job.key[0] == "local")
        self._actions["load"].setEnabled(bool(counts.get("SUCCEEDED")))
        self._actions["folder"].setEnabled(self.results.folder(self.selected_job()) is not None)
        self._actions["series"].setEnabled(status is not None and any(
            r.stats for r in status.records))
        self.empty_label.setVisible(self.model.rowCount() == 0)

    def _context_menu(self, point: Any) -> None:
        self.context_menu(self.tree.indexAt(point)).popup(
            self.tree.viewport().mapToGlobal(point))

    def context_menu(self, index: QModelIndex) -> QMenu:
        """The right-click menu of a row: a cell's log first, then the job's buttons."""
        menu = QMenu(self)
        cell_id = index.sibling(index.row(), 0).data(CELL_ID_ROLE) \
            if index.isValid() and index.parent().isValid() else None
        if cell_id:
            job_id = self.model.job_of(index)
            action = menu.addAction(QgsApplication.getThemeIcon("/mMessageLog.svg"),
                                    self.tr("Show log"))
            action.triggered.connect(lambda: self.show_log(job_id, cell_id))
            menu.addSeparator()
        job_id = self.model.job_of(index) if index.isValid() else self.selected_job()
        for name in ("cancel", "retry", "elsewhere", "load", "tiles", "folder", "series"):
            if name == "tiles":  # the menu's own: a job with mosaics shows them, not tiles
                action = menu.addAction(QgsApplication.getThemeIcon("/mActionAddRasterLayer.svg"),
                                        self.tr("Add tile layers"))
                action.setToolTip(self.tr("Add each tile's own layers (a Tiles group in the "
                                          "job's group)"))
                action.setEnabled(self.results.has_tiles_apart(job_id))
                action.triggered.connect(lambda: self.add_tile_layers(job_id))
                continue
            button = self._actions[name]
            action = menu.addAction(button.icon(), button.text())
            action.setEnabled(button.isEnabled())
            action.triggered.connect(button.click)
        return menu

    def add_tile_layers(self, job_id: str | None) -> Any:
        """The per-tile layers of a job with mosaics, in its Tiles group (a loading task)."""
        return self.results.load(job_id, tiles=True)

    # --- history and new jobs ----------------------------------------------------------------
    def load_history(self) -> Any:
        """Fill the list from the task log (a task: it reads SQLite and maybe AWS)."""
        local = self.context.local_key()
        pool = self.context.pool
        self._history_task = FunctionTask(
            self.tr("rsbatch: reading the job history"),
            lambda task: read_history(pool, local, HISTORY_LIMIT, task),
            on_success=self._history_read,
            on_error=lambda error: self.context.notifier.warning(
                describe(error), self.tr("Job history")))
        return self.context.tasks.start(self._history_task)

    def _history_read(self, found: list[tuple[dict, BackendKey, Any]]) -> None:
        self._history_task = None
        for row, key, status in found:
            job_id = row["job_id"]
            if job_id in self.monitor.jobs:
                continue
            self.labels[job_id] = backend_label(key)
            self.created[job_id] = row.get("created", "")
            self.descriptions[job_id] = describe_job(row.get("params"))
            if isinstance(status, BaseException):
                self.monitor.watch(job_id, key, created=row.get("created", ""),
                                   error=describe(status))
            else:
                self.monitor.watch(job_id, key, status=status, created=row.get("created", ""))
                if self.results.was_loading(job_id):
                    # results were being added when QGIS closed: add every cell finished
                    # since (the loader skips what is already on the map)
                    self.load_results(job_id)
                    if status.finished:
                        self.results.done_loading(job_id)
        self._update_buttons()

    def add_job(self, job: Any, status: Any, key: BackendKey, label: str) -> None:
        """A job just submitted from the dock: list it on top, select it, watch it."""
        self.labels[job.job_id] = label
        self.created[job.job_id] = job.created
        self.descriptions[job.job_id] = describe_job(job.params)
        self.model.update_job(job.job_id, status, backend=label, created=job.created,
                              newest=True, description=self.descriptions[job.job_id])
        self.monitor.watch(job.job_id, key, status=status, created=job.created)
        if self.context.settings().auto_load:
            self.results.loading(job.job_id)
        self.select_job(job.job_id)
        self.tree.expand(self.model.index(self.model.job_row(job.job_id), 0))
        kinds = Counter(["cell"] * len(job.cells) + [unit.kind for unit in job.units])
        self.context.notifier.info(self.tr("Job {} submitted: {} on {}")
                                   .format(job.job_id, counted(kinds), label))

    def _show_details(self) -> None:
        index = self.tree.currentIndex()
        job_id = self.model.job_of(index)
        job = self.monitor.jobs.get(job_id or "")
        if job is None:
            self.details.setPlainText("")
            return
        cell_id = index.sibling(index.row(), 0).data(CELL_ID_ROLE) \
            if index.parent().isValid() else None
        self.details.setPlainText(details_text(
            job.job_id, job.status, description=self.descriptions.get(job.job_id, ""),
            backend=self.labels.get(job.job_id, ""), error=job.error, cell_id=cell_id))

    def _job_changed(self, job_id: str) -> None:
        job = self.monitor.jobs[job_id]
        self.model.update_job(job_id, job.status, backend=self.labels.get(job_id, ""),
                              created=self.created.get(job_id, job.created), error=job.error,
                              description=self.descriptions.get(job_id, ""))
        self._update_buttons()
        if self.model.job_of(self.tree.currentIndex()) == job_id:
            self._show_details()

    def time_series(self, job_id: str | None) -> Any:
        """Open the job's Time series view (from the records the monitor already has)."""
        from .timeseries_view import TimeSeriesDialog

        job = self.monitor.jobs.get(job_id or "")
        if job is None or job.status is None:
            return None
        dialog = TimeSeriesDialog(job_id or "", job.status.records, self)
        dialog.show()
        return dialog

    def show_log(self, job_id: str | None, cell_id: str | None) -> Any:
        """Open a cell's worker log (read in a task): the file beside its outputs, or its
        CloudWatch stream on AWS."""
        from .cell_log_view import CellLogDialog

        job = self.monitor.jobs.get(job_id or "")
        if job is None or not cell_id:
            return None
        dialog = CellLogDialog(self.context, job.key, job.job_id, cell_id, self)
        dialog.show()
        return dialog

    def load_results(self, job_id: str | None, records: list | None = None) -> Any:
        """Add a job's finished outputs to the map (all of them, or those of `records`)."""
        return self.results.load(job_id, records)

    # --- actions -----------------------------------------------------------------------------
    def _backend_call(self, job_id: str, what: str, call: Any, done: Any) -> Any:
        job = self.monitor.jobs.get(job_id)
        if job is None:
            return None
        pool, key = self.context.pool, job.key
        task = FunctionTask(
            what, lambda t: call(pool.get(key), job_id, t), on_success=done,
            on_error=lambda error: self.context.notifier.error(error, what))
        return self.context.tasks.start(task)

    def cancel(self, job_id: str | None) -> Any:
        if not job_id:
            return None
        self._actions["cancel"].setEnabled(False)
        return self._backend_call(job_id, self.tr("rsbatch: cancelling job {}").format(job_id),
                                  lambda backend, jid, _task: backend.cancel(jid),
                                  lambda status: self.monitor.update(job_id, status))

    def retry(self, job_id: str | None) -> Any:
        if not job_id:
            return None
        self._actions["retry"].setEnabled(False)
        return self._backend_call(job_id, self.tr("rsbatch: retrying job {}").format(job_id),
                                  lambda backend, jid, _task: backend.resume(jid),
                                  lambda status: self.monitor.rearm(job_id, status))

    def choose_folder(self) -> str:
        """Ask for a folder (tests replace this)."""
        return QFileDialog.getExistingDirectory(self, self.tr("Retry into which folder?"),
                                                self.context.settings().output_folder)

    def retry_elsewhere(self, job_id: str | None, folder: str | None = None) -> Any:
        """The failed cells again, as a new job writing into another folder (checked first)."""
        job = self.monitor.jobs.get(job_id or "")
        if job is None or job.status is None:
            return None
        folder = folder or self.choose_folder()
        if not folder:
            return None
        pool, key, records = self.context.pool, job.key, list(job.status.records)

        def run(task: Any) -> Any:
            from ..core.outputfolder import check_output_folder, retry_elsewhere

            backend = pool.get(key)
            found = backend.log.load_job(job.job_id)
            if found is None:
                raise InvalidInput(f"job {job.job_id} is not in the task log any more")
            again = retry_elsewhere(found[0], records, folder)
            check_output_folder(folder)
            return again, backend.submit(again)

        what = self.tr("rsbatch: retrying job {} in {}").format(job.job_id, folder)
        task = FunctionTask(what, run, on_success=lambda done: self.add_job(
            done[0], done[1], key, self.labels.get(job.job_id, "")),
            on_error=lambda error: self.context.notifier.error(error, what))
        return self.context.tasks.start(task)

    def zoom_to(self, index: QModelIndex) -> bool:
        """Zoom the map to the results of a job (job row) or of one cell or unit (its row)."""
        cell_id = index.sibling(index.row(), 0).data(CELL_ID_ROLE) \
            if index.parent().isValid() else None
        return self.results.zoom_to(self.model.job_of(index), cell_id)

    def open_folder(self, job_id: str | None) -> None:
        folder = self.results.folder(job_id)
        if folder and os.path.isdir(folder):
            QDesktopServices.openUrl(QUrl.fromLocalFile(folder))

    def set_poll_interval(self, milliseconds: int) -> None:
        self.monitor.interval_ms = max(200, milliseconds)

    def cell_status(self, job_id: str, cell_id: str) -> Status | None:
        job = self.monitor.jobs.get(job_id)
        if job is None or job.status is None:
            return None
        for record in job.status.records:
            if record.cell_id == cell_id:
                return record.status
        return None

    def cell_text(self, job_id: str, cell_id: str, column: int) -> str:
        item = self.model.cell_item(job_id, cell_id, column)
        return item.text() if item is not None else ""

    def cleanup(self) -> None:
        self.monitor.stop()
        if self._history_task is not None:
            self._history_task.detach()

    def _index(self, job_id: str) -> QModelIndex:
        return self.model.index(self.model.job_row(job_id), 0)
