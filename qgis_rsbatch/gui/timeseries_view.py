"""The dock's Time series view of a job: an index over the AOI, date by date.

One line per tile: the mean of the index over the AOI's valid pixels, in a band from p10 to
p90; dates whose cell was SKIPPED (the AOI too cloudy) are marked on the date axis. The
numbers are the rows of core.timeseries (the same as `rsbatch stats`); the plot is drawn
with a QPainter, so it needs nothing QGIS does not ship, and exports as CSV and PNG.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from qgis.PyQt.QtCore import QPointF, QRectF, Qt
from qgis.PyQt.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QPainter,
    QPainterPath,
    QPen,
    QPolygonF,
)
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core import products, timeseries
from ..core.errors import OutputFailed, RsbatchError
from .compat import enum_int

#: one colour per tile (ColorBrewer Dark2)
TILE_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")
SKIPPED_COLOR = "#756bb1"
_MARGIN = (64, 40, 24, 64)  # left, top, right, bottom


def _day(text: str) -> int:
    return dt.date.fromisoformat(text).toordinal()


def series_of(rows: Sequence[Mapping[str, Any]], product: str
              ) -> tuple[dict[str, list[Mapping[str, Any]]], list[tuple[str, str]]]:
    """The product's rows with numbers, by tile (in date order), and its skipped
    (date, tile) pairs."""
    by_tile: dict[str, list[Mapping[str, Any]]] = {}
    skipped = set()
    for row in rows:
        if row["product"] != product:
            continue
        if row["status"] == "SKIPPED":
            skipped.add((row["date"], row["tile"]))
        elif row.get("mean") is not None:
            by_tile.setdefault(row["tile"], []).append(row)
    for series in by_tile.values():
        series.sort(key=lambda r: r["date"])
    return dict(sorted(by_tile.items())), sorted(skipped)


def paint(painter: QPainter, rect: QRectF, rows: Sequence[Mapping[str, Any]],
          product: str) -> None:
    """Draw the product's time series into `rect`."""
    painter.fillRect(rect, QColor("white"))
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    by_tile, skipped = series_of(rows, product)
    left, top, right, bottom = _MARGIN
    plot = QRectF(rect.left() + left, rect.top() + top, rect.width() - left - right,
                  rect.height() - top - bottom)
    spec = products.get(product)
    title = QFont()
    title.setBold(True)
    painter.setFont(title)
    painter.setPen(QColor("#222222"))
    painter.drawText(QRectF(rect.left() + left, rect.top() + 8, plot.width(), 24),
                     enum_int(Qt.AlignmentFlag.AlignLeft),
                     f"{spec.title} over the area: mean, p10–p90")
    painter.setFont(QFont())
    dates = [r["date"] for series in by_tile.values() for r in series] + [d for d, _ in skipped]
    tiles = sorted(set(by_tile) | {tile for _, tile in skipped})
    colors = {tile: QColor(TILE_COLORS[i % len(TILE_COLORS)]) for i, tile in enumerate(tiles)}
    if not dates:
        painter.drawText(plot, enum_int(Qt.AlignmentFlag.AlignCenter),
                         "no statistics yet")
        return
    first, last = _day(min(dates)), _day(max(dates))
    span = max(last - first, 1)
    # the data's p10 … p90, padded, at least 0.1 high (a flat series stays readable)
    values = [v for s in by_tile.values() for r in s for v in (r["p10"], r["p90"])]
    low, high = (min(values), max(values)) if values else (spec.style.minimum,
                                                          spec.style.maximum)
    pad = max((high - low) * 0.1, (0.1 - (high - low)) / 2, 0.0)
    low, high = low - pad, high + pad

    def x(day: str) -> float:
        offset = (_day(day) - first) / span if last > first else 0.5
        return plot.left() + (0.04 + 0.92 * offset) * plot.width()

    def y(value: float) -> float:
        return plot.bottom() - (value - low) / (high - low) * plot.height()

    _axes(painter, plot, low, high, y, sorted(set(dates)), x)
    _skipped_marks(painter, plot, skipped, x, colors, tiles)
    for tile, series in by_tile.items():
        _series(painter, colors[tile], series, x, y)
    _legend(painter, rect, colors, bool(skipped))


