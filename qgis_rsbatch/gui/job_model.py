"""The dock's job list: one row per job (progress bar, counts, backend) with a child row per
cell and per mosaic or composite unit (status, attempts, and the reason when it failed).

A QStandardItemModel refreshed in place from core `JobStatus` objects: rows are found by id
and updated, never rebuilt, so selection and expansion survive every poll.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, QModelIndex, QSize, Qt
from qgis.PyQt.QtGui import QBrush, QColor, QStandardItem, QStandardItemModel
from qgis.PyQt.QtWidgets import (
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
)

from ..core import products
from ..core.contract import Status
from ..core.tasklog.schema import KINDS, listing_order
from .compat import user_role
from .layer_tree import product_title

JOB_ID_ROLE = user_role(1)
CELL_ID_ROLE = user_role(2)
PROGRESS_ROLE = user_role(3)
STATUS_ICONS = {
    Status.PENDING: "/mTaskQueued.svg", Status.RUNNING: "/mTaskRunning.svg",
    Status.SUCCEEDED: "/mTaskComplete.svg", Status.FAILED: "/mTaskTerminated.svg",
    Status.CANCELLED: "/mTaskCancel.svg", Status.SKIPPED: "/mActionFilter2.svg",
}
STATUS_COLORS = {
    Status.PENDING: "#7f7f7f", Status.RUNNING: "#1f78b4", Status.SUCCEEDED: "#238b45",
    Status.FAILED: "#d7301f", Status.CANCELLED: "#a6611a", Status.SKIPPED: "#756bb1",
}


def tr(text: str) -> str:
    return QCoreApplication.translate("rsbatch", text)


def counted(numbers: Mapping[str, Any]) -> str:
    """'4 cell(s), 4 mosaic(s) and 2 composite(s)': a number (or '3/4') per kind given."""
    nouns = {"cell": tr("cell(s)"), "mosaic": tr("mosaic(s)"), "composite": tr("composite(s)")}
    parts = [f"{numbers[kind]} {nouns[kind]}" for kind in KINDS if kind in numbers]
    if len(parts) < 2:
        return "".join(parts)
    return tr("{} and {}").format(", ".join(parts[:-1]), parts[-1])


def finished_text(job_id: str, status: Any) -> str:
    """A finished job's notice, one short line: 'Job X finished: 4 cell(s) and 2 mosaic(s)
    succeeded', or with what did not: '… 3/4 cell(s) and 1/2 mosaic(s) succeeded, 1 failed'."""
    counts = status.counts
    planned = Counter(record.kind for record in status.records)
    made = Counter(r.kind for r in status.records if r.status is Status.SUCCEEDED)
    whole = not counts["FAILED"] and not counts["CANCELLED"]
    text = tr("Job {} finished: {} succeeded").format(job_id, counted(
        {kind: made[kind] if whole else f"{made[kind]}/{n}" for kind, n in planned.items()}))
    for state in (Status.FAILED, Status.CANCELLED, Status.SKIPPED):
        if counts[state.value]:
            text += f", {counts[state.value]} {status_text(state)}"
    return text


def columns() -> list[str]:
    return [tr("Job / cell"), tr("Status"), tr("Progress"), tr("Details")]


def status_text(status: Status) -> str:
    return {Status.PENDING: tr("pending"), Status.RUNNING: tr("running"),
            Status.SUCCEEDED: tr("succeeded"), Status.FAILED: tr("failed"),
            Status.CANCELLED: tr("cancelled"), Status.SKIPPED: tr("skipped")}[status]


def job_summary(status: Any) -> str:
    """'running', 'succeeded', '3 failed' … in a word or three, for a job row."""
    if status is None or not status.records:
        return tr("waiting")
    counts = status.counts
    if not status.finished:
        return tr("running") if counts["RUNNING"] else tr("pending")
    failed, cancelled, skipped = counts["FAILED"], counts["CANCELLED"], counts["SKIPPED"]
    if not failed and not cancelled:
        # skipped cells are done (the AOI cloud limit), shown apart from failures
        return tr("succeeded, {} skipped").format(skipped) if skipped else tr("succeeded")
    parts = []
    if failed:
        parts.append(tr("{} failed").format(failed))
    if cancelled:
        parts.append(tr("{} cancelled").format(cancelled))
    if skipped:
        parts.append(tr("{} skipped").format(skipped))
    return ", ".join(parts)


