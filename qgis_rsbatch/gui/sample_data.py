""""Try it with sample data": one action that generates the sample scenes and their static
STAC catalog into the profile folder (`<profile>/rsbatch/samples`, made by the worker's own
generator in the worker environment, in a task) and fills the area, the dates and the
catalog, so a new user, offline too, sees a whole job end to end in a minute.

Without a worker environment it first offers to set one up, as Submit does.
"""

from __future__ import annotations

from typing import Any

from qgis.PyQt.QtCore import QObject, pyqtSignal

from ..core.errors import DependencyMissing
from ..environments import generate_samples, profile_worker_python, samples_folder, worker_python
from ..tasks import FunctionTask
from .worker_setup import DOWNLOAD_MB


class SampleData(QObject):
    """Generates the sample data in a task and hands it to the dock's panels."""

    #: the sample's {"catalog", "aoi", "start", "end"}, once generated and filled in
    ready = pyqtSignal(dict)

    def __init__(self, context: Any, fill: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.fill = fill
        self.task: Any = None

    def start(self) -> Any:
        if self.task is not None:
            return self.task
        chosen = worker_python(self.context.settings())
        folder = samples_folder()

        def run(task: Any) -> dict:
            from ..core.backends.local import default_worker_python

            own = profile_worker_python()
            python = chosen or default_worker_python(extra=(own,) if own else ())
            return generate_samples(python, folder)

        self.task = FunctionTask(self.tr("rsbatch: generating the sample data"), run,
                                 on_success=self._generated, on_error=self._failed,
                                 on_cancel=self._cancelled)
        return self.context.tasks.start(self.task)

    def _generated(self, sample: dict) -> None:
        self.task = None
        self.fill(sample)
        self.context.notifier.info(self.tr("Sample data ready: two generated tiles on two "
                                           "dates. Press Search, then Submit."))
        self.ready.emit(sample)

    def _failed(self, error: BaseException) -> None:
        self.task = None
        setup = self.context.worker_setup
        if isinstance(error, DependencyMissing) and setup is not None and \
                not self.context.settings().worker_python and not profile_worker_python() \
                and self.context.confirm(
                    None, self.tr("Set up the worker environment?"),
                    self.tr("The sample scenes are written by rsbatch's worker environment "
                            "(rasterio, numpy, boto3: about {} MB to download into the QGIS "
                            "profile folder). Set it up now?").format(DOWNLOAD_MB)):
            setup.start(then=self.start)
            return
        self.context.notifier.error(error, self.tr("Sample data"))

    def _cancelled(self) -> None:
        self.task = None

    def cleanup(self) -> None:
        if self.task is not None:
            self.task.detach()
            self.task = None
