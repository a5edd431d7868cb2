"""The Processing provider "rsbatch" (toolbox, graphical modeler, batch mode, qgis_process)."""

from __future__ import annotations

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .resolve_tiles import ResolveTilesAlgorithm
from .run_job import RunJobAlgorithm
from .search_scenes import SearchScenesAlgorithm
from .setup_worker import SetupWorkerAlgorithm

ICON = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "icons",
                    "rsbatch.svg")


class RsbatchProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "rsbatch"

    def name(self) -> str:
        return "rsbatch"

    def longName(self) -> str:
        return self.tr("rsbatch: Sentinel-2 RGB and NDVI")

    def icon(self) -> QIcon:
        return QIcon(ICON)

    def svgIconPath(self) -> str:
        return ICON

    def loadAlgorithms(self) -> None:
        for algorithm in (ResolveTilesAlgorithm(), SearchScenesAlgorithm(), RunJobAlgorithm(),
                          SetupWorkerAlgorithm()):
            self.addAlgorithm(algorithm)
