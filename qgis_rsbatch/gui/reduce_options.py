"""The run step's "what of the cells": per-date mosaics and period composites (issue 16).

Mosaics (default on) merge each date's tiles into one raster per product on one grid: the
UTM zone holding most of the area unless the analyst picks a CRS. A median composite reduces
each period (the whole range, calendar months or N days) to one cloud-free raster per
product. The widgets give the planner's options (`core.planning.JobRequest`'s mosaic,
mosaic_crs, composite, composite_period) and persist them in the settings on submit.
"""

from __future__ import annotations

from typing import Any

from qgis.core import QgsCoordinateReferenceSystem
from qgis.gui import QgsProjectionSelectionWidget
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QSpinBox,
    QWidget,
)

from ..core.contract import COMPOSITE_METHODS
from ..core.errors import InvalidInput
from ..core.reduce_plan import parse_period
from .context import Context
from .geometry import mosaic_epsg

NO_COMPOSITE = "none"
DEFAULT_DAYS = 16  # Landsat's and MODIS' classic compositing window


class ReduceOptions(QWidget):
    """Mosaic on/off and its CRS; composite none/median and its period."""

    #: an option changed (the job must be planned again)
    changed = pyqtSignal()

    def __init__(self, context: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self._build()
        self._restore()
        self._sync()

    def _build(self) -> None:
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.mosaic_check = QCheckBox(self.tr("One layer per date: the tiles merged"), self)
        self.mosaic_check.setToolTip(self.tr(
            "Per date and product, one raster of the whole area on one 10 m grid: where "
            "tiles overlap, the tile whose centre is nearest wins. Off: one layer per tile "
            "and date."))
        form.addRow(self.tr("Mosaic"), self.mosaic_check)
        self.crs_widget = QgsProjectionSelectionWidget(self)
        self.crs_widget.setOptionVisible(QgsProjectionSelectionWidget.CrsOption.CrsNotSet, True)
        self.crs_widget.setNotSetText(self.tr("Automatic: the UTM zone of most of the area"))
        self.crs_widget.setToolTip(self.tr(
            "The mosaics' (and composites') CRS, projected in metres; tiles of other zones "
            "are warped with nearest neighbour, so values stay exact"))
        # the combo would be as wide as its longest entry and widen the whole dock with it
        for combo in self.crs_widget.findChildren(QComboBox):
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(18)
        form.addRow(self.tr("Mosaic CRS"), self.crs_widget)

        row = QHBoxLayout()
        self.composite_combo = QComboBox(self)
        self.composite_combo.addItem(self.tr("None"), NO_COMPOSITE)
        for method in COMPOSITE_METHODS:
            self.composite_combo.addItem(self.tr(method.capitalize()), method)
        self.composite_combo.setToolTip(self.tr(
            "Per period and product, the per-pixel median of the cloud-free observations, "
            "with a band counting them"))
        self.period_combo = QComboBox(self)
        self.period_combo.addItem(self.tr("whole date range"), "all")
        self.period_combo.addItem(self.tr("per calendar month"), "month")
        self.period_combo.addItem(self.tr("every N days"), "days")
        self.days_spin = QSpinBox(self)
        self.days_spin.setRange(1, 3660)
        self.days_spin.setSuffix(self.tr(" days"))
        self.days_spin.setValue(DEFAULT_DAYS)
        row.addWidget(self.composite_combo)
        row.addWidget(self.period_combo, 1)
        row.addWidget(self.days_spin)
        form.addRow(self.tr("Composite"), row)

        self.mosaic_check.toggled.connect(self._edited)
        self.crs_widget.crsChanged.connect(self._edited)
        self.composite_combo.currentIndexChanged.connect(self._edited)
        self.period_combo.currentIndexChanged.connect(self._edited)
        self.days_spin.valueChanged.connect(self._edited)

    def _restore(self) -> None:
        settings = self.context.settings()
        self.mosaic_check.setChecked(settings.mosaic)
        self.set_crs(settings.mosaic_crs)
        self.set_composite(settings.composite, settings.composite_period)

    def _edited(self, *_args: Any) -> None:
        self._sync()
        self.changed.emit()

    def _sync(self) -> None:
        composite = self.composite_combo.currentData() != NO_COMPOSITE
        self.period_combo.setEnabled(composite)
        self.days_spin.setVisible(composite and self.period_combo.currentData() == "days")

    # --- values ---------------------------------------------------------------------------------
    def set_crs(self, authid: str) -> None:
        """'' for automatic, else an EPSG code ('EPSG:32633')."""
        crs = QgsCoordinateReferenceSystem(authid) if authid else QgsCoordinateReferenceSystem()
        self.crs_widget.setCrs(crs)

    def set_composite(self, method: str | None, period: str = "all") -> None:
        index = self.composite_combo.findData(method or NO_COMPOSITE)
        self.composite_combo.setCurrentIndex(max(0, index))
        try:
            period = parse_period(period)
        except InvalidInput:
            period = "all"
        if period.endswith("d") and period != "all":
            self.days_spin.setValue(int(period[:-1]))
            period = "days"
        self.period_combo.setCurrentIndex(max(0, self.period_combo.findData(period)))

    def period(self) -> str:
        """'all', 'month' or 'Nd' (core.reduce_plan's spelling)."""
        chosen = self.period_combo.currentData()
        return f"{self.days_spin.value()}d" if chosen == "days" else str(chosen)

    def crs_authid(self) -> str:
        crs = self.crs_widget.crs()
        return crs.authid() if crs.isValid() else ""

    def state(self) -> tuple:
        """What the options are, checked or not (a plan is stale when this changes)."""
        return (self.mosaic_check.isChecked(), self.crs_authid(),
                self.composite_combo.currentData(), self.period())

    def options(self) -> dict[str, Any]:
        """The planner's options (JobRequest fields); InvalidInput for an unusable CRS."""
        method = self.composite_combo.currentData()
        return {"mosaic": self.mosaic_check.isChecked(),
                "mosaic_crs": mosaic_epsg(self.crs_widget.crs()),
                "composite": None if method == NO_COMPOSITE else method,
                "composite_period": self.period()}

    def save(self) -> None:
        settings = self.context.settings()
        settings.mosaic = self.mosaic_check.isChecked()
        settings.mosaic_crs = self.crs_authid()
        settings.composite = self.composite_combo.currentData()
        settings.composite_period = self.period()


def units_summary(job: Any) -> str:
    """'4 mosaic(s) in EPSG:32632, 2 median composite(s)': a job's reduce units in words."""
    mosaics = [u for u in job.units if u.kind == "mosaic"]
    composites = [u for u in job.units if u.kind == "composite"]
    parts = []
    if mosaics:
        parts.append(f"{len(mosaics)} mosaic(s)")
    if composites:
        parts.append(f"{len(composites)} {composites[0].method} composite(s)")
    if not parts:
        return ""
    return ", ".join(parts) + f" in EPSG:{job.units[0].grid.epsg}"
