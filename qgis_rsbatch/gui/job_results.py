"""What the dock does with a job's outcome: message-bar notices (cells failed, with the
reason; the job finished) and its finished outputs as layers, added as they arrive.

Listens to the JobMonitor; loading goes through the ResultLoader (a task per batch). Jobs
whose results are being added are remembered in the settings, so a QGIS closed halfway adds
the rest when the job is found again in the history.
"""

from __future__ import annotations

import os
from typing import Any

from qgis.PyQt.QtCore import QObject

from ..core.tasklog import user_data_dir
from .backends import BackendKey, read_stack
from .context import Context
from .job_history import HISTORY_LIMIT
from .job_monitor import JobMonitor
from .results import LoadRequest, ResultLoader, outputs_of
from .sources import S3Access


class JobResults(QObject):
    """Notices and result layers of the jobs a monitor watches."""

    def __init__(self, context: Context, monitor: JobMonitor,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.monitor = monitor
        self.loader = ResultLoader(context.tasks, parent=self)
        monitor.cellsSucceeded.connect(self._cells_succeeded)
        monitor.cellsFailed.connect(self._cells_failed)
        monitor.jobFinished.connect(self._job_finished)
        self.loader.loadFailed.connect(self._load_failed)

    # --- which jobs add their results as they finish ----------------------------------------
    def loading(self, job_id: str) -> None:
        settings = self.context.settings()
        if job_id not in settings.loading_jobs:
            settings.loading_jobs = [job_id, *settings.loading_jobs][:HISTORY_LIMIT]

    def done_loading(self, job_id: str) -> None:
        settings = self.context.settings()
        settings.loading_jobs = [j for j in settings.loading_jobs if j != job_id]

    def was_loading(self, job_id: str) -> bool:
        return job_id in self.context.settings().loading_jobs

    # --- notices ------------------------------------------------------------------------------
    def _cells_succeeded(self, job_id: str, records: list) -> None:
        if self.context.settings().auto_load:
            self.load(job_id, records)

    def _cells_failed(self, job_id: str, records: list) -> None:
        first = records[0]
        if len(records) == 1:
            text = self.tr("Cell {} of job {} failed: {}").format(first.cell_id, job_id,
                                                                  first.error or "?")
        else:
            text = self.tr("{} cells of job {} failed; {}: {}").format(
                len(records), job_id, first.cell_id, first.error or "?")
        self.context.notifier.warning(text, self.tr("rsbatch job"))

    def _job_finished(self, job_id: str) -> None:
        status = self.monitor.jobs[job_id].status
        self.done_loading(job_id)
        counts = status.counts
        done, total = counts["SUCCEEDED"], len(status.records)
        skipped = counts["SKIPPED"]
        if done + skipped == total:
            text = self.tr("Job {} finished: {} cell(s) succeeded").format(job_id, done)
            if skipped:
                text += self.tr(", {} skipped (AOI too cloudy)").format(skipped)
            self.context.notifier.success(text, self.tr("rsbatch job"))
        else:
            self.context.notifier.warning(
                self.tr("Job {} finished: {} of {} cell(s) succeeded, {} failed, {} cancelled, "
                        "{} skipped")
                .format(job_id, done, total, counts["FAILED"], counts["CANCELLED"], skipped),
                self.tr("rsbatch job"))

    def _load_failed(self, job_id: str, reasons: list) -> None:
        self.context.notifier.warning(self.tr("Some results of job {} could not be added: {}")
                                      .format(job_id, "; ".join(reasons[:3])))

    # --- layers -------------------------------------------------------------------------------
    def _s3_access(self, key: BackendKey) -> S3Access:
        name, options = key
        if name != "aws":
            return S3Access()
        opts = dict(options)
        try:
            stack = read_stack(opts.get("stack") or "rsbatch")
        except Exception:  # the stack file is optional for reading results
            stack = {}
        access = S3Access.from_stack(stack, opts.get("profile"))
        return S3Access(access.profile, opts.get("region") or access.region,
                        access.endpoint_url)

    def load(self, job_id: str | None, records: list | None = None) -> Any:
        """Add a job's finished outputs to the map (all of them, or those of `records`)."""
        job = self.monitor.jobs.get(job_id or "")
        if job is None or job.status is None:
            return None
        settings = self.context.settings()
        request = LoadRequest(
            job_id=job.job_id, outputs=outputs_of(records or job.status.records),
            s3_mode=settings.s3_mode,
            download_folder=settings.download_folder or os.path.join(user_data_dir(),
                                                                     "downloads"),
            rgb_stretch=settings.rgb_stretch, s3=self._s3_access(job.key))
        return self.loader.load(request)
