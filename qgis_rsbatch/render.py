"""Render a finished job's results to a PNG and save them as a QGIS project, without a window.

    python -m qgis_rsbatch.render JOB_ID --png out.png --project out.qgz [--task-log PATH]

The job's succeeded cells are read from the task log; their outputs become layers in the
job's group with the plugin's own styles and layout (gui.results, gui.styles), so the PNG
and the .qgz show exactly what the dock would. Each product is drawn by QGIS's map renderer
(QgsMapRendererParallelJob) into its own panel, side by side, with the AOI outlined; the
project keeps the layers, styled, for anyone to open. `make demo` calls this after its job.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .core.errors import InvalidInput, RsbatchError

#: rows of the rendered grid at most (one per date)
MAX_DATES = 6


def _records(job_id: str, task_log: str | None) -> tuple[list[Any], Any]:
    """The job's records and its Job (for the AOI), from a SQLite path or a task-log URI."""
    from .core.tasklog import default_sqlite_path, open_task_log
    from .core.tasklog.sqlite import SqliteTaskLog

    if task_log and "://" in task_log:
        log = open_task_log(task_log)
    else:
        path = task_log or default_sqlite_path()
        if not os.path.exists(path):
            raise InvalidInput(f"no task log at {path}")
        log = SqliteTaskLog(path)
    records = log.job_records(job_id)
    if not records:
        raise InvalidInput(f"job {job_id} is not in the task log {task_log or 'of this user'}")
    loaded = log.load_job(job_id) if hasattr(log, "load_job") else None
    return records, (loaded[0] if loaded else None)


def _aoi_layer(job: Any) -> Any:
    from qgis.core import QgsFeature, QgsFillSymbol, QgsVectorLayer

    from .gui.geometry import from_geojson

    aoi = (job.params or {}).get("aoi") if job is not None else None
    if not aoi:
        return None
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326", "AOI", "memory")
    feature = QgsFeature()
    feature.setGeometry(from_geojson(aoi))
    layer.dataProvider().addFeatures([feature])
    layer.renderer().setSymbol(QgsFillSymbol.createSimple({
        "color": "0,0,0,0", "outline_color": "#ff7f00", "outline_width": "0.7"}))
    return layer


def _extent(layers: list[Any], crs: Any, project: Any) -> Any:
    from qgis.core import QgsCoordinateTransform, QgsRectangle

    extent = QgsRectangle()
    for layer in layers:
        transform = QgsCoordinateTransform(layer.crs(), crs, project.transformContext())
        extent.combineExtentWith(transform.transformBoundingBox(layer.extent()))
    return extent.buffered(max(extent.width(), extent.height()) * 0.03)


