"""The dock's third step: where the job runs, what it will cost, and the Submit button.

Where is the backend form's business (`backend_form`). The job and core's estimate are made
in a task whenever the ticked scenes or the backend change; Submit asks for confirmation
above the user's thresholds and submits in a task (starting processes or calling AWS must
not freeze the window).
"""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt, QTimer, pyqtSignal
from qgis.PyQt.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from ..core.errors import DependencyMissing, RsbatchError
from ..core.estimate import estimate
from ..core.outputfolder import check_output_folder
from ..core.planning import JobRequest, make_job
from ..environments import profile_worker_python, worker_python
from ..tasks import FunctionTask
from .backend_form import AWS, LOCAL, BackendForm
from .backends import require_worker_python
from .context import Context
from .messages import describe, plain_text
from .reduce_options import ReduceOptions, units_summary
from .worker_setup import DOWNLOAD_MB

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
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.timeout.connect(self._start_plan)
        self._build()
        self.invalidate()

    # --- widgets ---------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.reduce_options = ReduceOptions(self.context, self)
        layout.addWidget(self.reduce_options)
        self.backend_form = BackendForm(self.context, self)
        layout.addWidget(self.backend_form)
        self.estimate_label = QLabel(self)
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.estimate_label)
        self.submit_button = QPushButton(QgsApplication.getThemeIcon("/mActionStart.svg"),
                                         self.tr("Submit job"), self)
        self.submit_button.setMinimumHeight(30)
        layout.addWidget(self.submit_button)
        self.submit_button.clicked.connect(self.submit)
        self.backend_form.changed.connect(self.invalidate)
        self.reduce_options.changed.connect(self.invalidate)

    def backend(self) -> str:
        return self.backend_form.backend()

    def set_backend(self, name: str) -> None:
        self.backend_form.set_backend(name)

    def _save(self) -> None:
        self.backend_form.save()
        self.reduce_options.save()

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
        form = self.backend_form
        return (form.backend(), form.output(), form.workers(), self.reduce_options.state(),
                repr(sorted((k, repr(v)) for k, v in (self.options or {}).items())),
                tuple(s.item_id for s in self.scenes))

    def _start_plan(self) -> None:
        if not self.options or not self.scenes:
            return
        if self._plan_task is not None:
            self._plan_task.detach()
            self._plan_task.cancel()
        inputs = self._inputs()
        try:
            reduce = self.reduce_options.options()
        except RsbatchError as exc:
            self._plan_failed(exc)
            return
        options = dict(self.options, output=self.backend_form.output(), **reduce)
        scenes = list(self.scenes)
        backend = self.backend()
        workers = self.backend_form.workers() or None
        spot = self.context.settings().spot_price

        def run(task: Any) -> Any:
            job = make_job(JobRequest(**options), scenes)
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
        self.estimate_label.setText(self.describe(guess, job))
        if self._submit_after_plan:
            self._submit_after_plan = False
            self.submit()

    def _plan_failed(self, error: BaseException) -> None:
        self._plan_task = None
        self._submit_after_plan = False
        self.estimate_label.setText(f"<span style='color:#d7301f'>{describe(error)}</span>")

    def describe(self, guess: Any, job: Any = None) -> str:
        """The estimate in the dock's words (HTML): cells, reduce units, bytes, time or cost."""
        parts = [self.tr("<b>{} cell(s)</b> on {} tile(s)").format(guess.cells, guess.tiles)]
        units = units_summary(job) if job is not None else ""
        if units:
            parts.append(self.tr("then {}").format(units))
        parts.append(self.tr("{:.2f} GB to read, {:.2f} GB to write").format(guess.input_gb,
                                                                            guess.output_gb))
        if guess.dollars is not None:
            parts.append(self.tr("{:.2f} vCPU-hours, about <b>${:.2f}</b> at ${:g}/vCPU-hour "
                                 "Spot").format(guess.vcpu_hours, guess.dollars,
                                                guess.spot_price))
        else:
            minutes = guess.hours_local * 60
            when = self.tr("{:.0f} min").format(max(1, minutes)) if minutes < 120 else \
                self.tr("{:.1f} h").format(guess.hours_local)
            parts.append(self.tr("about {} on this computer").format(when))
        text = " · ".join(parts)
        if units and self.backend() == AWS:  # as `rsbatch run` warns
            text += self.tr("<br><span style='color:#a6611a'>The AWS stack runs only the cells "
                            "for now: these mosaics and composites would not be made there "
                            "(run on this computer for them).</span>")
        return text

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
                        "it?").format(plain_text(self.describe(guess, job)))):
            return None
        self._save()
        key = self.backend_form.backend_key()
        label = self.backend_form.backend_label()
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
