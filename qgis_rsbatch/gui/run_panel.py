"""The dock's third step: where the job runs, what it will cost, and the Submit button.

Local (default): an output folder; the job runs in worker processes beside QGIS. AWS: a
deployed stack (its outputs file names the bucket and region), a profile *name* and a region;
credentials stay in the AWS profile chain. The job and core's estimate are made in a task
whenever the ticked scenes change; Submit asks for confirmation above the user's thresholds
and submits in a task (starting processes or calling AWS must not freeze the window).
"""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import Qt, QTimer, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import DependencyMissing, RsbatchError
from ..core.estimate import estimate
from ..core.outputfolder import check_output_folder
from ..core.planning import JobRequest, make_job
from ..environments import profile_worker_python, worker_python
from ..tasks import FunctionTask
from .backends import (
    aws_key,
    aws_profiles,
    boto3_missing,
    default_s3_output,
    list_stacks,
    read_stack,
    require_worker_python,
)
from .context import Context
from .messages import describe
from .worker_setup import DOWNLOAD_MB

LOCAL, AWS = "local", "aws"
ESTIMATE_DELAY_MS = 300


class RunPanel(QWidget):
    """Backend choice, estimate, submit."""

    #: job (core Job), its first JobStatus, backend key, a label for the backend
    submitted = pyqtSignal(object, object, object, str)

    def __init__(self, context: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.options: dict[str, Any] | None = None
        self.scenes: list[Any] = []
        self.plan: tuple[Any, Any, Any] | None = None   # (inputs, job, estimate)
        self._plan_task: Any = None
        self._submit_task: Any = None
        self._submit_after_plan = False
        self._default_s3 = ""
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.timeout.connect(self._start_plan)
        self._build()
        self._restore()

    # --- widgets ---------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.backend_combo = QComboBox(self)
        self.backend_combo.addItem(self.tr("This computer"), LOCAL)
        self.backend_combo.addItem(self.tr("AWS Batch (deployed stack)"), AWS)
        form.addRow(self.tr("Run on"), self.backend_combo)
        layout.addLayout(form)

        self.pages = QStackedWidget(self)
        self.pages.addWidget(self._local_page())
        self.pages.addWidget(self._aws_page())
        layout.addWidget(self.pages)

        self.estimate_label = QLabel(self)
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.estimate_label)
        self.submit_button = QPushButton(QgsApplication.getThemeIcon("/mActionStart.svg"),
                                         self.tr("Submit job"), self)
        self.submit_button.setMinimumHeight(30)
        layout.addWidget(self.submit_button)

        self.backend_combo.currentIndexChanged.connect(self._backend_changed)
        self.stack_combo.currentTextChanged.connect(self._stack_changed)
        self.refresh_stacks_button.clicked.connect(self.refresh_stacks)
        self.submit_button.clicked.connect(self.submit)
        self.folder_widget.fileChanged.connect(lambda _path: self.invalidate())
        self.s3_edit.textChanged.connect(lambda _text: self.invalidate())
        self.workers_spin.valueChanged.connect(lambda _value: self.invalidate())

    def _local_page(self) -> QWidget:
        local = QWidget(self.pages)
        local_form = QFormLayout(local)
        local_form.setContentsMargins(0, 0, 0, 0)
        self.folder_widget = QgsFileWidget(local)
        self.folder_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.folder_widget.setDialogTitle(self.tr("Folder for the results"))
        local_form.addRow(self.tr("Output folder"), self.folder_widget)
        self.workers_spin = QSpinBox(local)
        self.workers_spin.setRange(0, 64)
        self.workers_spin.setSpecialValueText(self.tr("one per core"))
        self.workers_spin.setToolTip(self.tr("Cells processed at the same time"))
        local_form.addRow(self.tr("Parallel cells"), self.workers_spin)
        return local

    def _aws_page(self) -> QWidget:
        aws = QWidget(self.pages)
        aws_form = QFormLayout(aws)
        aws_form.setContentsMargins(0, 0, 0, 0)
        stack_row = QHBoxLayout()
        self.stack_combo = QComboBox(aws)
        self.stack_combo.setEditable(True)
        self.stack_combo.setToolTip(self.tr("Stacks deployed from this computer with `make "
                                            "deploy`"))
        self.refresh_stacks_button = QToolButton(aws)
        self.refresh_stacks_button.setIcon(QgsApplication.getThemeIcon("/mActionRefresh.svg"))
        self.refresh_stacks_button.setToolTip(self.tr("Look for deployed stacks again"))
        stack_row.addWidget(self.stack_combo, 1)
        stack_row.addWidget(self.refresh_stacks_button)
        aws_form.addRow(self.tr("Stack"), stack_row)
        self.profile_combo = QComboBox(aws)
        self.profile_combo.setEditable(True)
        self.profile_combo.setToolTip(self.tr("An AWS profile name (credentials stay in your "
                                              "AWS configuration); empty: the default chain"))
        aws_form.addRow(self.tr("AWS profile"), self.profile_combo)
        self.region_edit = QLineEdit(aws)
        self.region_edit.setPlaceholderText(self.tr("the stack's region"))
        aws_form.addRow(self.tr("Region"), self.region_edit)
        self.s3_edit = QLineEdit(aws)
        self.s3_edit.setPlaceholderText("s3://bucket/prefix")
        aws_form.addRow(self.tr("Output"), self.s3_edit)
        self.aws_note = QLabel(aws)
        self.aws_note.setWordWrap(True)
        aws_form.addRow(self.aws_note)
        return aws

    def _restore(self) -> None:
        settings = self.context.settings()
        self.folder_widget.setFilePath(settings.output_folder)
        self.workers_spin.setValue(max(0, settings.workers))
        self.profile_combo.addItem("")
        self.profile_combo.addItems(aws_profiles())
        self.profile_combo.setEditText(settings.aws_profile)
        self.refresh_stacks()
        self.stack_combo.setEditText(settings.aws_stack)
        if settings.aws_region:
            self.region_edit.setText(settings.aws_region)
        if settings.aws_output:
            self.s3_edit.setText(settings.aws_output)
        index = self.backend_combo.findData(settings.backend)
        self.backend_combo.setCurrentIndex(max(0, index))
        self._backend_changed()

    def refresh_stacks(self) -> None:
        current = self.stack_combo.currentText()
        self.stack_combo.blockSignals(True)
        self.stack_combo.clear()
        self.stack_combo.addItems(list_stacks())
        self.stack_combo.setEditText(current)
        self.stack_combo.blockSignals(False)

    # --- backend ----------------------------------------------------------------------------
    def backend(self) -> str:
        return self.backend_combo.currentData() or LOCAL

    def set_backend(self, name: str) -> None:
        self.backend_combo.setCurrentIndex(max(0, self.backend_combo.findData(name)))

    def _backend_changed(self, *_args: Any) -> None:
        aws = self.backend() == AWS
        self.pages.setCurrentIndex(1 if aws else 0)
        # the stack is as tall as the page shown, not as its tallest page
        for index in range(self.pages.count()):
            policy = QSizePolicy.Policy.Preferred if index == self.pages.currentIndex() \
                else QSizePolicy.Policy.Ignored
            self.pages.widget(index).setSizePolicy(policy, policy)
        self.pages.adjustSize()
        if aws:
            self._stack_changed(self.stack_combo.currentText())
        self.invalidate()

    def _stack_changed(self, stack: str) -> None:
        notes = []
        missing = boto3_missing()
        if missing:
            notes.append(missing)
        try:
            outputs = read_stack(stack.strip()) if stack.strip() else {}
        except RsbatchError as exc:
            outputs = {}
            notes.append(str(exc))
        self._default_s3 = default_s3_output(outputs)
        self.region_edit.setPlaceholderText(outputs.get("Region") or self.tr("the stack's region"))
        self.s3_edit.setPlaceholderText(self._default_s3 or "s3://bucket/prefix")
        self.aws_note.setText("\n".join(notes))
        self.aws_note.setVisible(bool(notes))
        self.invalidate()

    def backend_key(self) -> Any:
        if self.backend() == AWS:
            return aws_key(stack=self.stack_combo.currentText().strip(),
                           region=self.region_edit.text().strip(),
                           profile=self.profile_combo.currentText().strip())
        return self.context.local_key()

    def backend_label(self) -> str:
        if self.backend() == AWS:
            region = self.region_edit.text().strip() or self.region_edit.placeholderText()
            return self.tr("AWS stack {} ({})").format(self.stack_combo.currentText().strip(),
                                                       region)
        return self.tr("this computer")

    def output(self) -> str:
        if self.backend() == AWS:
            return self.s3_edit.text().strip() or self._default_s3
        return self.folder_widget.filePath().strip()

    def _save(self) -> None:
        settings = self.context.settings()
        settings.backend = self.backend()
        settings.workers = self.workers_spin.value()
        if self.backend() == AWS:
            settings.aws_stack = self.stack_combo.currentText().strip()
            settings.aws_region = self.region_edit.text().strip()
            settings.aws_profile = self.profile_combo.currentText().strip()
            settings.aws_output = self.s3_edit.text().strip()
        else:
            settings.output_folder = self.folder_widget.filePath().strip()

    # --- plan and estimate -------------------------------------------------------------------
    def set_inputs(self, options: dict[str, Any] | None, scenes: list[Any]) -> None:
        """The search step's request options and ticked scenes; re-estimate shortly."""
        self.options = options
        self.scenes = list(scenes)
        self.invalidate()

    def invalidate(self) -> None:
        self.plan = None
        ready = bool(self.options and self.options.get("aoi") and self.scenes)
        self.submit_button.setEnabled(ready and self._submit_task is None)
        if not ready:
            self.estimate_label.setText(self.tr("Tick the scenes to process, then submit."))
            self._debounce.stop()
            return
        self.estimate_label.setText(self.tr("Estimating…"))
        self._debounce.start(ESTIMATE_DELAY_MS)

    def _inputs(self) -> tuple:
        return (self.backend(), self.output(), self.workers_spin.value(),
                repr(sorted((k, repr(v)) for k, v in (self.options or {}).items())),
                tuple(s.item_id for s in self.scenes))

    def _start_plan(self) -> None:
        if not self.options or not self.scenes:
            return
        if self._plan_task is not None:
            self._plan_task.detach()
            self._plan_task.cancel()
        inputs = self._inputs()
        options = dict(self.options, output=self.output())
        scenes = list(self.scenes)
        backend = self.backend()
        workers = self.workers_spin.value() or None
        spot = self.context.settings().spot_price

        def run(task: Any) -> Any:
            # cells only until the dock shows mosaics and composites (issue 16 §4); an
            # option of the dock's own ("mosaic") wins
            request = JobRequest(**{"mosaic": False, **options})
            job = make_job(request, scenes)
            return job, estimate(job, backend=backend, workers=workers, spot_price=spot)

        self._plan_task = self.context.tasks.start(FunctionTask(
            self.tr("rsbatch: estimating the job"), run,
            on_success=lambda result: self._planned(inputs, *result),
            on_error=self._plan_failed))

    def _planned(self, inputs: tuple, job: Any, guess: Any) -> None:
        self._plan_task = None
        if inputs != self._inputs():
            self.invalidate()
            return
        self.plan = (inputs, job, guess)
        self.estimate_label.setText(self.describe(guess))
        if self._submit_after_plan:
            self._submit_after_plan = False
            self.submit()

    def _plan_failed(self, error: BaseException) -> None:
        self._plan_task = None
        self._submit_after_plan = False
        self.estimate_label.setText(f"<span style='color:#d7301f'>{describe(error)}</span>")

    def describe(self, guess: Any) -> str:
        """The estimate in the dock's words (HTML)."""
        parts = [self.tr("<b>{} cell(s)</b> on {} tile(s)").format(guess.cells, guess.tiles),
                 self.tr("{:.2f} GB to read, {:.2f} GB to write").format(guess.input_gb,
                                                                       guess.output_gb)]
        if guess.dollars is not None:
            parts.append(self.tr("{:.2f} vCPU-hours, about <b>${:.2f}</b> at ${:g}/vCPU-hour "
                                 "Spot").format(guess.vcpu_hours, guess.dollars,
                                                guess.spot_price))
        else:
            minutes = guess.hours_local * 60
            when = self.tr("{:.0f} min").format(max(1, minutes)) if minutes < 120 else \
                self.tr("{:.1f} h").format(guess.hours_local)
            parts.append(self.tr("about {} on this computer").format(when))
        return " · ".join(parts)

    def needs_confirmation(self, guess: Any) -> bool:
        settings = self.context.settings()
        if guess.cells > settings.confirm_cells:
            return True
        return guess.dollars is not None and guess.dollars > settings.confirm_dollars

    # --- submit ------------------------------------------------------------------------------
    def submit(self) -> Any:
        """Submit the planned job (planning it first if needed); returns the task or None."""
        if self._submit_task is not None or not self.options or not self.scenes:
            return None
        if self.plan is None or self.plan[0] != self._inputs():
            self._submit_after_plan = True
            self._debounce.stop()
            self._start_plan()
            return None
        _, job, guess = self.plan
        if self.needs_confirmation(guess) and not self.context.confirm(
                self, self.tr("Submit this job?"),
                self.tr("This job is larger than your confirmation threshold:\n{}\n\nSubmit "
                        "it?").format(self.describe(guess).replace("<b>", "")
                                      .replace("</b>", ""))):
            return None
        self._save()
        key = self.backend_key()
        label = self.backend_label()
        pool = self.context.pool
        self.submit_button.setEnabled(False)
        self.estimate_label.setText(self.tr("Submitting {} cell(s)…").format(len(job.cells)))
        python = worker_python(self.context.settings()) or None

        def run(task: Any) -> Any:
            if key[0] == LOCAL:  # fail with what to do, not with a dead runner or full disk
                check_output_folder(job.cells[0].output, guess.output_gb * 1e9)
                require_worker_python(python)
            return pool.get(key).submit(job)

        self._submit_task = FunctionTask(
            self.tr("rsbatch: submitting job {}").format(job.job_id), run,
            on_success=lambda status: self._submitted(job, status, key, label),
            on_error=lambda error: self._submit_failed(error, key),
            on_cancel=self._submit_cancelled)
        return self.context.tasks.start(self._submit_task)

    def _submitted(self, job: Any, status: Any, key: Any, label: str) -> None:
        self._submit_task = None
        self.invalidate()
        self.submitted.emit(job, status, key, label)

    def _submit_failed(self, error: BaseException, key: Any = None) -> None:
        self._submit_task = None
        self.invalidate()
        if key is not None and key[0] == LOCAL and self._offer_worker_setup(error):
            return
        self.context.notifier.error(error, self.tr("Submit"))

    def _offer_worker_setup(self, error: BaseException) -> bool:
        """No worker Python at all (a fresh ZIP install): offer to set up the worker
        environment in the background, then submit again. Whether the offer was taken."""
        setup = self.context.worker_setup
        if setup is None or not isinstance(error, DependencyMissing) or \
                self.context.settings().worker_python or profile_worker_python():
            return False  # a Python of the user's own, or one set up already: say why not
        if not setup.running and not self.context.confirm(
                self, self.tr("Set up the worker environment?"),
                self.tr("Jobs on this computer need rsbatch's worker environment (rasterio, "
                        "numpy, boto3: about {} MB to download into the QGIS profile "
                        "folder). Set it up now and then submit this job?").format(
                            DOWNLOAD_MB)):
            return False
        self.estimate_label.setText(self.tr("Setting up the worker environment; the job is "
                                            "submitted when it is ready…"))
        setup.start(then=self.submit)
        return True

    def _submit_cancelled(self) -> None:
        self._submit_task = None
        self.invalidate()

    def cleanup(self) -> None:
        self._debounce.stop()
        for task in (self._plan_task, self._submit_task):
            if task is not None:
                task.detach()