def _render(layers: list[Any], crs: Any, extent: Any, width: int, height: int) -> Any:
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(crs)
    settings.setOutputSize(QSize(width, height))
    settings.setExtent(extent)
    settings.setBackgroundColor(QColor("#f4f4f4"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()  # a command-line tool: blocking is what it is for
    return job.renderedImage()


def panel_title(product: str) -> str:
    """"NDVI (−1 … 1)", "RGB (reflectance 0–0.3)": the product and its style's range."""
    from .core import products

    spec = products.PRODUCTS.get(product)
    if spec is None:
        return product
    low, high = spec.style.minimum, spec.style.maximum
    if spec.style.kind == "rgb-stretch":
        return f"{spec.title} (reflectance {low:g}–{high:g})"
    return f"{spec.title} ({low:g} … {high:g})".replace("-", "−")


def _legend(painter: Any, product: str, x: int, y: int, width: int) -> None:
    """The product's colour ramp with its low, middle and high values."""
    from qgis.PyQt.QtCore import QRect
    from qgis.PyQt.QtGui import QColor, QLinearGradient

    from .core import products

    style = products.get(product).style
    colors = style.colors()
    gradient = QLinearGradient(x, 0, x + width, 0)
    for index, color in enumerate(colors):
        gradient.setColorAt(index / (len(colors) - 1), QColor(color))
    painter.fillRect(QRect(x, y, width, 12), gradient)
    middle = (style.minimum + style.maximum) / 2
    for shift, value in ((0, style.minimum), (width // 2 - 10, middle),
                         (width - 16, style.maximum)):
        painter.drawText(QRect(x + shift, y + 14, 40, 16), 0, f"{value:g}".replace("-", "−"))


def compose(job_id: str, rows: list[tuple[str, list[tuple[str, Any]]]], subtitle: str) -> Any:
    """A grid of rendered panels: one row per date, one column per product, titled, with
    each index's legend under the last row."""
    from qgis.PyQt.QtCore import QRect, Qt
    from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter

    from .core import products
    from .gui.compat import enum_int

    gap, top, caption, bottom = 16, 64, 24, 40
    columns = max(len(panels) for _, panels in rows)
    panel_w = max(image.width() for _, panels in rows for _, image in panels)
    panel_h = max(image.height() for _, panels in rows for _, image in panels)
    width = columns * panel_w + gap * (columns + 1)
    height = top + len(rows) * (panel_h + caption + gap) + bottom
    canvas = QImage(width, height, QImage.Format.Format_ARGB32)
    canvas.fill(QColor("white"))
    painter = QPainter(canvas)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    font = QFont()
    font.setPointSize(14)
    font.setBold(True)
    painter.setFont(font)
    left = enum_int(Qt.AlignmentFlag.AlignLeft)
    painter.drawText(QRect(gap, 8, width - 2 * gap, 26), left, f"rsbatch job {job_id}")
    font.setPointSize(10)
    font.setBold(False)
    painter.setFont(font)
    painter.setPen(QColor("#555555"))
    painter.drawText(QRect(gap, 34, width - 2 * gap, 20), left, subtitle)
    y = top
    legends: dict[str, int] = {}  # a ramp product → x of its column's legend
    for date, panels in rows:
        x = gap
        for product, image in panels:
            painter.setPen(QColor("#333333"))
            painter.drawText(QRect(x, y, panel_w, caption - 4), left,
                             f"{date} · {panel_title(product)}")
            painter.drawImage(x, y + caption, image)
            painter.drawRect(x, y + caption, image.width(), image.height())
            if products.get(product).style.kind == "ramp":
                legends[product] = x + panel_w - 180
            x += panel_w + gap
        y += panel_h + caption + gap
    painter.setPen(QColor("#333333"))
    for product, legend_x in legends.items():
        _legend(painter, product, legend_x, y, 170)
    painter.end()
    return canvas


def _what_ran(records: list) -> str:
    """'4 cell(s) on 32TMT, 32TNT and 4 mosaic/composite unit(s)' (units carry their kind)."""
    cells = [r for r in records if r.kind == "cell"]
    units = len(records) - len(cells)
    tiles = ", ".join(sorted({r.tile for r in cells}))
    return f"{len(cells)} cell(s) on {tiles}" + (
        f" and {units} mosaic/composite unit(s)" if units else "")


def render_job(job_id: str, png: str, project_path: str | None = None,
               task_log: str | None = None, width: int = 640, rgb_stretch: str = "fixed"
               ) -> dict[str, Any]:
    """Load, style, render and save; needs a running QgsApplication. Returns a summary."""
    from qgis.core import QgsProject

    from .core.products import NAMES
    from .gui.layer_tree import add_output_layer
    from .gui.results import LoadRequest, outputs_of, prepare

    records, job = _records(job_id, task_log)
    # a panel per date: the mosaics (or tiles); a composite spans dates, it has no panel
    outputs = [o for o in outputs_of(records) if o.kind != "composite"]
    if not outputs:
        raise InvalidInput(f"job {job_id} has no succeeded cell to render")
    project = QgsProject.instance()
    project.clear()
    layers = []
    for item in prepare(LoadRequest(job_id, outputs, rgb_stretch=rgb_stretch)):
        if item.error:
            print(f"rsbatch-render: skipped {item.output.uri}: {item.error}", file=sys.stderr)
            continue
        layers.append(add_output_layer(project, item.output, item.source, item.limits))
    if not layers:
        raise InvalidInput(f"none of job {job_id}'s outputs could be opened")
    crs = layers[0].crs()
    project.setCrs(crs)
    extent = _extent(layers, crs, project)
    height = max(1, round(width * extent.height() / extent.width()))
    aoi = _aoi_layer(job)
    by_date: dict[str, list[tuple[str, Any]]] = {}
    for node in project.layerTreeRoot().findLayers():
        layer = node.layer()
        date = layer.customProperty("rsbatch/date")
        by_date.setdefault(date, []).append((layer.customProperty("rsbatch/product"), layer))
    rows = []
    for date in sorted(by_date)[:MAX_DATES]:
        panels = []
        for product in NAMES:
            stack = [la for p, la in by_date[date] if p == product]
            if stack:
                stack = ([aoi] if aoi is not None else []) + stack
                panels.append((product, _render(stack, crs, extent, width, height)))
        rows.append((date, panels))
    counts = {s: sum(1 for r in records if r.status.value == s)
              for s in ("SUCCEEDED", "FAILED", "CANCELLED")}
    subtitle = (f"{_what_ran(records)}, {min(r.date for r in records)} … "
                f"{max(r.date for r in records)}: "
                f"{counts['SUCCEEDED']} succeeded, {counts['FAILED']} failed; the area of "
                "interest in orange")
    if len(by_date) > MAX_DATES:
        subtitle += f"; the first {MAX_DATES} of {len(by_date)} dates"
    image = compose(job_id, rows, subtitle)
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    if not image.save(png):
        raise RsbatchError(f"could not write {png}")
    if project_path:
        os.makedirs(os.path.dirname(os.path.abspath(project_path)), exist_ok=True)
        project.setTitle(f"rsbatch job {job_id}")
        if not project.write(project_path):
            raise RsbatchError(f"could not write the project {project_path}")
    return {"png": png, "project": project_path, "layers": len(layers),
            "panels": [f"{d} {p}" for d, panels in rows for p, _ in panels]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qgis_rsbatch.render",
                                     description="Render a finished rsbatch job to a PNG and "
                                                 "a QGIS project.")
    parser.add_argument("job_id")
    parser.add_argument("--png", required=True, help="the image to write")
    parser.add_argument("--project", help="a .qgz (or .qgs) project to write")
    parser.add_argument("--task-log", help="SQLite task log path or task-log URI "
                                           "(default: this user's)")
    parser.add_argument("--width", type=int, default=640, help="pixels per panel")
    parser.add_argument("--stretch", choices=("fixed", "cumulative"), default="fixed",
                        help="RGB stretch (default: reflectance 0–0.3)")
    args = parser.parse_args(argv)
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and \
            not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    try:
        summary = render_job(args.job_id, args.png, args.project, args.task_log, args.width,
                             args.stretch)
    except RsbatchError as exc:
        print(f"rsbatch-render: error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        from qgis.core import QgsProject

        QgsProject.instance().clear()
        app.exitQgis()
    print(f"rendered {summary['layers']} layer(s) ({', '.join(summary['panels'])}) to "
          f"{summary['png']}" + (f"; project {summary['project']}" if summary["project"]
                                 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