def progress_text(status: Any) -> str:
    """'3/4 ✓, 1 ✗': succeeded of all cells, then failed and cancelled ones."""
    records = status.records if status is not None else ()
    if not records:
        return "0/0"
    counts = status.counts
    text = f"{counts['SUCCEEDED']}/{len(records)} ✓"
    if counts["FAILED"]:
        text += f", {counts['FAILED']} ✗"
    if counts["CANCELLED"]:
        text += tr(", {} cancelled").format(counts["CANCELLED"])
    return text


def record_title(record: Any) -> str:
    """A cell's or unit's row name: '32TMT 2024-06-01', 'Mosaic 2024-06-01 NDVI',
    'Composite 2024-06-01 – 2024-06-30 NDVI'."""
    if record.kind == "cell":
        return f"{record.tile} {record.date}"
    first, last = record.period
    when = first if first == last else f"{first} – {last}"
    kind = tr("Mosaic") if record.kind == "mosaic" else tr("Composite")
    return f"{kind} {when} {product_title(str(record.extra.get('Product', '')))}"


def describe_job(params: Any) -> str:
    """What a job is about, from the parameters it was planned from: area (its name or its
    extent), dates and products."""
    if not params:
        return ""
    parts = []
    aoi = params.get("aoi")
    if params.get("aoi_name"):
        parts.append(str(params["aoi_name"]))
    elif isinstance(aoi, dict) and aoi.get("coordinates"):
        points = []

        def collect(value: Any) -> None:
            if isinstance(value, (list, tuple)) and len(value) >= 2 and \
                    all(isinstance(v, (int, float)) for v in value[:2]):
                points.append(value)
            elif isinstance(value, (list, tuple)):
                for item in value:
                    collect(item)

        collect(aoi["coordinates"])
        if points:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            parts.append(f"{min(ys):.2f}–{max(ys):.2f}°N {min(xs):.2f}–{max(xs):.2f}°E")
    if params.get("start"):
        parts.append(f"{params['start']} → {params.get('end', '')}")
    if params.get("products"):
        parts.append(" + ".join(products.PRODUCTS[p].title if p in products.PRODUCTS
                                else str(p) for p in params["products"]))
    if params.get("mosaic"):
        parts.append(tr("mosaics"))
    if params.get("composite"):
        parts.append(tr("{} composites ({})").format(params["composite"],
                                                     params.get("composite_period") or "all"))
    return ", ".join(parts)


def details_text(job_id: str, status: Any, *, description: str = "", backend: str = "",
                 error: str = "", cell_id: str | None = None) -> str:
    """The details pane's text: one cell in full (its reason, warnings, outputs), or the
    job with every failed cell's reason in full."""
    records = status.records if status is not None else ()
    if cell_id is not None:
        record = next((r for r in records if r.cell_id == cell_id), None)
        if record is None:
            return cell_id
        lines = [f"{record_title(record)} ({record.cell_id}): {status_text(record.status)}"
                 + (tr(", attempt {}").format(record.attempts) if record.attempts else "")]
        if record.error:
            lines.append(tr("Reason: {}").format(record.error))
        lines += [tr("Warning: {}").format(w) for w in record.warnings]
        lines += [f"{product}: {uri}" for product, uri in sorted(record.outputs.items())]
        return "\n".join(lines)
    lines = [tr("Job {}: {}").format(job_id, progress_text(status))]
    lines += [line for line in (description, backend) if line]
    if error:
        lines.append(tr("Not reachable: {}").format(error))
    for record in records:
        if record.status is Status.FAILED:
            lines.append(f"✗ {record_title(record)}: {record.error or '?'}")
    return "\n".join(lines)


def _item(text: str = "", tooltip: str = "") -> QStandardItem:
    item = QStandardItem(text)
    item.setEditable(False)
    if tooltip:
        item.setToolTip(tooltip)
    return item


