"""The dock's settings tab: the worker's Python (which one is in use, its rasterio and GDAL,
a button that sets up the plugin's own worker environment, or a Python of one's own),
confirmation thresholds, how results are loaded, how often jobs are polled.

Every field is written to QgsSettings (`rsbatch/…`) as soon as it changes.
"""

from __future__ import annotations

from typing import Any

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.estimate import DEFAULT_SPOT_PRICE
from ..core.workerenv import DOWNLOAD_MB, INSTALLED_MB
from ..environments import worker_env_folder, worker_python
from ..tasks import FunctionTask
from .backends import WorkerCheck, check_worker_python, forget_checks
from .context import Context


class SettingsPanel(QWidget):
    """Edits the plugin's settings."""

    #: the polling interval changed (milliseconds)
    pollIntervalChanged = pyqtSignal(int)
    #: the worker check finished: ok, message
    workerChecked = pyqtSignal(bool, str)

    def __init__(self, context: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self._check_task: Any = None
        self.last_check: WorkerCheck | None = None
        layout = QVBoxLayout(self)
        for title, form in ((self.tr("Local worker"), self._local_form()),
                            (self.tr("Results"), self._results_form()),
                            (self.tr("Confirmation, cost and polling"), self._safety_form())):
            box = QGroupBox(title, self)
            box.setLayout(form)
            layout.addWidget(box)
        layout.addStretch(1)
        self._restore()
        self._connect()

    def _local_form(self) -> QFormLayout:
        form = QFormLayout()
        self.python_widget = QgsFileWidget(self)
        self.python_widget.setStorageMode(QgsFileWidget.StorageMode.GetFile)
        self.python_widget.setDialogTitle(self.tr("Python that runs the worker"))
        self.python_widget.setToolTip(self.tr(
            "Advanced: your own Python with rasterio and numpy (a conda environment, OSGeo4W's "
            "Python, a checkout's .venv/bin/python). Empty: the worker environment set up "
            "below (or, beside a checkout, its .venv)."))
        form.addRow(self.tr("Worker Python"), self.python_widget)
        setup = QHBoxLayout()
        self.setup_button = QPushButton(self.tr("Set up worker environment"), self)
        self.setup_button.setToolTip(self.tr(
            "Makes a private Python environment for the worker in the QGIS profile folder "
            "(rsbatch/worker-env) with the Python QGIS runs, and downloads rasterio, numpy, "
            "numba, zstandard and boto3 into it (about {download} MB, {installed} MB "
            "installed; pip follows PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX and QGIS's "
            "proxy).").format(download=DOWNLOAD_MB, installed=INSTALLED_MB))
        self.aws_check = QCheckBox(self.tr("also boto3 for AWS jobs"), self)
        self.remove_button = QPushButton(self.tr("Remove"), self)
        self.remove_button.setToolTip(self.tr("Delete the worker environment and boto3 "
                                              "from the profile folder"))
        setup.addWidget(self.setup_button)
        setup.addWidget(self.aws_check)
        setup.addWidget(self.remove_button)
        setup.addStretch(1)
        form.addRow("", setup)
        row = QHBoxLayout()
        self.check_button = QPushButton(self.tr("Check"), self)
        self.check_label = QLabel(self)
        self.check_label.setWordWrap(True)
        self.check_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.check_button)
        row.addWidget(self.check_label, 1)
        form.addRow("", row)
        return form

    def _results_form(self) -> QFormLayout:
        form = QFormLayout()
        self.auto_load_check = QCheckBox(self.tr("Add each cell's results to the map as it "
                                                 "finishes"), self)
        form.addRow(self.auto_load_check)
        self.stretch_combo = QComboBox(self)
        self.stretch_combo.addItem(self.tr("Reflectance 0 – 0.3 (same for every layer)"),
                                   "fixed")
        self.stretch_combo.addItem(self.tr("Cumulative cut 2 – 98 % (per layer)"),
                                   "cumulative")
        form.addRow(self.tr("RGB stretch"), self.stretch_combo)
        self.s3_combo = QComboBox(self)
        self.s3_combo.addItem(self.tr("Stream from S3 (/vsis3/)"), "stream")
        self.s3_combo.addItem(self.tr("Download, then open"), "download")
        form.addRow(self.tr("S3 results"), self.s3_combo)
        self.download_widget = QgsFileWidget(self)
        self.download_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        form.addRow(self.tr("Download folder"), self.download_widget)
        return form

    def _safety_form(self) -> QFormLayout:
        form = QFormLayout()
        self.cells_spin = QSpinBox(self)
        self.cells_spin.setRange(0, 1_000_000)
        self.cells_spin.setSuffix(self.tr(" cells"))
        form.addRow(self.tr("Confirm jobs above"), self.cells_spin)
        self.dollars_spin = QDoubleSpinBox(self)
        self.dollars_spin.setRange(0, 100_000)
        self.dollars_spin.setPrefix("$ ")
        form.addRow(self.tr("… or costing above"), self.dollars_spin)
        self.spot_spin = QDoubleSpinBox(self)
        self.spot_spin.setDecimals(4)
        self.spot_spin.setRange(0.0001, 10)
        self.spot_spin.setSingleStep(0.005)
        self.spot_spin.setPrefix("$ ")
        self.spot_spin.setToolTip(self.tr("Spot price per vCPU-hour used by the AWS estimate "
                                          "(default {})").format(DEFAULT_SPOT_PRICE))
        form.addRow(self.tr("Spot price per vCPU-hour"), self.spot_spin)
        self.poll_spin = QDoubleSpinBox(self)
        self.poll_spin.setRange(0.2, 600)
        self.poll_spin.setSuffix(self.tr(" s"))
        form.addRow(self.tr("Check jobs every"), self.poll_spin)
        return form

    def _restore(self) -> None:
        settings = self.context.settings()
        self.python_widget.setFilePath(settings.worker_python)
        self.auto_load_check.setChecked(settings.auto_load)
        self.stretch_combo.setCurrentIndex(max(0, self.stretch_combo.findData(
            settings.rgb_stretch)))
        self.s3_combo.setCurrentIndex(max(0, self.s3_combo.findData(settings.s3_mode)))
        self.download_widget.setFilePath(settings.download_folder)
        self.cells_spin.setValue(settings.confirm_cells)
        self.dollars_spin.setValue(settings.confirm_dollars)
        self.spot_spin.setValue(settings.spot_price)
        self.poll_spin.setValue(settings.poll_ms / 1000)

    def _connect(self) -> None:
        def store(name: str, value: Any) -> None:
            setattr(self.context.settings(), name, value)

        self.python_widget.fileChanged.connect(lambda path: store("worker_python", path.strip()))
        self.auto_load_check.toggled.connect(lambda on: store("auto_load", on))
        self.stretch_combo.currentIndexChanged.connect(
            lambda _i: store("rgb_stretch", self.stretch_combo.currentData()))
        self.s3_combo.currentIndexChanged.connect(
            lambda _i: store("s3_mode", self.s3_combo.currentData()))
        self.download_widget.fileChanged.connect(lambda path: store("download_folder", path))
        self.cells_spin.valueChanged.connect(lambda v: store("confirm_cells", v))
        self.dollars_spin.valueChanged.connect(lambda v: store("confirm_dollars", v))
        self.spot_spin.valueChanged.connect(lambda v: store("spot_price", v))
        self.poll_spin.valueChanged.connect(self._poll_changed)
        self.check_button.clicked.connect(self.check_worker)
        self.setup_button.clicked.connect(self.setup_worker)
        self.remove_button.clicked.connect(self.remove_worker)
        if self.context.worker_setup is not None:
            self.context.worker_setup.finished.connect(self._setup_finished)

    def _poll_changed(self, seconds: float) -> None:
        milliseconds = round(seconds * 1000)
        self.context.settings().poll_ms = milliseconds
        self.pollIntervalChanged.emit(milliseconds)

    # --- the worker check ---------------------------------------------------------------------
    def check_worker(self, announce: bool = True) -> Any:
        """Probe the worker Python in a task (it starts a process); returns the task.
        `announce`: a failure also goes to the message bar (not only to this tab)."""
        if self._check_task is not None:
            return self._check_task
        self._announce = announce
        python = self.python_widget.filePath().strip() or \
            worker_python(self.context.settings()) or None
        self.check_button.setEnabled(False)
        self.check_label.setText(self.tr("Checking…"))
        self._check_task = FunctionTask(
            self.tr("rsbatch: checking the worker Python"),
            lambda task: check_worker_python(python),
            on_success=self._checked,
            on_error=lambda error: self._checked(WorkerCheck(False, python or "", str(error))))
        return self.context.tasks.start(self._check_task)

    def _checked(self, result: WorkerCheck) -> None:
        self._check_task = None
        self.last_check = result
        self.check_button.setEnabled(True)
        color = "#238b45" if result.ok else "#d7301f"
        prefix = "✔ " if result.ok else "✖ "
        where = f"{result.python}: " if result.ok and result.python else ""
        self.check_label.setText(f"<span style='color:{color}'>{prefix}</span>"
                                 f"{where}{result.message}")
        if not result.ok and getattr(self, "_announce", True):
            self.context.notifier.warning(result.message, self.tr("Worker Python"))
        self.workerChecked.emit(result.ok, result.message)

    # --- the worker environment ---------------------------------------------------------------
    def setup_worker(self) -> Any:
        """Set up the profile's worker environment in a task (then check it again)."""
        if self.context.worker_setup is None:
            return None
        self.setup_button.setEnabled(False)
        self.check_label.setText(self.tr("Setting up the worker environment…"))
        return self.context.worker_setup.start(aws=self.aws_check.isChecked())

    def _setup_finished(self, ok: bool, message: str) -> None:
        self.setup_button.setEnabled(True)
        if ok:
            self.check_worker(announce=False)
        else:
            self.check_label.setText(f"<span style='color:#d7301f'>✖ </span>{message}")

    def remove_worker(self) -> None:
        if self.context.worker_setup is not None and self.context.worker_setup.running:
            return
        from ..environments import aws_libs_folder, remove_installed

        if not self.context.confirm(self, self.tr("Remove the worker environment?"),
                                    self.tr("Delete {} and {}? Local jobs need it again; "
                                            "Set up makes it again.").format(
                                        worker_env_folder(), aws_libs_folder())):
            return
        remove_installed()
        forget_checks()
        self.context.pool.clear()
        self.check_worker(announce=False)

    def cleanup(self) -> None:
        if self._check_task is not None:
            self._check_task.detach()
            self._check_task = None
