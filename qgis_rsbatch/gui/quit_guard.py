"""Quitting QGIS while jobs run: ask once, then let QGIS close.

A local job runs in its own detached runner, so it can go on after QGIS has closed; the
question is only whether it should. The guard watches the main window's Close event (an
event filter sees it before QGIS's own handler): with a local job running it asks once
(No: keep it running in the background, Yes: cancel it), then cancels and waits for the
plugin's own short tasks (polls, result loading), so QGIS finds no active rsbatch task to
ask about a second time and closes. If QGIS's close is then abandoned (the user keeps an
unsaved project open), polling resumes.
"""

from __future__ import annotations

import time
from typing import Any

from qgis.PyQt.QtCore import QCoreApplication, QEvent, QObject, QTimer

TASK_WAIT_MS = 5000


class QuitGuard(QObject):
    def __init__(self, context: Any, jobs_panel: Any, window: Any,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.jobs_panel = jobs_panel
        self.window = window
        self.asked = 0
        if window is not None:
            window.installEventFilter(self)

    def eventFilter(self, watched: Any, event: Any) -> bool:
        if watched is self.window and event.type() == QEvent.Type.Close:
            self.closing()
        return False  # QGIS goes on closing

    def running_local_jobs(self) -> list[Any]:
        return [job for job in self.jobs_panel.monitor.unfinished()
                if job.key[0] == "local" and job.status is not None]

    def closing(self) -> None:
        running = self.running_local_jobs()
        if running:
            self.asked += 1
            names = ", ".join(job.job_id for job in running)
            cancel = self.context.confirm(
                self.window, self.tr("rsbatch jobs are running"),
                self.tr("{} job(s) run on this computer: {}.\n\nYes: cancel them.\nNo: keep "
                        "them running in the background; the Jobs tab shows them (and adds "
                        "their results) the next time QGIS starts.").format(len(running),
                                                                            names))
            if cancel:
                for job in running:
                    try:
                        status = self.context.pool.get(job.key).cancel(job.job_id)
                        self.jobs_panel.monitor.update(job.job_id, status)
                    except Exception as exc:  # report it; QGIS closes anyway
                        self.context.notifier.error(exc, self.tr("Cancel"))
        self._stop_tasks()
        QTimer.singleShot(0, self._resume_if_still_open)

    def _stop_tasks(self) -> None:
        """Stop polling and end the plugin's running tasks, so none is active. Events are
        processed meanwhile (the task manager learns of ends through queued signals), and a
        task a timer starts then is cancelled too."""
        self.jobs_panel.monitor.pause()
        deadline = time.monotonic() + TASK_WAIT_MS / 1000
        while self.context.tasks.running() and time.monotonic() < deadline:
            tasks = self.context.tasks.running()
            for task in tasks:
                task.cancel()
            for task in tasks:
                task.waitForFinished(TASK_WAIT_MS)
            QCoreApplication.processEvents()

    def _resume_if_still_open(self) -> None:
        if self.window is not None and self.window.isVisible():
            self.jobs_panel.monitor.resume()

    def cleanup(self) -> None:
        if self.window is not None:
            self.window.removeEventFilter(self)
            self.window = None
