"""`python -m qgis_rsbatch.render`: a finished job → a PNG drawn by QGIS's renderer and a
.qgz project whose layers carry the plugin's styles."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from qgis.core import QgsLayerTreeGroup, QgsProject
from qgis.PyQt.QtGui import QColor, QImage

from qgis_rsbatch.core.backends import get_backend
from qgis_rsbatch.core.planning import JobRequest, find_scenes, make_job

pytestmark = pytest.mark.slow


@pytest.fixture
def finished_job(sample, tmp_path):
    log = str(tmp_path / "tasklog.sqlite")
    request = JobRequest(aoi=sample["aoi"], start=sample["start"], end=sample["end"],
                         output=str(tmp_path / "out"), catalog=sample["catalog"],
                         max_cloud=100, mosaic=False)  # the render draws tile layers
    job = make_job(request, find_scenes(request).scenes)
    status = get_backend("local", task_log_path=log, workers=2).submit(job, wait=True)
    assert status.succeeded
    return job.job_id, log


def _render(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([sys.executable, "-m", "qgis_rsbatch.render", *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def test_render_writes_a_png_and_a_project_with_the_styled_group(finished_job, tmp_path,
                                                                 qgis_new_project):
    job_id, log = finished_job
    png, qgz = str(tmp_path / "job.png"), str(tmp_path / "job.qgz")
    done = _render(job_id, "--png", png, "--project", qgz, "--task-log", log)
    assert done.returncode == 0, done.stderr
    assert "rendered 8 layer(s)" in done.stdout

    image = QImage(png)
    assert image.width() > 1000 and image.height() > 800
    # NDVI's greens and RGB's browns are in the picture: the layers were drawn, styled
    colors = {QColor(image.pixel(x, y)).name() for x in range(0, image.width(), 7)
              for y in range(0, image.height(), 7)}
    greens = [c for c in colors if QColor(c).green() > QColor(c).red() + 40]
    assert len(greens) > 20

    project = QgsProject.instance()
    assert project.read(qgz)
    group = next(g for g in project.layerTreeRoot().children()
                 if isinstance(g, QgsLayerTreeGroup) and g.name() == f"rsbatch {job_id}")
    ndvi = [n.layer() for n in group.findGroup("NDVI").findLayers()]
    rgb = [n.layer() for n in group.findGroup("RGB").findLayers()]
    assert len(ndvi) == 4 and len(rgb) == 4
    assert all(la.isValid() for la in ndvi + rgb)
    assert {la.renderer().type() for la in ndvi} == {"singlebandpseudocolor"}
    assert {la.renderer().type() for la in rgb} == {"multibandcolor"}
    assert rgb[0].renderer().redContrastEnhancement().maximumValue() == 0.3


def test_render_says_what_is_wrong(tmp_path, finished_job):
    _, log = finished_job
    done = _render("rsb-nope", "--png", str(tmp_path / "x.png"), "--task-log", log)
    assert done.returncode == 2
    assert "job rsb-nope is not in the task log" in done.stderr
    assert "Traceback" not in done.stderr


def test_render_of_a_mosaic_job_draws_a_panel_per_date_from_the_mosaics(sample, tmp_path,
                                                                       qgis_new_project):
    """Mosaics on and a median composite: the panels are the per-date mosaics (a composite
    spans the dates, it has no panel of its own), never the tiles under them."""
    log = str(tmp_path / "tasklog.sqlite")
    request = JobRequest(aoi=sample["aoi"], start=sample["start"], end=sample["end"],
                         output=str(tmp_path / "out"), catalog=sample["catalog"],
                         max_cloud=100, composite="median")
    job = make_job(request, find_scenes(request).scenes)
    assert get_backend("local", task_log_path=log, workers=2).submit(job, wait=True).succeeded
    png, qgz = str(tmp_path / "job.png"), str(tmp_path / "job.qgz")
    done = _render(job.job_id, "--png", png, "--project", qgz, "--task-log", log)
    assert done.returncode == 0, done.stderr
    assert "rendered 4 layer(s)" in done.stdout   # 2 dates × NDVI, RGB
    assert QImage(png).width() > 1000

    project = QgsProject.instance()
    assert project.read(qgz)
    layers = [la for la in project.mapLayers().values() if la.customProperty("rsbatch/job_id")]
    mosaic = os.path.join(str(tmp_path / "out"), job.job_id, "mosaic")
    assert sorted(os.path.basename(la.source()) for la in layers) == [
        "2024-06-01_ndvi.tif", "2024-06-01_rgb.tif", "2024-06-11_ndvi.tif",
        "2024-06-11_rgb.tif"]
    assert all(os.path.dirname(la.source()) == mosaic for la in layers)
    assert {la.crs().authid() for la in layers} == {"EPSG:32632"}