class JobModel(QStandardItemModel):
    """Jobs (newest first) and their cells."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(0, len(columns()), parent)
        self.setHorizontalHeaderLabels(columns())
        #: the record each cell row shows: a poll of a 10,000-cell job touches only the
        #: rows whose record changed, so the GUI thread stays free
        self._shown: dict[tuple[str, str], Any] = {}

    # --- finding rows ------------------------------------------------------------------
    def job_row(self, job_id: str) -> int:
        for row in range(self.rowCount()):
            if self.item(row, 0).data(JOB_ID_ROLE) == job_id:
                return row
        return -1

    def job_ids(self) -> list[str]:
        return [self.item(row, 0).data(JOB_ID_ROLE) for row in range(self.rowCount())]

    def job_of(self, index: QModelIndex) -> str | None:
        """The job a (job or cell) index belongs to."""
        if not index.isValid():
            return None
        top = index if not index.parent().isValid() else index.parent()
        return self.item(top.row(), 0).data(JOB_ID_ROLE)

    def cell_item(self, job_id: str, cell_id: str, column: int = 0) -> QStandardItem | None:
        row = self.job_row(job_id)
        if row < 0:
            return None
        parent = self.item(row, 0)
        for child in range(parent.rowCount()):
            if parent.child(child, 0).data(CELL_ID_ROLE) == cell_id:
                return parent.child(child, column)
        return None

    # --- updating ------------------------------------------------------------------------
    def update_job(self, job_id: str, status: Any, *, backend: str = "", created: str = "",
                   error: str = "", newest: bool = False, description: str = "") -> None:
        """Create or refresh the job's row and its cells' rows from a core JobStatus."""
        row = self.job_row(job_id)
        if row < 0:
            items = [_item(job_id) for _ in range(self.columnCount())]
            items[0].setData(job_id, JOB_ID_ROLE)
            items[2].setData(0.0, PROGRESS_ROLE)
            if newest:
                self.insertRow(0, items)
                row = 0
            else:
                self.appendRow(items)
                row = self.rowCount() - 1
        head = self.item(row, 0)
        head.setToolTip(tr("Job {}\n{}\ncreated {}\nbackend: {}").format(
            job_id, description or "", created or "?", backend or "?"))
        summary = self.item(row, 1)
        summary.setText(job_summary(status) if not error else tr("unreachable"))
        summary.setToolTip(error)
        if error:
            summary.setForeground(QBrush(QColor(STATUS_COLORS[Status.FAILED])))
        progress = self.item(row, 2)
        progress.setData(status.progress if status is not None else 0.0, PROGRESS_ROLE)
        progress.setText(progress_text(status))
        details = self.item(row, 3)
        about = " · ".join(p for p in (description, backend) if p)
        details.setText(error or about)
        details.setToolTip(error or about)
        if status is not None:
            self._update_cells(head, status.records)

    def _update_cells(self, head: QStandardItem, records: Any) -> None:
        rows = {head.child(r, 0).data(CELL_ID_ROLE): r for r in range(head.rowCount())}
        job_id = head.data(JOB_ID_ROLE)
        for record in sorted(records, key=listing_order):  # new rows are appended in this order
            if self._shown.get((job_id, record.cell_id)) == record:
                continue
            self._shown[(job_id, record.cell_id)] = record
            row = rows.get(record.cell_id)
            if row is None:
                items = [_item() for _ in range(self.columnCount())]
                items[0].setData(record.cell_id, CELL_ID_ROLE)
                head.appendRow(items)
                row = head.rowCount() - 1
            name, state, attempts, details = (head.child(row, c) for c in range(4))
            name.setText(record_title(record))
            name.setToolTip(record.cell_id)
            state.setText(status_text(record.status))
            state.setForeground(QBrush(QColor(STATUS_COLORS[record.status])))
            state.setIcon(QgsApplication.getThemeIcon(STATUS_ICONS[record.status]))
            attempts.setText(tr("attempt {}").format(record.attempts) if record.attempts
                             else "")
            text = record.error or "; ".join(record.warnings) or \
                ", ".join(sorted(record.outputs))
            details.setText(text)
            tooltip = record.error or ""
            if record.warnings:
                tooltip += ("\n" if tooltip else "") + "\n".join(record.warnings)
            details.setToolTip(tooltip or text)
            state.setToolTip(tooltip or status_text(record.status))


class ProgressDelegate(QStyledItemDelegate):
    """Draws PROGRESS_ROLE (0–1) of job rows as a progress bar; everything else as usual,
    in rows tall enough for a bar."""

    ROW_HEIGHT = 24

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        hint = super().sizeHint(option, index)
        return QSize(hint.width(), max(hint.height(), self.ROW_HEIGHT))

    def paint(self, painter: Any, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        value = index.data(PROGRESS_ROLE)
        if value is None or index.parent().isValid():
            super().paint(painter, option, index)
            return
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(3, 3, -3, -3)
        bar.textAlignment = Qt.AlignmentFlag.AlignCenter
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = round(float(value) * 1000)
        bar.text = index.data(Qt.ItemDataRole.DisplayRole) or ""
        bar.textVisible = True
        bar.state = option.state
        style = option.widget.style() if option.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, option.widget)