def _skipped_marks(painter: QPainter, plot: QRectF, skipped: list[tuple[str, str]], x: Any,
                   colors: Mapping[str, QColor], tiles: list[str]) -> None:
    """A dashed line for each date with a skipped cell, and a cross in the colour of each
    tile skipped that day, on the date axis: no data there."""
    painter.setPen(QPen(QColor(SKIPPED_COLOR), 1.5, Qt.PenStyle.DashLine))
    for date in sorted({d for d, _ in skipped}):
        painter.drawLine(QPointF(x(date), plot.top()), QPointF(x(date), plot.bottom()))
    for date, tile in skipped:
        painter.setPen(QPen(colors[tile], 2))
        cx, cy = x(date), plot.bottom() - 9 - 13 * tiles.index(tile)
        painter.drawLine(QPointF(cx - 5, cy - 5), QPointF(cx + 5, cy + 5))
        painter.drawLine(QPointF(cx - 5, cy + 5), QPointF(cx + 5, cy - 5))


def _series(painter: QPainter, color: QColor, series: list[Mapping[str, Any]], x: Any,
            y: Any) -> None:
    """One tile: its p10-p90 band, its mean line and points."""
    fill = QColor(color)
    fill.setAlpha(50)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(fill)
    if len(series) > 1:
        painter.drawPolygon(QPolygonF(
            [QPointF(x(r["date"]), y(r["p90"])) for r in series]
            + [QPointF(x(r["date"]), y(r["p10"])) for r in reversed(series)]))
    path = QPainterPath()
    path.moveTo(QPointF(x(series[0]["date"]), y(series[0]["mean"])))
    for r in series[1:]:
        path.lineTo(QPointF(x(r["date"]), y(r["mean"])))
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.setPen(QPen(color, 2))
    painter.drawPath(path)
    painter.setBrush(color)
    for r in series:
        painter.drawEllipse(QPointF(x(r["date"]), y(r["mean"])), 3.5, 3.5)
        if len(series) == 1:  # one date: the p10-p90 range as a whisker
            painter.drawLine(QPointF(x(r["date"]), y(r["p10"])),
                             QPointF(x(r["date"]), y(r["p90"])))
    painter.setBrush(Qt.BrushStyle.NoBrush)


def _axes(painter: QPainter, plot: QRectF, low: float, high: float, y: Any,
          dates: list[str], x: Any) -> None:
    painter.setPen(QPen(QColor("#dddddd"), 1))
    steps = 4
    for i in range(steps + 1):
        value = low + (high - low) * i / steps
        painter.drawLine(QPointF(plot.left(), y(value)), QPointF(plot.right(), y(value)))
    painter.setPen(QPen(QColor("#444444"), 1))
    painter.drawRect(plot)
    right = enum_int(Qt.AlignmentFlag.AlignRight) | enum_int(Qt.AlignmentFlag.AlignVCenter)
    for i in range(steps + 1):
        value = low + (high - low) * i / steps
        painter.drawText(QRectF(plot.left() - 62, y(value) - 10, 56, 20), right,
                         f"{value:.2f}".replace("-", "−"))
    metrics = QFontMetrics(painter.font())
    label = metrics.horizontalAdvance("2024-06-21") + 12
    shown = dates[:: max(1, math.ceil(len(dates) * label / max(plot.width(), 1)))]
    center = enum_int(Qt.AlignmentFlag.AlignHCenter) | enum_int(Qt.AlignmentFlag.AlignTop)
    for day in shown:
        painter.drawLine(QPointF(x(day), plot.bottom()), QPointF(x(day), plot.bottom() + 4))
        painter.drawText(QRectF(x(day) - label / 2, plot.bottom() + 6, label,
                                metrics.height() + 2), center, day)


