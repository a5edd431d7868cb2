"""rsbatch:runjob — plan, submit and follow an RGB/NDVI job; its outputs become layers.

The algorithm submits the job to a backend (this computer, or a deployed AWS stack) and polls
its task log until every cell has finished, reporting progress, failed cells and honouring
cancel (which cancels the job). Results are loaded by Processing on the main thread after the
algorithm ends (`addLayerToLoadOnCompletion`), each styled and put in the job's layer group
by a post-processor: the same styles and layout as the dock.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputMultipleLayers,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterCrs,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core import catalog
from ..core import products as registry
from ..core.backends import get_backend
from ..core.contract import COMPOSITE_METHODS, Status, cell_id_for
from ..core.errors import RsbatchError
from ..core.estimate import estimate
from ..core.planning import JobRequest, find_scenes, make_job
from ..gui.geometry import mosaic_epsg
from ..gui.job_model import record_title
from ..gui.layer_tree import place_layer
from ..gui.proxy import proxies_for
from ..gui.results import LoadRequest, Output, outputs_of, prepare
from ..gui.sources import S3Access
from ..gui.styles import style_product
from .common import RsbatchAlgorithm, fail

BACKENDS = ("local", "aws")
POLL_SECONDS = 1.0
#: post-processors must outlive the algorithm until Processing has loaded the layers
_POSTPROCESSORS: list[Any] = []


class StyleAndGroup(QgsProcessingLayerPostProcessorInterface):
    """Styles a loaded output and moves it into its job's group (main thread)."""

    def __init__(self, output: Output, limits: Any = None) -> None:
        super().__init__()
        self.output = output
        self.limits = limits

    def postProcessLayer(self, layer: Any, context: Any, feedback: Any) -> None:
        style_product(layer, self.output.product, self.limits)
        project = context.project()
        if project is not None:
            place_layer(project, layer, self.output)
        if self in _POSTPROCESSORS:
            _POSTPROCESSORS.remove(self)


