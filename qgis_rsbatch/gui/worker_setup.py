"""Setting up the worker environment from the dock: one background task at a time (QGIS's
task manager shows its progress and its cancel button), shared by the Settings tab's button
and the first Submit of a local job, which then goes on with the job.

The task makes the profile's worker environment (core.workerenv) and, when asked, boto3 for
QGIS's process (core.awslibs); cancelling kills pip and leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qgis.PyQt.QtCore import QObject, pyqtSignal

from ..core.errors import Cancelled
from ..environments import aws_libs_folder, worker_env_folder
from ..tasks import FunctionTask
from .proxy import proxies_for

PYPI = "https://pypi.org/simple/"
#: what the set-up downloads (the wheels of worker_requirements.txt, Linux x86-64, 2026)
DOWNLOAD_MB = 70


class WorkerSetup(QObject):
    """Starts the set-up task and tells whoever waits how it ended."""

    #: ok, a sentence to show (versions, or what went wrong and what to run by hand)
    finished = pyqtSignal(bool, str)

    def __init__(self, context: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.task: Any = None
        self._then: list[Callable[[], None]] = []

    @property
    def running(self) -> bool:
        return self.task is not None

    def start(self, *, aws: bool = False, then: Callable[[], None] | None = None) -> Any:
        """Start the set-up (or join the one running); `then()` runs once it succeeded."""
        if then is not None:
            self._then.append(then)
        if self.task is not None:
            return self.task
        proxies = proxies_for(PYPI)  # main thread: QGIS's network settings
        folder, aws_folder = worker_env_folder(), aws_libs_folder()

        def run(task: Any) -> dict:
            from ..core.workerenv import env_python, setup_worker_env

            versions = setup_worker_env(
                folder, proxies=proxies, cancelled=task.isCanceled,
                progress=lambda fraction, text: task.setProgress(90 * fraction))
            if aws:
                from ..core.awslibs import install_aws_libs

                install_aws_libs(aws_folder, env_python(folder), proxies=proxies,
                                 cancelled=task.isCanceled)
            task.setProgress(100)
            return versions

        self.task = FunctionTask(self.tr("rsbatch: setting up the worker environment"), run,
                                 on_success=self._succeeded, on_error=self._failed,
                                 on_cancel=lambda: self._failed(Cancelled(
                                     self.tr("the worker set-up was cancelled"))))
        self.context.notifier.info(self.tr("Setting up the worker environment in {} (about {} "
                                           "MB to download); progress and cancel: QGIS's task "
                                           "bar").format(folder, DOWNLOAD_MB))
        return self.context.tasks.start(self.task)

    def _succeeded(self, versions: dict) -> None:
        self.task = None
        from .backends import forget_checks

        forget_checks()
        self.context.pool.clear()  # backends made before knew no worker Python
        text = self.tr("Worker environment ready: Python {}, rasterio {}, GDAL {}").format(
            versions["python"], versions["rasterio"], versions["gdal"])
        self.context.notifier.success(text)
        then, self._then = self._then, []
        self.finished.emit(True, text)
        for step in then:
            step()

    def _failed(self, error: BaseException) -> None:
        self.task = None
        self._then = []
        self.context.notifier.error(error, self.tr("Worker set-up"))
        self.finished.emit(False, str(error))

    def cleanup(self) -> None:
        if self.task is not None:
            self.task.detach()
            self.task = None
        self._then = []
