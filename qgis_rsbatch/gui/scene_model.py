"""The scenes a search found, one row each (tile, date, cloud %), with a checkbox to leave a
scene out of the job. Sorting is the view's (a QSortFilterProxyModel); this model only holds
the scenes and which are ticked."""

from __future__ import annotations

from typing import Any

from qgis.PyQt.QtCore import QAbstractTableModel, QCoreApplication, QModelIndex, Qt, pyqtSignal
from qgis.PyQt.QtGui import QBrush, QColor

from ..core.catalog import Scene
from .compat import user_role

SORT_ROLE = user_role(10)


def tr(text: str) -> str:
    return QCoreApplication.translate("rsbatch", text)


def _headers() -> tuple[str, ...]:
    return (tr("Tile"), tr("Date"), tr("Cloud %"), tr("Scene"))


def _value(scene: Scene, column: int, *, sort: bool) -> Any:
    cloud = scene.cloud_cover
    if column == 2:
        if sort:
            return -1.0 if cloud is None else float(cloud)
        return "?" if cloud is None else f"{cloud:.0f}"
    return (scene.tile, scene.date, None, scene.item_id)[column]


def _tooltip(scene: Scene) -> str:
    lines = [scene.item_id, scene.datetime]
    if scene.collection:
        lines.append(tr("collection {}").format(scene.collection))
    if scene.processing_baseline:
        lines.append(tr("processing baseline {}").format(scene.processing_baseline))
    lines += list(scene.corrections)
    return "\n".join(lines)


class SceneModel(QAbstractTableModel):
    """Checkable scenes; `selected()` are those to make cells of."""

    #: the set of ticked scenes changed
    selectionChanged = pyqtSignal()

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._scenes: list[Scene] = []
        self._checked: list[bool] = []

    # --- content -------------------------------------------------------------------------
    def set_scenes(self, scenes: list[Scene]) -> None:
        self.beginResetModel()
        self._scenes = list(scenes)
        self._checked = [True] * len(self._scenes)
        self.endResetModel()
        self.selectionChanged.emit()

    def scenes(self) -> list[Scene]:
        return list(self._scenes)

    def selected(self) -> list[Scene]:
        return [s for s, on in zip(self._scenes, self._checked) if on]

    def set_checked(self, row: int, checked: bool) -> None:
        if 0 <= row < len(self._checked) and self._checked[row] != checked:
            self._checked[row] = checked
            index = self.index(row, 0)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.CheckStateRole])
            self.selectionChanged.emit()

    def set_all(self, checked: bool) -> None:
        if not self._checked:
            return
        self._checked = [checked] * len(self._checked)
        self.dataChanged.emit(self.index(0, 0), self.index(len(self._checked) - 1, 0),
                              [Qt.ItemDataRole.CheckStateRole])
        self.selectionChanged.emit()

    # --- Qt model ------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._scenes)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(_headers())

    def headerData(self, section: int, orientation: Any,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return _headers()[section]
        return None

    def flags(self, index: QModelIndex) -> Any:
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.column() == 0:
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        scene, row, column = self._scenes[index.row()], index.row(), index.column()
        value = None
        if role == Qt.ItemDataRole.CheckStateRole and column == 0:
            value = Qt.CheckState.Checked if self._checked[row] else Qt.CheckState.Unchecked
        elif role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
            value = _value(scene, column, sort=role == SORT_ROLE)
        elif role == Qt.ItemDataRole.TextAlignmentRole and column == 2:
            value = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        elif role == Qt.ItemDataRole.ForegroundRole and column == 2 and \
                scene.cloud_cover is not None and scene.cloud_cover > 50:
            value = QBrush(QColor("#a6611a"))
        elif role == Qt.ItemDataRole.ToolTipRole:
            value = _tooltip(scene)
        return value

    def setData(self, index: QModelIndex, value: Any,
                role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role == Qt.ItemDataRole.CheckStateRole and index.column() == 0:
            checked = value in (Qt.CheckState.Checked, 2, True) or \
                getattr(value, "value", None) == 2
            self.set_checked(index.row(), bool(checked))
            return True
        return False
