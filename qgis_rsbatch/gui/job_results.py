"""What the dock does with a job's outcome: message-bar notices (cells failed, with the
reason; the job finished), its finished outputs as layers, added as they arrive, and where
they are (the output folder, the map extent to zoom to).

Listens to the JobMonitor; loading goes through the ResultLoader (a task per batch). Jobs
whose results are being added are remembered in the settings, so a QGIS closed halfway adds
the rest when the job is found again in the history.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlparse

from qgis.core import QgsCoordinateTransform, QgsRectangle
from qgis.PyQt.QtCore import QObject

from ..core.contract import Status
from ..core.tasklog import user_data_dir
from .backends import BackendKey, read_stack
from .context import Context
from .job_history import HISTORY_LIMIT
from .job_model import finished_text
from .job_monitor import JobMonitor
from .layer_tree import JOB_PROPERTY, URI_PROPERTY
from .results import LoadRequest, ResultLoader, has_mosaics, outputs_of
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
        text = finished_text(job_id, status)
        if counts["SUCCEEDED"] + counts["SKIPPED"] == len(status.records):
            self.context.notifier.success(text, self.tr("rsbatch job"))
        else:
            self.context.notifier.warning(text, self.tr("rsbatch job"))

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

    def load(self, job_id: str | None, records: list | None = None, *,
             tiles: bool = False) -> Any:
        """Add a job's finished outputs to the map (all of them, or those of `records`): its
        mosaics and composites, or its cells' when it has no mosaics; with `tiles`, the
        per-tile layers of a job with mosaics. The loading task, or None."""
        job = self.monitor.jobs.get(job_id or "")
        if job is None or job.status is None:
            return None
        settings = self.context.settings()
        outputs = outputs_of(records or job.status.records,
                             mosaics=has_mosaics(job.status.records), tiles=tiles)
        request = LoadRequest(
            job_id=job.job_id, outputs=outputs,
            s3_mode=settings.s3_mode,
            download_folder=settings.download_folder or os.path.join(user_data_dir(),
                                                                     "downloads"),
            rgb_stretch=settings.rgb_stretch, s3=self._s3_access(job.key))
        return self.loader.load(request)

    # --- where the results are ----------------------------------------------------------------
    def _records(self, job_id: str | None) -> tuple:
        job = self.monitor.jobs.get(job_id or "")
        return job.status.records if job is not None and job.status is not None else ()

    def has_tiles_apart(self, job_id: str | None) -> bool:
        """Whether the job has mosaics and finished tiles (which its results leave out)."""
        records = self._records(job_id)
        return has_mosaics(records) and any(
            r.kind == "cell" and r.status is Status.SUCCEEDED for r in records)

    def folder(self, job_id: str | None) -> str | None:
        """The job's local output folder (None on S3, or before any output)."""
        for record in self._records(job_id):
            if record.kind != "cell":
                continue  # a unit's outputs are in the job folder's mosaic/, composite/
            for uri in record.outputs.values():
                parsed = urlparse(uri)
                if parsed.scheme == "file":
                    return os.path.dirname(unquote(parsed.path))
        return None

    def zoom_to(self, job_id: str | None, cell_id: str | None = None) -> bool:
        """Zoom the map to the layers of a job, or of one of its cells or units."""
        canvas = self.context.canvas
        if not job_id or canvas is None:
            return False
        project = self.context.project
        target = canvas.mapSettings().destinationCrs()
        uris = {uri for r in self._records(job_id) if r.cell_id == cell_id
                for uri in r.outputs.values()}
        extent = QgsRectangle()
        for layer in project.mapLayers().values():
            if layer.customProperty(JOB_PROPERTY) != job_id:
                continue
            if cell_id and layer.customProperty(URI_PROPERTY) not in uris:
                continue
            transform = QgsCoordinateTransform(layer.crs(), target, project)
            extent.combineExtentWith(transform.transformBoundingBox(layer.extent()))
        if extent.isNull() or extent.isEmpty():
            return False
        canvas.setExtent(extent.buffered(max(extent.width(), extent.height()) * 0.05))
        canvas.refresh()
        return True
