"""rsbatch:setupworker — make the worker environment local jobs need (and, optionally, boto3
for AWS jobs), the same set-up as the button in rsbatch's settings, for scripts and CI.

pip runs with its own configuration (PIP_INDEX_URL, PIP_FIND_LINKS, PIP_NO_INDEX, pip.conf)
and QGIS's proxy; cancelling kills it and leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
)

from ..core.errors import RsbatchError
from ..core.workerenv import DOWNLOAD_MB, INSTALLED_MB
from .common import RsbatchAlgorithm, fail

PYPI = "https://pypi.org/simple/"


class SetupWorkerAlgorithm(RsbatchAlgorithm):
    FORCE = "FORCE"
    AWS = "AWS"
    PYTHON = "PYTHON"
    RASTERIO = "RASTERIO"
    GDAL = "GDAL"
    AWS_LIBS = "AWS_LIBS"

    def name(self) -> str:
        return "setupworker"

    def displayName(self) -> str:
        return self.tr("Set up the worker environment")

    def group(self) -> str:
        return self.tr("Set-up")

    def groupId(self) -> str:
        return "setup"

    def shortHelpString(self) -> str:
        return self.tr(
            "Makes the private Python environment that local jobs run their workers in "
            "(rasterio with its own GDAL, numpy, numba, zstandard, boto3: about {download} MB "
            "to download, {installed} MB installed) under the QGIS profile folder "
            "(rsbatch/worker-env), with the Python QGIS runs. pip follows PIP_INDEX_URL, "
            "PIP_FIND_LINKS, PIP_NO_INDEX and QGIS's proxy. Optionally also installs boto3 for "
            "AWS jobs (rsbatch/aws-libs), adding only what QGIS lacks. Does nothing when the "
            "environment already works, unless 'Set up again' is ticked."
        ).format(download=DOWNLOAD_MB, installed=INSTALLED_MB)

    def initAlgorithm(self, config: Any = None) -> None:
        self.addParameter(QgsProcessingParameterBoolean(
            self.FORCE, self.tr("Set up again even if it already works"), defaultValue=False))
        self.addParameter(QgsProcessingParameterBoolean(
            self.AWS, self.tr("Also make boto3 available to QGIS (AWS jobs)"),
            defaultValue=False))
        self.addOutput(QgsProcessingOutputString(self.PYTHON, self.tr("Worker Python")))
        self.addOutput(QgsProcessingOutputString(self.RASTERIO, self.tr("rasterio version")))
        self.addOutput(QgsProcessingOutputString(self.GDAL, self.tr("GDAL version")))
        self.addOutput(QgsProcessingOutputString(self.AWS_LIBS, self.tr("boto3 folder")))

    def prepareAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> bool:
        # main thread: QGIS's proxy and the profile folder
        from ..environments import aws_libs_folder, worker_env_folder
        from ..gui.proxy import proxies_for

        self._proxies = proxies_for(PYPI)
        self._folder = worker_env_folder()
        self._aws_folder = aws_libs_folder()
        return True

    def processAlgorithm(self, parameters: dict, context: Any, feedback: Any) -> dict:
        from ..core.workerenv import (
            describe_python,
            env_python,
            setup_worker_env,
            worker_process_env,
        )

        force = self.parameterAsBoolean(parameters, self.FORCE, context)
        python = env_python(self._folder)

        def progress(fraction: float, text: str) -> None:
            feedback.setProgress(100 * fraction)
            feedback.pushInfo(text)

        try:
            versions = None
            if not force:
                try:
                    versions = describe_python(python, worker_process_env())
                    feedback.pushInfo(self.tr("The worker environment already works: {}")
                                      .format(python))
                except RsbatchError:
                    versions = None
            if versions is None:
                feedback.pushInfo(self.tr("Setting up the worker environment in {}")
                                  .format(self._folder))
                versions = setup_worker_env(self._folder, proxies=self._proxies,
                                            progress=progress, cancelled=feedback.isCanceled)
            aws = ""
            if self.parameterAsBoolean(parameters, self.AWS, context):
                from ..core.awslibs import install_aws_libs

                feedback.pushInfo(self.tr("Installing boto3 for QGIS in {}")
                                  .format(self._aws_folder))
                aws = str(install_aws_libs(self._aws_folder, python, proxies=self._proxies,
                                           cancelled=feedback.isCanceled))
        except RsbatchError as exc:
            raise fail(exc) from exc
        if feedback.isCanceled():
            raise QgsProcessingException(self.tr("Cancelled"))
        feedback.pushInfo(self.tr("Worker Python {}: Python {}, rasterio {}, GDAL {}").format(
            python, versions["python"], versions["rasterio"], versions["gdal"]))
        return {self.PYTHON: python, self.RASTERIO: versions["rasterio"],
                self.GDAL: versions["gdal"], self.AWS_LIBS: aws}
