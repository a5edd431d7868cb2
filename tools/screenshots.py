"""`make screenshots`: real QGIS under Xvfb with the plugin runs the demo flow through the dock,
and ImageMagick's `import` saves what the user sees to docs/.

Two halves in one file. Run with the project's Python (outside QGIS) it prepares everything:
generated sample scenes and their STAC catalog, a throw-away QGIS profile with the plugin
linked in and enabled, a private rsbatch home, then starts `xvfb-run qgis --code <this file>`.
Run by QGIS (`--code`), it drives the dock like a user: draws the AOI polygon with mouse
clicks on the canvas, searches, submits, waits for the layers, and takes a screenshot after
each step. Its steps are driven by a timer, never a nested event loop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

CONFIG_ENV = "RSBATCH_SCREENSHOTS"
SCREEN = (1600, 1000)


# --- outside QGIS ----------------------------------------------------------------------------
def prepare_and_run(out: str, work: str, timeout: int) -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root) if root not in sys.path else None
    from worker.samples import write_sample_catalog

    work = os.path.abspath(work)
    profile = new_profile(work)
    plugin_dir = os.path.join(profile, "python", "plugins", "qgis_rsbatch")
    os.makedirs(plugin_dir)
    package = os.path.join(root, "qgis_rsbatch")
    for entry in os.listdir(package):
        if entry != "__pycache__":
            os.symlink(os.path.join(package, entry), os.path.join(plugin_dir, entry))
    os.symlink(os.path.join(root, "metadata.txt"), os.path.join(plugin_dir, "metadata.txt"))
    print("generating sample scenes …", flush=True)
    sample = write_sample_catalog(os.path.join(work, "sample"), crop=1600)
    config = {"out": os.path.abspath(out), "sample": sample,
              "basemap": context_basemap(os.path.join(work, "sample"), sample["start"]),
              "results": os.path.join(work, "results"), "python": sys.executable}
    os.makedirs(config["out"], exist_ok=True)
    env = {**os.environ, CONFIG_ENV: json.dumps(config),
           "RSBATCH_HOME": os.path.join(work, "home"), "RSBATCH_WORKER_PYTHON": sys.executable}
    env.pop("QT_QPA_PLATFORM", None)
    print("starting QGIS under Xvfb …", flush=True)
    result = run_qgis("screenshots", work, os.path.abspath(__file__), env, timeout,
                      os.path.join(config["out"], ".screenshots.json"))
    if result is None:
        return 1
    if not result.get("unloaded"):
        print("screenshots: QGIS could not unload the plugin", file=sys.stderr)
        return 1
    # and what `python -m qgis_rsbatch.render` makes of the same job
    render = os.path.join(config["out"], "render-demo.png")
    done = subprocess.run([sys.executable, "-m", "qgis_rsbatch.render", result["job_id"],
                           "--png", render, "--task-log",
                           os.path.join(work, "home", "tasklog.sqlite"), "--width", "520"],
                          env={**env, "QT_QPA_PLATFORM": "offscreen"}, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        print(f"screenshots: render failed: {done.stderr}", file=sys.stderr)
        return 1
    _shrink(render)
    for path in [*result["shots"], render]:
        print(f"  {path}")
    return 0


def new_profile(work: str) -> str:
    """A throw-away QGIS profile in `work` (emptied first): the plugin enabled, QGIS's tips
    and version check off, the dock polling every 500 ms. Returns the profile's folder;
    the plugin goes in its python/plugins."""
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    profile = os.path.join(work, "profiles", "default")
    os.makedirs(os.path.join(profile, "python", "plugins"))
    os.makedirs(os.path.join(profile, "QGIS"))
    with open(os.path.join(profile, "QGIS", "QGIS3.ini"), "w") as ini:
        ini.write("[PythonPlugins]\nqgis_rsbatch=true\n\n[qgis]\ncheckVersion=false\n"
                  "showTips322=false\nshowTips=false\n\n[rsbatch]\npoll_ms=500\n"
                  "confirm\\cells=1000\n")
    return profile


def run_qgis(name: str, work: str, code: str, env: dict, timeout: int,
             report: str) -> dict | None:
    """Run QGIS with `new_profile(work)` under Xvfb (SCREEN's size) and `code` as its
    --code; keep its output in <work>/qgis.log. Returns what the QGIS side wrote to
    `report`, or None after saying on stderr why there is nothing (or an error) to use."""
    command = ["xvfb-run", "-a", "-s", f"-screen 0 {SCREEN[0]}x{SCREEN[1]}x24",
               "qgis", "--profiles-path", work, "--profile", "default", "--nologo",
               "--noversioncheck", "--code", code]
    try:
        done = subprocess.run(command, env=env, timeout=timeout, check=False,
                              capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        print(f"{name}: QGIS did not finish within {timeout} s", file=sys.stderr)
        return None
    with open(os.path.join(work, "qgis.log"), "w") as log:  # kept for a look afterwards
        log.write(done.stdout + "\n" + done.stderr)
    if not os.path.exists(report):
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        print(f"{name}: the QGIS side did not report", file=sys.stderr)
        return None
    with open(report) as fh:
        result = json.load(fh)
    os.remove(report)
    if result.get("error"):
        print(f"{name}: {result['error']}", file=sys.stderr)
        return None
    return result


def context_basemap(folder: str, date: str) -> str:
    """A true-colour VRT of the first date's sample scenes: the map a user would already
    have under the area (no internet here for a real basemap)."""
    from osgeo import gdal

    tiles = []
    for item in sorted(os.listdir(folder)):
        if item.endswith(date):
            bands = [os.path.join(folder, item, f"{b}.tif") for b in ("B04", "B03", "B02")]
            vrt = os.path.join(folder, f"{item}_rgb.vrt")
            gdal.BuildVRT(vrt, bands, separate=True, srcNodata=0, VRTNodata=0)
            tiles.append(vrt)
    mosaic = os.path.join(folder, "context.vrt")
    gdal.BuildVRT(mosaic, tiles, srcNodata=0, VRTNodata=0)
    return mosaic


def _shrink(path: str) -> None:
    """A palette PNG: a third of the size, no visible change for screenshots."""
    subprocess.run(["/usr/bin/convert", path, "-strip", "-colors", "255", f"PNG8:{path}"],
                   check=True)


# --- inside QGIS -------------------------------------------------------------------------------
class Driver:
    """Walks the dock through the demo, one step per timer tick once its condition holds."""

    def __init__(self, config: dict) -> None:
        from qgis.PyQt.QtCore import QTimer
        from qgis.utils import iface, plugins

        self.config = config
        self.iface = iface
        self.plugin = plugins["qgis_rsbatch"]
        self.shots: list[str] = []
        self.error = ""
        self.job_id = ""
        self.steps = [self.setup, self.rendered, self.draw, self.drawing_shown,
                      self.finish_drawing, self.tiles_wait, self.tiles_shown,
                      self.search, self.scenes_shown, self.submit, self.running,
                      self.results_ndvi, self.results_rgb, self.settings_tab, self.done]
        self.waiting_since = 0.0
        self._render_for = ""
        self._rendered = False
        self.timer = QTimer()
        self.timer.setInterval(250)
        self.timer.timeout.connect(self.tick)

    def start(self) -> None:
        self.timer.start()

    def tick(self) -> None:
        import time
        import traceback

        if not self.waiting_since:
            self.waiting_since = time.monotonic()
        try:
            if self.steps[0]() is not False:
                self.steps.pop(0)
                self.waiting_since = 0.0
            elif time.monotonic() - self.waiting_since > 180:
                raise TimeoutError(f"step {self.steps[0].__name__} never became ready")
        except Exception:  # report and leave: nobody watches this QGIS
            self.error = traceback.format_exc()
            self.steps = [self.done]

    def rendered_shot(self, name: str) -> bool:
        """Refresh the map, and take the screenshot once it is drawn (False until then)."""
        canvas = self.iface.mapCanvas()
        if self._render_for != (name or "-"):
            self._render_for, self._rendered = name or "-", False
            canvas.mapCanvasRefreshed.connect(self._on_rendered)
            canvas.refreshAllLayers()
            return False
        if not self._rendered or canvas.isDrawing():
            return False
        canvas.mapCanvasRefreshed.disconnect(self._on_rendered)
        self._render_for = ""
        if name:
            self.shot(name)
        return True

    def _on_rendered(self) -> None:
        self._rendered = True

    def shot(self, name: str) -> None:
        from qgis.PyQt.QtWidgets import QApplication

        for _ in range(5):
            QApplication.processEvents()
        path = os.path.join(self.config["out"], name)
        subprocess.run(["/usr/bin/import", "-window", "root", path], check=True)
        _shrink(path)
        self.shots.append(path)

    @property
    def dock(self):
        return self.plugin.dock

    # --- the steps: each returns False while it must wait ------------------------------------
    def setup(self):
        from qgis.core import QgsContrastEnhancement, QgsMultiBandColorRenderer, QgsRasterLayer
        from qgis.PyQt.QtGui import QColor

        window = self.iface.mainWindow()
        window.setGeometry(0, 0, *SCREEN)
        self.iface.newProject(False)
        # the map under the area: the project (and its CRS, UTM 32N) starts with it
        basemap = QgsRasterLayer(self.config["basemap"], "Sentinel-2 sample scene (context)",
                                 "gdal")
        renderer = QgsMultiBandColorRenderer(basemap.dataProvider(), 1, 2, 3)
        for setter in (renderer.setRedContrastEnhancement,
                       renderer.setGreenContrastEnhancement,
                       renderer.setBlueContrastEnhancement):
            enhancement = QgsContrastEnhancement(basemap.dataProvider().dataType(1))
            enhancement.setContrastEnhancementAlgorithm(
                QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum)
            enhancement.setMinimumValue(1000)  # DNs carry the +1000 of baseline 04.00
            enhancement.setMaximumValue(4000)
            setter(enhancement)
        basemap.setRenderer(renderer)
        basemap.hueSaturationFilter().setSaturation(-70)
        basemap.brightnessFilter().setBrightness(25)
        basemap.setOpacity(0.8)
        from qgis.core import QgsProject

        QgsProject.instance().addMapLayer(basemap)
        QgsProject.instance().setBackgroundColor(QColor("#d9d9d9"))
        from qgis_rsbatch.settings import Settings

        settings = Settings()
        settings.output_folder = self.config["results"]
        settings.worker_python = self.config["python"]
        self.plugin.toggle_dock(True)
        self.dock.setMinimumWidth(470)
        # the Layers panel wide enough for a job's group and layer names
        from qgis.PyQt.QtCore import Qt
        from qgis.PyQt.QtWidgets import QDockWidget

        layers = window.findChild(QDockWidget, "Layers")
        window.resizeDocks([layers, self.dock], [320, 560], Qt.Orientation.Horizontal)
        return True

    def aoi_extent(self):
        from qgis.core import (
            QgsCoordinateReferenceSystem,
            QgsCoordinateTransform,
            QgsProject,
        )

        from qgis_rsbatch.gui.geometry import from_geojson

        geometry = from_geojson(self.config["sample"]["aoi"])
        transform = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"),
                                           QgsProject.instance().crs(), QgsProject.instance())
        geometry.transform(transform)
        return geometry

    def zoom_to_aoi(self, factor: float) -> None:
        box = self.aoi_extent().boundingBox()
        box.scale(factor)
        self.iface.mapCanvas().setExtent(box)
        self.iface.mapCanvas().refresh()

    def draw(self):
        from qgis.PyQt.QtCore import QPoint, Qt
        from qgis.PyQt.QtTest import QTest

        canvas = self.iface.mapCanvas()
        tool = self.dock.aoi_panel.start_drawing("polygon")
        transform = canvas.getCoordinateTransform()
        ring = self.aoi_extent().asPolygon()[0][:-1]
        self.clicks = []
        for point in ring:
            pixel = transform.transform(point)
            self.clicks.append(QPoint(round(pixel.x()), round(pixel.y())))
        for click in self.clicks:
            QTest.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton,
                             Qt.KeyboardModifier.NoModifier, click)
        # the cursor rests between the last vertex and the first: the band shows the shape
        QTest.mouseMove(canvas.viewport(), self.clicks[0] + QPoint(40, 60))
        tool.canvasMoveEvent(self._move(canvas, self.clicks[-1] + QPoint(-60, 30)))
        return True

    def drawing_shown(self):
        return self.rendered_shot("aoi-drawing.png")

    def _move(self, canvas, point):
        from qgis.gui import QgsMapMouseEvent
        from qgis.PyQt.QtCore import QEvent, Qt

        return QgsMapMouseEvent(canvas, QEvent.Type.MouseMove, point, Qt.MouseButton.NoButton,
                                Qt.MouseButton.NoButton)

    def finish_drawing(self):
        from qgis.PyQt.QtCore import Qt
        from qgis.PyQt.QtTest import QTest

        QTest.mouseClick(self.iface.mapCanvas().viewport(), Qt.MouseButton.RightButton,
                         Qt.KeyboardModifier.NoModifier, self.clicks[0])
        return True

    def rendered(self):
        # QGIS zooms to the first layer added once it has drawn it: zoom after that
        if self.iface.mapCanvas().isDrawing():
            return False
        self.zoom_to_aoi(1.5)
        return self.rendered_shot("")

    def tiles_wait(self):
        if not self.dock.aoi_panel.tiles:
            return False
        # far enough out to see both 110 km tiles and their labels
        self.zoom_to_aoi(16)
        return True

    def tiles_shown(self):
        return self.rendered_shot("dock-area-tiles.png")

    def search(self):
        panel = self.dock.search_panel
        sample = self.config["sample"]
        panel.set_catalog(sample["catalog"])
        panel.set_dates(sample["start"], sample["end"])
        panel.cloud_spin.setValue(100)
        # mosaics (the default) and a median composite of the whole range
        options = self.dock.run_panel.reduce_options
        options.composite_combo.setCurrentIndex(options.composite_combo.findData("median"))
        self.zoom_to_aoi(1.3)
        panel.search_button.click()
        return True

    def scenes_shown(self):
        if not self.dock.search_panel.model.scenes() or not self.dock.run_panel.plan:
            return False
        if self._render_for != "dock-scenes.png":  # down to the run step: options, estimate
            scroll = self.dock.tabs.widget(0)
            scroll.verticalScrollBar().setValue(scroll.verticalScrollBar().maximum())
        return self.rendered_shot("dock-scenes.png")

    def submit(self):
        self.dock.run_panel.submit_button.click()
        return True

    def running(self):
        panel = self.dock.jobs_panel
        if not panel.model.rowCount():
            return False
        self.job_id = panel.model.job_ids()[0]
        job = panel.monitor.jobs.get(self.job_id)
        if job is None or job.status is None:
            return False
        counts = job.status.counts
        if not counts["RUNNING"] and not job.status.finished:
            return False
        self.shot("dock-job-running.png")
        return True

    def results_ndvi(self):
        from qgis.core import QgsProject

        from qgis_rsbatch.gui.results import outputs_of

        panel = self.dock.jobs_panel
        job = panel.monitor.jobs[self.job_id]
        layers = [la for la in QgsProject.instance().mapLayers().values()
                  if la.customProperty("rsbatch/job_id") == self.job_id]
        if not job.finished or len(layers) < len(outputs_of(job.status.records)):
            return False
        if self._render_for != "dock-results-ndvi.png":
            panel.tree.expandAll()
            self.zoom_to_aoi(1.15)
            self.show_group("NDVI")
        return self.rendered_shot("dock-results-ndvi.png")

    def results_rgb(self):
        from qgis.core import QgsProject

        from qgis_rsbatch.gui.layer_tree import job_group

        if self._render_for != "dock-results-rgb.png":
            group = job_group(QgsProject.instance(), self.job_id, create=False)
            group.findGroup("NDVI").setItemVisibilityChecked(False)
            # the clearer first date on top
            for node in group.findGroup("RGB").findLayers():
                node.setItemVisibilityChecked("2024-06-01" in node.name())
            self.show_group("RGB")
        return self.rendered_shot("dock-results-rgb.png")

    def show_group(self, product: str) -> None:
        """The job's group open at `product`, the first layer's legend (the ramp) shown."""
        from qgis.core import QgsProject

        from qgis_rsbatch.gui.layer_tree import job_group

        QgsProject.instance().layerTreeRoot().findLayer(
            QgsProject.instance().mapLayersByName("Sentinel-2 sample scene (context)")[0]
        ).setExpanded(False)
        group = job_group(QgsProject.instance(), self.job_id, create=False)
        for child in group.children():
            child.setExpanded(child.name() == product)
            if child.name() == "Composites":  # the dates step through the mosaics
                child.setItemVisibilityChecked(False)

    def settings_tab(self):
        panel = self.dock.settings_panel
        if panel.last_check is None:
            if panel._check_task is None:
                self.dock.show_tab("settings")
                panel.check_worker()
            return False
        self.shot("dock-settings.png")
        return True

    def done(self):
        from qgis.core import QgsApplication
        from qgis.utils import unloadPlugin

        self.timer.stop()
        # and the plugin leaves the real QGIS as cleanly as the tests say
        unloaded = bool(unloadPlugin("qgis_rsbatch"))
        with open(os.path.join(self.config["out"], ".screenshots.json"), "w") as fh:
            json.dump({"shots": self.shots, "error": self.error, "job_id": self.job_id,
                       "unloaded": unloaded}, fh)
        QgsApplication.exit(0)
        return True


def _main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs", help="where the PNGs go")
    parser.add_argument("--work", default="build/screenshots", help="scratch folder")
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args()
    return prepare_and_run(args.out, args.work, args.timeout)


if os.environ.get(CONFIG_ENV) and "qgis.utils" in sys.modules and \
        getattr(sys.modules["qgis.utils"], "iface", None) is not None:
    _DRIVER = Driver(json.loads(os.environ[CONFIG_ENV]))
    _DRIVER.start()
elif __name__ == "__main__":
    sys.exit(_main())
