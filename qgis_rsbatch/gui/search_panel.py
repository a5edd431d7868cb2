"""The dock's second step: dates, cloud limit, products and catalog → a scene search in a
task → the scenes listed with checkboxes.

The search is core.catalog.search on the AOI's tiles, through QGIS's proxy settings. Its
warnings (items without a band, replaced processing runs, catalog fallbacks) go to the log
and are counted under the list.
"""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QDate, QSortFilterProxyModel, Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core import catalog
from ..core import products as registry
from ..core.catalog import Scene
from ..tasks import FunctionTask
from .context import Context
from .messages import log
from .proxy import proxies_for
from .scene_model import SORT_ROLE, SceneModel
from .scene_preview import ScenePreview

DATE_FORMAT = "yyyy-MM-dd"


class SearchPanel(QWidget):
    """Search parameters, the search task, and the scene list."""

    #: the scenes or their ticks changed (the run step re-estimates)
    scenesChanged = pyqtSignal()

    def __init__(self, context: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.aoi: dict | None = None
        self.tiles: list[Any] = []
        self.warnings: list[str] = []
        self._task: Any = None
        self._build()
        self._restore()
        self._refresh_button()

    # --- widgets ---------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._form())
        self._results(layout)
        self.search_button.clicked.connect(self.search)
        self.browse_button.clicked.connect(self._browse)
        self.all_button.clicked.connect(lambda: self.model.set_all(True))
        self.none_button.clicked.connect(lambda: self.model.set_all(False))
        self.model.selectionChanged.connect(self._selection_changed)
        for box in self.product_checks.values():
            box.toggled.connect(self._refresh_button)
            box.toggled.connect(lambda _on: self.scenesChanged.emit())
        for box in (self.mask_check, self.clip_check):
            box.toggled.connect(lambda _on: self.scenesChanged.emit())
        self.aoi_cloud_spin.valueChanged.connect(lambda _value: self.scenesChanged.emit())
        # scenes found with other dates, cloud limit or catalog no longer apply
        self.start_edit.dateChanged.connect(self._stale)
        self.end_edit.dateChanged.connect(self._stale)
        self.cloud_spin.valueChanged.connect(self._stale)
        self.catalog_combo.currentTextChanged.connect(self._stale)

    def _stale(self, *_args: Any) -> None:
        if self.model.scenes():
            self.model.set_scenes([])
            self.status_label.setText(self.tr("Search again: the dates, cloud limit or "
                                              "catalog changed."))

    def _form(self) -> QFormLayout:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        dates = QHBoxLayout()
        self.start_edit = QDateEdit(self)
        self.end_edit = QDateEdit(self)
        for edit in (self.start_edit, self.end_edit):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat(DATE_FORMAT)
            edit.setMinimumDate(QDate(2015, 6, 23))  # Sentinel-2A's first acquisitions
        dates.addWidget(self.start_edit, 1)
        dates.addWidget(QLabel("–", self))
        dates.addWidget(self.end_edit, 1)
        form.addRow(self.tr("Dates"), dates)

        self.cloud_spin = QSpinBox(self)
        self.cloud_spin.setRange(0, 100)
        self.cloud_spin.setSuffix(" %")
        self.cloud_spin.setToolTip(self.tr("Leave out scenes whose eo:cloud_cover is above this"))
        form.addRow(self.tr("Cloud cover at most"), self.cloud_spin)

        # the AOI's own cloud share, measured by the worker from SCL (the cell is SKIPPED
        # above it); -1 shows as "no limit"
        self.aoi_cloud_spin = QSpinBox(self)
        self.aoi_cloud_spin.setRange(-1, 100)
        self.aoi_cloud_spin.setSuffix(" %")
        self.aoi_cloud_spin.setSpecialValueText(self.tr("no limit"))
        self.aoi_cloud_spin.setToolTip(self.tr(
            "Skip a tile-date (no output, shown as skipped) when more of the area of interest "
            "than this is cloud, shadow or no data in its scene classification"))
        form.addRow(self.tr("Area cloud at most"), self.aoi_cloud_spin)

        # one checkbox per product of the registry, four to a row
        products = QGridLayout()
        self.product_checks: dict[str, QCheckBox] = {}
        for index, spec in enumerate(registry.PRODUCTS.values()):
            box = QCheckBox(spec.title, self)
            box.setToolTip(spec.description)
            self.product_checks[spec.name] = box
            products.addWidget(box, index // 4, index % 4)
        self.mask_check = QCheckBox(self.tr("Mask clouds"), self)
        self.mask_check.setToolTip(self.tr("The indices are no data where the scene "
                                           "classification says cloud, cirrus, shadow or "
                                           "saturated"))
        self.clip_check = QCheckBox(self.tr("Clip to area"), self)
        self.clip_check.setToolTip(self.tr("Write only the area's bounding window of each "
                                           "tile (else whole tiles)"))
        form.addRow(self.tr("Products"), products)
        options = QHBoxLayout()
        for box in (self.mask_check, self.clip_check):
            options.addWidget(box)
        options.addStretch(1)
        form.addRow(self.tr("Options"), options)

        source = QHBoxLayout()
        self.catalog_combo = QComboBox(self)
        self.catalog_combo.setEditable(True)
        self.catalog_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.catalog_combo.setToolTip(self.tr("A STAC API URL, a static catalog.json or an "
                                              "ItemCollection file"))
        self.browse_button = QToolButton(self)
        self.browse_button.setText("…")
        self.browse_button.setToolTip(self.tr("Choose a local STAC catalog file"))
        source.addWidget(self.catalog_combo, 1)
        source.addWidget(self.browse_button)
        form.addRow(self.tr("Catalog"), source)
        return form

    def _results(self, layout: QVBoxLayout) -> None:
        row = QHBoxLayout()
        self.search_button = QPushButton(QgsApplication.getThemeIcon("/search.svg"),
                                         self.tr("Search scenes"), self)
        self.status_label = QLabel(self)
        self.status_label.setWordWrap(True)
        row.addWidget(self.search_button)
        row.addWidget(self.status_label, 1)
        layout.addLayout(row)

        self.model = SceneModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = QTableView(self)
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(1, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setMinimumHeight(120)
        layout.addWidget(self.table, 1)
        # the selected rows' footprints on the map, the first one's thumbnail here
        self.preview = ScenePreview(self.context, self)
        self.thumbnail_label = QLabel(self)
        self.thumbnail_label.setVisible(False)
        self.thumbnail_label.setToolTip(self.tr("The selected scene's thumbnail"))
        layout.addWidget(self.thumbnail_label)
        self.preview.thumbnailReady.connect(self._show_thumbnail)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._preview())
        self.model.modelReset.connect(self._preview)  # a new search: nothing selected

        ticks = QHBoxLayout()
        self.all_button = QPushButton(self.tr("Tick all"), self)
        self.none_button = QPushButton(self.tr("Untick all"), self)
        self.count_label = QLabel(self)
        ticks.addWidget(self.all_button)
        ticks.addWidget(self.none_button)
        ticks.addWidget(self.count_label, 1)
        layout.addLayout(ticks)

    def _restore(self) -> None:
        settings = self.context.settings()
        today = QDate.currentDate()
        self.end_edit.setDate(today)
        self.start_edit.setDate(today.addDays(-max(1, settings.days_back)))
        self.cloud_spin.setValue(round(settings.max_cloud))
        limit = settings.max_aoi_cloud
        self.aoi_cloud_spin.setValue(-1 if limit < 0 else round(limit))
        chosen = settings.products
        for name, box in self.product_checks.items():
            box.setChecked(name in chosen)
        self.mask_check.setChecked(settings.cloud_mask)
        self.clip_check.setChecked(settings.clip)
        self.catalog_combo.addItem(self.tr("Earth Search v1 (default)"), "")
        for location in settings.recent_catalogs:
            self.catalog_combo.addItem(location, location)
        if settings.catalog:
            self.set_catalog(settings.catalog)

    # --- parameters --------------------------------------------------------------------------
    def set_catalog(self, location: str) -> None:
        index = self.catalog_combo.findData(location)
        if index >= 0:
            self.catalog_combo.setCurrentIndex(index)
        else:
            self.catalog_combo.setEditText(location)

    def catalog_location(self) -> str | None:
        text = self.catalog_combo.currentText().strip()
        if not text or text == self.catalog_combo.itemText(0):
            return None
        return text

    def set_dates(self, start: str, end: str) -> None:
        self.start_edit.setDate(QDate.fromString(start, DATE_FORMAT))
        self.end_edit.setDate(QDate.fromString(end, DATE_FORMAT))

    def dates(self) -> tuple[str, str]:
        return (self.start_edit.date().toString(DATE_FORMAT),
                self.end_edit.date().toString(DATE_FORMAT))

    def products(self) -> tuple[str, ...]:
        return tuple(name for name, box in self.product_checks.items() if box.isChecked())

    def request_options(self) -> dict[str, Any]:
        """The search's half of a core JobRequest (the run step adds the output)."""
        start, end = self.dates()
        return {"aoi": self.aoi, "start": start, "end": end, "products": self.products(),
                "max_cloud": float(self.cloud_spin.value()), "catalog": self.catalog_location(),
                "cloud_mask": self.mask_check.isChecked(), "clip": self.clip_check.isChecked(),
                "max_aoi_cloud": self.max_aoi_cloud()}

    def max_aoi_cloud(self) -> float | None:
        """The AOI cloud limit in %, None for no limit."""
        value = self.aoi_cloud_spin.value()
        return None if value < 0 else float(value)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, self.tr("STAC catalog or ItemCollection"), "",
            self.tr("STAC JSON (*.json *.geojson);;All files (*)"))
        if path:
            self.set_catalog(path)

    def _save(self) -> None:
        settings = self.context.settings()
        settings.max_cloud = float(self.cloud_spin.value())
        settings.max_aoi_cloud = float(self.aoi_cloud_spin.value())
        settings.products = list(self.products())
        settings.cloud_mask = self.mask_check.isChecked()
        settings.clip = self.clip_check.isChecked()
        location = self.catalog_location() or ""
        settings.catalog = location
        settings.add_recent_catalog(location)

    # --- flow ------------------------------------------------------------------------------
    def set_tiles(self, aoi: dict | None, tiles: list[Any]) -> None:
        """A new AOI (or none): the old scenes no longer apply."""
        self.aoi = aoi
        self.tiles = list(tiles)
        if self._task is not None:
            self._task.detach()
            self._task.cancel()
            self._task = None
        self.model.set_scenes([])
        self.status_label.setText("")
        self._refresh_button()

    def _refresh_button(self) -> None:
        ready = bool(self.tiles) and bool(self.products()) and self._task is None
        self.search_button.setEnabled(ready)
        if not self.tiles:
            self.search_button.setToolTip(self.tr("Choose an area of interest first"))
        elif not self.products():
            self.search_button.setToolTip(self.tr("Tick at least one product"))
        else:
            self.search_button.setToolTip(self.tr("Search the catalog for scenes of these "
                                                  "tiles"))

    def search(self) -> Any:
        """Start the catalog search; returns its task (or None when not ready)."""
        if not self.tiles or self._task is not None:
            return None
        options = self.request_options()
        tile_ids = [t.tile for t in self.tiles]
        location = options["catalog"]
        proxies = proxies_for(location or catalog.EARTH_SEARCH_V1)
        self._save()
        self.model.set_scenes([])
        self.status_label.setText(self.tr("Searching…"))

        def run(task: Any) -> Any:
            return catalog.search(tile_ids, options["start"], options["end"],
                                  max_cloud=options["max_cloud"], catalog=location,
                                  aoi=dict(options["aoi"]), proxies=proxies)

        self._task = FunctionTask(self.tr("rsbatch: searching scenes"), run,
                                  on_success=self._found, on_error=self._failed,
                                  on_cancel=self._cancelled)
        self._refresh_button()
        return self.context.tasks.start(self._task)

    def _found(self, scenes: Any) -> None:
        self._task = None
        self.warnings = list(getattr(scenes, "warnings", []))
        for warning in self.warnings:
            log(warning)
        self.model.set_scenes(list(scenes))
        if not scenes:
            start, end = self.dates()
            self.status_label.setText(self.tr("No scene between {} and {} with at most {} % "
                                              "cloud.").format(start, end,
                                                               self.cloud_spin.value()))
        else:
            text = self.tr("{} scene(s) found").format(len(scenes))
            if self.warnings:
                text += self.tr(" ({} note(s) in the log)").format(len(self.warnings))
            self.status_label.setText(text)
        self._refresh_button()

    def _failed(self, error: BaseException) -> None:
        self._task = None
        self.status_label.setText(self.tr("Search failed."))
        self.context.notifier.error(error, self.tr("Scene search"))
        self._refresh_button()

    def _cancelled(self) -> None:
        self._task = None
        self.status_label.setText(self.tr("Search cancelled."))
        self._refresh_button()

    def _selection_changed(self) -> None:
        total, chosen = len(self.model.scenes()), len(self.model.selected())
        self.count_label.setText(self.tr("{} of {} scene(s) ticked").format(chosen, total)
                                 if total else "")
        self.scenesChanged.emit()

    def selected_scenes(self) -> list[Any]:
        return self.model.selected()

    def selected_rows(self) -> list[Scene]:
        """The scenes of the rows selected in the list (not the ticked ones)."""
        scenes = self.model.scenes()
        rows = sorted({self.proxy.mapToSource(index).row()
                       for index in self.table.selectionModel().selectedRows()})
        return [scenes[row] for row in rows if row < len(scenes)]

    def _preview(self) -> None:
        selected = self.selected_rows()
        if selected:
            self.preview.show(selected)
        else:
            self.preview.clear()
            self.thumbnail_label.setVisible(False)

    def _show_thumbnail(self, pixmap: Any) -> None:
        self.thumbnail_label.setVisible(not pixmap.isNull())
        if not pixmap.isNull():
            self.thumbnail_label.setPixmap(pixmap.scaledToHeight(
                min(pixmap.height(), 128), Qt.TransformationMode.SmoothTransformation))

    def cleanup(self) -> None:
        self.preview.cleanup()
        if self._task is not None:
            self._task.detach()
            self._task = None
