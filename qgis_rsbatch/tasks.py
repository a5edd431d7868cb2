"""One base task for every long or network operation of the plugin, and the registry that
keeps each task referenced until QGIS is done with it.

`BaseTask.run()` runs in a worker thread: it checks cancellation, calls `_run()` and stores
any exception as `self.error` (never raising into QGIS's task manager). `finished()` runs
on the main thread and hands the result, the error or the cancellation to callbacks, so
only main-thread code ever touches widgets, layers or the project. `_run()` must not.

Python objects of running tasks must stay referenced: QGIS owns the C++ task, but a
Python subclass whose wrapper is garbage-collected loses its `run()` override mid-flight
(a crash, or a task that silently does nothing). `TaskRegistry` holds them until the task
manager reports them complete or terminated, and cancels them all on unload.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import QTimer

LOG_TAG = "rsbatch"


class TaskCancelled(Exception):
    """Raised inside `_run()` (by `check_cancelled`) to stop a cancelled task early."""


class BaseTask(QgsTask):
    """A QgsTask with a named error, cancellation checks and main-thread callbacks.

    Subclasses implement `_run()`; its return value becomes `self.result`. Callbacks are
    called from `finished()` on the main thread: `on_success(result)`, `on_error(error)`,
    `on_cancel()`. `detach()` drops them (the plugin is unloading and its widgets are gone).
    """

    def __init__(self, description: str, *, flags: Any = None,
                 on_success: Callable[[Any], None] | None = None,
                 on_error: Callable[[BaseException], None] | None = None,
                 on_cancel: Callable[[], None] | None = None) -> None:
        super().__init__(description, QgsTask.Flag.CanCancel if flags is None else flags)
        self.result: Any = None
        self.error: BaseException | None = None
        self.error_details = ""
        self.on_success = on_success
        self.on_error = on_error
        self.on_cancel = on_cancel
        #: told when a callback itself fails (the registry sets it: the message bar)
        self.on_internal_error: Callable[[BaseException], None] | None = None
        self._detached = False

    # --- worker thread -----------------------------------------------------------------
    def run(self) -> bool:
        if self.isCanceled():
            return False
        try:
            self.result = self._run()
        except TaskCancelled:
            return False
        except Exception as exc:  # the task's one exit for every failure
            self.error = exc
            self.error_details = traceback.format_exc()
            # QgsMessageLog is safe to call from any thread
            QgsMessageLog.logMessage(f"{self.description()}: {self.error_details}", LOG_TAG,
                                     Qgis.MessageLevel.Info)
            return False
        return not self.isCanceled()

    def _run(self) -> Any:
        """The blocking work. Never touch widgets, layers or the project here."""
        raise NotImplementedError

    def check_cancelled(self) -> None:
        """Stop early (from inside `_run()`) when the user or unload cancelled the task."""
        if self.isCanceled():
            raise TaskCancelled(self.description())

    def report(self, fraction: float) -> None:
        """Progress 0–1, shown in QGIS's task manager; also a cancellation point."""
        self.setProgress(max(0.0, min(100.0, 100.0 * fraction)))
        self.check_cancelled()

    # --- main thread -------------------------------------------------------------------
    def finished(self, ok: bool) -> None:
        if self._detached:
            return
        try:
            if ok:
                if self.on_success:
                    self.on_success(self.result)
            elif self.error is not None:
                if self.on_error:
                    self.on_error(self.error)
            elif self.on_cancel:
                self.on_cancel()
        except Exception as exc:  # a bug of ours: say so, never a traceback dialog
            QgsMessageLog.logMessage(f"{self.description()}: {traceback.format_exc()}",
                                     LOG_TAG, Qgis.MessageLevel.Critical)
            if self.on_internal_error is not None:
                self.on_internal_error(exc)

    def detach(self) -> None:
        """Forget the callbacks: whatever the task ends with, nobody is listening."""
        self._detached = True
        self.on_success = self.on_error = self.on_cancel = None
        self.on_internal_error = None


class FunctionTask(BaseTask):
    """Runs `function(task)` in the background; for core calls that need no subclass."""

    def __init__(self, description: str, function: Callable[[BaseTask], Any],
                 **callbacks: Any) -> None:
        super().__init__(description, **callbacks)
        self._function = function

    def _run(self) -> Any:
        return self._function(self)


#: every task started through a registry, until it has ended: a task cancelled by unload may
#: still be running after the plugin object (and its registry) are gone
_ALIVE: set[BaseTask] = set()


def _release(task: BaseTask) -> None:
    # taskCompleted/taskTerminated come right after finished(); drop the reference on the
    # next turn of the event loop, once QGIS has let go of the task too
    QTimer.singleShot(0, lambda: _ALIVE.discard(task))


class TaskRegistry:
    """Starts tasks, keeps each referenced until it ends, and cancels them all on unload."""

    def __init__(self, manager: Any = None,
                 on_internal_error: Callable[[BaseException], None] | None = None) -> None:
        self._manager = manager
        self.on_internal_error = on_internal_error
        self._tasks: list[BaseTask] = []
        self._closed = False

    @property
    def manager(self) -> Any:
        return self._manager or QgsApplication.taskManager()

    def start(self, task: BaseTask) -> BaseTask:
        """Hand `task` to QGIS's task manager; it stays referenced until it has ended."""
        if self._closed:
            task.detach()
            return task
        self._tasks.append(task)
        _ALIVE.add(task)
        if task.on_internal_error is None:
            task.on_internal_error = self.on_internal_error
        task.taskCompleted.connect(lambda t=task: self._ended(t))
        task.taskTerminated.connect(lambda t=task: self._ended(t))
        self.manager.addTask(task)
        return task

    def _ended(self, task: BaseTask) -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        _release(task)

    def running(self) -> list[BaseTask]:
        """Tasks started here that have not ended yet."""
        return list(self._tasks)

    def cancel_all(self) -> None:
        """Cancel every task, drop its callbacks and refuse new ones (used by unload)."""
        self._closed = True
        for task in list(self._tasks):
            task.detach()
            task.cancel()
        self._tasks.clear()