def _legend(painter: QPainter, rect: QRectF, colors: Mapping[str, QColor],
            skipped: bool) -> None:
    metrics = QFontMetrics(painter.font())
    height = metrics.height() + 2
    x, y = rect.left() + _MARGIN[0], rect.bottom() - height - 4
    entries = [(tile, QPen(color, 3)) for tile, color in colors.items()]
    if skipped:
        entries.append(("skipped (AOI too cloudy)",
                        QPen(QColor(SKIPPED_COLOR), 1.5, Qt.PenStyle.DashLine)))
    for text, pen in entries:
        painter.setPen(pen)
        painter.drawLine(QPointF(x, y + height / 2), QPointF(x + 18, y + height / 2))
        painter.setPen(QColor("#222222"))
        width = metrics.horizontalAdvance(text) + 8
        painter.drawText(QRectF(x + 22, y, width, height), 0, text)
        x += 22 + width + 12


def render_image(rows: Sequence[Mapping[str, Any]], product: str, width: int = 800,
                 height: int = 420) -> QImage:
    """The plot as an image (what the PNG export writes)."""
    image = QImage(width, height, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        paint(painter, QRectF(0, 0, width, height), rows, product)
    finally:
        painter.end()
    return image


class TimeSeriesPlot(QWidget):
    """The plot as a widget; `set_rows` and `set_product` redraw it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[Mapping[str, Any]] = []
        self.product = ""
        self.setMinimumSize(480, 280)

    def set_data(self, rows: Sequence[Mapping[str, Any]], product: str) -> None:
        self.rows, self.product = list(rows), product
        self.update()

    def paintEvent(self, event: Any) -> None:
        if not self.product:
            return
        painter = QPainter(self)
        try:
            paint(painter, QRectF(self.rect()), self.rows, self.product)
        finally:
            painter.end()


class TimeSeriesDialog(QDialog):
    """A job's time series: choose the index, look, export CSV or PNG."""

    def __init__(self, job_id: str, records: Sequence[Any],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(self.tr("Time series of job {}").format(job_id))
        self.job_id = job_id
        # skipped cells recorded no statistics: they had the products the others have
        made = sorted({p for r in records for p in r.stats},
                      key=lambda p: products.NAMES.index(p) if p in products.NAMES else 99)
        self.rows = timeseries.stats_rows(records, {r.cell_id: made for r in records})
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(QLabel(self.tr("Index"), self))
        self.product_combo = QComboBox(self)
        for name in made:
            self.product_combo.addItem(products.get(name).title, name)
        top.addWidget(self.product_combo, 1)
        self.csv_button = QPushButton(self.tr("Export CSV…"), self)
        self.png_button = QPushButton(self.tr("Export PNG…"), self)
        top.addWidget(self.csv_button)
        top.addWidget(self.png_button)
        layout.addLayout(top)
        self.plot = TimeSeriesPlot(self)
        layout.addWidget(self.plot, 1)
        self.status_label = QLabel(self)
        layout.addWidget(self.status_label)
        self.product_combo.currentIndexChanged.connect(lambda _i: self._redraw())
        self.csv_button.clicked.connect(lambda: self._export("csv"))
        self.png_button.clicked.connect(lambda: self._export("png"))
        self.csv_button.setEnabled(bool(self.rows))
        self.png_button.setEnabled(bool(made))
        self.resize(820, 480)
        self._redraw()

    def product(self) -> str:
        return str(self.product_combo.currentData() or "")

    def _redraw(self) -> None:
        self.plot.set_data(self.rows, self.product())

    def export_csv(self, path: str) -> None:
        timeseries.write_csv(self.rows, path)

    def export_png(self, path: str) -> bool:
        return render_image(self.rows, self.product()).save(path, "PNG")

    def _export(self, kind: str) -> None:
        name = f"{self.job_id}_{self.product() if kind == 'png' else 'stats'}.{kind}"
        path, _ = QFileDialog.getSaveFileName(self, self.tr("Export"), name,
                                              f"{kind.upper()} (*.{kind})")
        if not path:
            return
        try:
            if kind == "csv":
                self.export_csv(path)
            elif not self.export_png(path):
                raise OutputFailed(f"cannot write {path}")
            self.status_label.setText(self.tr("Written to {}").format(path))
        except RsbatchError as exc:
            self.status_label.setText(str(exc))