class RunJobAlgorithm(RsbatchAlgorithm):
    PRODUCTS = "PRODUCTS"
    CLOUD_MASK = "CLOUD_MASK"
    MAX_AOI_CLOUD = "MAX_AOI_CLOUD"
    CLIP = "CLIP"
    MOSAIC = "MOSAIC"
    MOSAIC_CRS = "MOSAIC_CRS"
    COMPOSITE = "COMPOSITE"
    COMPOSITE_PERIOD = "COMPOSITE_PERIOD"
    BACKEND = "BACKEND"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    S3_OUTPUT = "S3_OUTPUT"
    STACK = "STACK"
    REGION = "REGION"
    PROFILE = "PROFILE"
    WORKERS = "WORKERS"
    EXCLUDE = "EXCLUDE"
    LOAD = "LOAD"
    JOB_ID = "JOB_ID"
    OUTPUT_LAYERS = "OUTPUT_LAYERS"
    MOSAICS = "MOSAICS"
    COMPOSITES = "COMPOSITES"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def name(self) -> str:
        return "runjob"

    def displayName(self) -> str:
        return self.tr("Run NDVI/RGB job")

    def shortHelpString(self) -> str:
        return self.tr(
            "Makes Sentinel-2 RGB and spectral indices (NDVI, NDWI, NDMI, NBR, EVI, SAVI) as "
            "Cloud-Optimized GeoTIFFs for the area of "
            "interest: one cell per tile and date found in the catalog, run on this computer "
            "(worker processes; the worker Python comes from rsbatch's settings) or on a "
            "deployed AWS stack (profile, region and stack; credentials come from the AWS "
            "profile chain). Per date and product the tiles are merged into one mosaic of the "
            "area (in the UTM zone holding most of it, or the CRS given), and with a composite "
            "method each period (the whole range, 'month' or N days as '16d') is reduced to "
            "its per-pixel median. Waits for the job, reports failed cells and units, and adds "
            "the results (the mosaics and composites, or the tiles without mosaics) as styled, "
            "time-aware layers in a group per job. Cancelling cancels the job.")

    def initAlgorithm(self, config: Any = None) -> None:
        self.add_aoi_parameters()
        self.add_search_parameters()
        self.addParameter(QgsProcessingParameterEnum(
            self.PRODUCTS, self.tr("Products"),
            options=[p.title for p in registry.PRODUCTS.values()], allowMultiple=True,
            defaultValue=[registry.NAMES.index(p) for p in registry.DEFAULT_PRODUCTS]))
        self.addParameter(QgsProcessingParameterBoolean(
            self.CLOUD_MASK, self.tr("Mask clouds in NDVI"), defaultValue=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.CLIP, self.tr("Clip to the area of interest"), defaultValue=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.MAX_AOI_CLOUD, self.tr("Skip a cell when more of the area than this is cloud "
                                        "(%, scene classification; empty: never)"),
            QgsProcessingParameterNumber.Type.Double, optional=True, minValue=0.0,
            maxValue=100.0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.MOSAIC, self.tr("Merge each date's tiles into one mosaic"), defaultValue=True))
        self.addParameter(QgsProcessingParameterCrs(
            self.MOSAIC_CRS, self.tr("Mosaic CRS (empty: the UTM zone holding most of the "
                                     "area)"), optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.COMPOSITE, self.tr("Composite"),
            options=[self.tr("None"), *(self.tr(m.capitalize()) for m in COMPOSITE_METHODS)],
            defaultValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.COMPOSITE_PERIOD, self.tr("Composite period: all, month or N days (e.g. 16d)"),
            defaultValue="all", optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.BACKEND, self.tr("Run on"), options=[self.tr("This computer"),
                                                      self.tr("AWS (deployed stack)")],
            defaultValue=0))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT_FOLDER, self.tr("Output folder (this computer)")))
        advanced = [
            QgsProcessingParameterString(self.S3_OUTPUT, self.tr("S3 output (AWS; empty: the "
                                                                 "stack's bucket)"),
                                         optional=True),
            QgsProcessingParameterString(self.STACK, self.tr("AWS stack"), defaultValue="rsbatch",
                                         optional=True),
            QgsProcessingParameterString(self.REGION, self.tr("AWS region"), optional=True),
            QgsProcessingParameterString(self.PROFILE, self.tr("AWS profile name"),
                                         optional=True),
            QgsProcessingParameterNumber(self.WORKERS, self.tr("Parallel cells (0: one per "
                                                               "core)"),
                                         QgsProcessingParameterNumber.Type.Integer,
                                         defaultValue=0, minValue=0),
            QgsProcessingParameterString(self.EXCLUDE, self.tr("Leave out (cell ids tile_date "
                                                               "or scene ids, comma-separated)"),
                                         optional=True),
            QgsProcessingParameterBoolean(self.LOAD, self.tr("Add the results to the map"),
                                          defaultValue=True),
        ]
        for parameter in advanced:
            parameter.setFlags(parameter.flags()
                               | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
            self.addParameter(parameter)
        self.addOutput(QgsProcessingOutputString(self.JOB_ID, self.tr("Job id")))
        self.addOutput(QgsProcessingOutputMultipleLayers(self.OUTPUT_LAYERS,
                                                         self.tr("Result layers")))
        self.addOutput(QgsProcessingOutputMultipleLayers(self.MOSAICS,
                                                         self.tr("Per-date mosaics")))
        self.addOutput(QgsProcessingOutputMultipleLayers(self.COMPOSITES,
                                                         self.tr("Period composites")))
        self.addOutput(QgsProcessingOutputNumber(self.SUCCEEDED, self.tr("Cells succeeded")))
        self.addOutput(QgsProcessingOutputNumber(self.FAILED, self.tr("Cells failed")))

    def prepareAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> bool:
        # main thread: QGIS's proxy and rsbatch's settings (processAlgorithm may run elsewhere)
        from ..environments import worker_python
        from ..settings import Settings

        settings = Settings()
        self._proxies = proxies_for(parameters.get(self.CATALOG) or catalog.EARTH_SEARCH_V1)
        self._worker_python = worker_python(settings) or None
        self._task_log = settings.task_log or None
        self._rgb_stretch = settings.rgb_stretch
        self._s3_mode = settings.s3_mode
        self._download_folder = settings.download_folder
        self._spot_price = settings.spot_price
        return True

    # --- the run -----------------------------------------------------------------------------
    def _backend(self, parameters: dict, context: Any) -> tuple[Any, str, S3Access]:
        kind = BACKENDS[self.parameterAsEnum(parameters, self.BACKEND, context)]
        if kind == "local":
            workers = self.parameterAsInt(parameters, self.WORKERS, context) or None
            backend = get_backend("local", task_log_path=self._task_log, workers=workers,
                                  worker_python=self._worker_python)
            output = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
            return backend, output, S3Access()
        stack = self.parameterAsString(parameters, self.STACK, context).strip() or "rsbatch"
        region = self.parameterAsString(parameters, self.REGION, context).strip() or None
        profile = self.parameterAsString(parameters, self.PROFILE, context).strip() or None
        from ..core.awslibs import activate
        from ..environments import aws_libs_folder

        activate(aws_libs_folder())  # boto3 from rsbatch's set-up, when QGIS has none
        backend = get_backend("aws", stack=stack, region=region, profile=profile)
        output = self.parameterAsString(parameters, self.S3_OUTPUT, context).strip()
        if not output:
            output = backend.default_output()
        access = S3Access(profile=profile or getattr(backend, "profile", None),
                          region=region or getattr(backend, "region", None),
                          endpoint_url=getattr(backend, "endpoint_url", None))
        return backend, output, access

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:
        aoi = self.aoi(parameters, context)
        options = self.search_options(parameters, context)
        chosen = self.parameterAsEnums(parameters, self.PRODUCTS, context)
        products = tuple(registry.NAMES[i] for i in sorted(chosen)) or registry.DEFAULT_PRODUCTS
        exclude = {x.strip() for x in self.parameterAsString(parameters, self.EXCLUDE,
                                                             context).split(",") if x.strip()}
        try:
            backend, output, access = self._backend(parameters, context)
            request = JobRequest(
                aoi=aoi, output=output, products=products,
                cloud_mask=self.parameterAsBoolean(parameters, self.CLOUD_MASK, context),
                clip=self.parameterAsBoolean(parameters, self.CLIP, context),
                max_aoi_cloud=self._max_aoi_cloud(parameters, context),
                **self._reduce_options(parameters, context), **options)
            feedback.pushInfo(self.tr("Searching scenes…"))
            plan = find_scenes(request, proxies=getattr(self, "_proxies", None))
            scenes = [s for s in plan.scenes if cell_id_for(s.tile, s.date) not in exclude
                      and s.item_id not in exclude]
            job = make_job(request, scenes)
            guess = estimate(job, backend=backend.name, workers=getattr(backend, "workers", None),
                             spot_price=getattr(self, "_spot_price", 0.02))
            feedback.pushInfo(self.tr("Job {}: {}").format(job.job_id, guess.summary()))
            status = backend.submit(job)
        except RsbatchError as exc:
            raise fail(exc) from exc
        status = self._follow(backend, job.job_id, status, feedback)
        return self._results(job.job_id, status, output, access, parameters, context, feedback)

    def _reduce_options(self, parameters: dict, context: Any) -> dict[str, Any]:
        """Mosaic, its CRS, composite and period as JobRequest fields (InvalidInput if bad)."""
        method = self.parameterAsEnum(parameters, self.COMPOSITE, context)
        period = self.parameterAsString(parameters, self.COMPOSITE_PERIOD, context).strip()
        return {"mosaic": self.parameterAsBoolean(parameters, self.MOSAIC, context),
                "mosaic_crs": mosaic_epsg(self.parameterAsCrs(parameters, self.MOSAIC_CRS,
                                                              context)),
                "composite": COMPOSITE_METHODS[method - 1] if method else None,
                "composite_period": period or "all"}

    def _max_aoi_cloud(self, parameters: dict, context: Any) -> float | None:
        value = parameters.get(self.MAX_AOI_CLOUD)
        if value is None or value == "":
            return None
        return self.parameterAsDouble(parameters, self.MAX_AOI_CLOUD, context)

    def _follow(self, backend: Any, job_id: str, status: Any, feedback: Any) -> Any:
        reported: set[str] = set()
        while True:
            for record in status.records:
                if record.status is Status.FAILED and record.cell_id not in reported:
                    reported.add(record.cell_id)
                    feedback.reportError(self.tr("{} failed: {}").format(
                        record_title(record), record.error or "?"), False)
            feedback.setProgress(100 * status.progress)
            if status.finished:
                return status
            if feedback.isCanceled():
                feedback.pushInfo(self.tr("Cancelling job {}…").format(job_id))
                backend.cancel(job_id)
                raise QgsProcessingException(self.tr("Job {} was cancelled").format(job_id))
            time.sleep(POLL_SECONDS)
            try:
                status = backend.status(job_id)
            except RsbatchError as exc:
                raise fail(exc) from exc

    def _results(self, job_id: str, status: Any, output: str, access: S3Access,
                 parameters: dict, context: Any, feedback: Any) -> dict:
        outputs = outputs_of(status.records)
        if not outputs:
            first = next((r.error for r in status.records if r.error), "")
            raise QgsProcessingException(self.tr("No cell of job {} succeeded: {}")
                                         .format(job_id, first))
        prepared = prepare(LoadRequest(job_id, outputs, s3_mode=self._s3_mode,
                                       download_folder=self._download_folder,
                                       rgb_stretch=self._rgb_stretch, s3=access))
        sources: dict[str, list[str]] = {"cell": [], "mosaic": [], "composite": []}
        load = self.parameterAsBoolean(parameters, self.LOAD, context)
        for item in prepared:
            if item.error:
                feedback.reportError(item.error, False)
                continue
            sources[item.output.kind].append(item.source)
            if load and context.project() is not None:
                details = QgsProcessingContext.LayerDetails(item.output.name, context.project(),
                                                            self.OUTPUT_LAYERS)
                processor = StyleAndGroup(item.output, item.limits)
                _POSTPROCESSORS.append(processor)
                details.setPostProcessor(processor)
                context.addLayerToLoadOnCompletion(item.source, details)
        for record in status.records:
            if record.status is Status.SKIPPED:
                feedback.pushInfo(self.tr("{} skipped: {}").format(record_title(record),
                                                                   record.error))
        counts = {kind: Counter(r.status.value for r in status.records
                                if (r.kind == "cell") == (kind == "cell"))
                  for kind in ("cell", "unit")}
        cells, units = counts["cell"], counts["unit"]
        feedback.pushInfo(self.tr("Job {}: {} cell(s) succeeded, {} skipped, {} failed, "
                                  "{} cancelled").format(job_id, cells["SUCCEEDED"],
                                                         cells["SKIPPED"], cells["FAILED"],
                                                         cells["CANCELLED"]))
        if sum(units.values()):
            feedback.pushInfo(self.tr("Job {}: {} mosaic/composite unit(s) made, {} skipped, "
                                      "{} failed").format(job_id, units["SUCCEEDED"],
                                                          units["SKIPPED"], units["FAILED"]))
        return {self.JOB_ID: job_id, self.OUTPUT_FOLDER: output,
                self.OUTPUT_LAYERS: [src for kind in sources.values() for src in kind],
                self.MOSAICS: sources["mosaic"], self.COMPOSITES: sources["composite"],
                self.SUCCEEDED: cells["SUCCEEDED"], self.FAILED: cells["FAILED"]}
