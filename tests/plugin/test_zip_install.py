"""The ZIP is the product: an analyst with only QGIS and the plugin ZIP runs a job.

`make package` builds the ZIP; it is unzipped into a fresh QGIS profile under a temporary
HOME; QGIS's own Python (Debian's /usr/bin/python3: no rasterio, no boto3) runs a headless
QGIS session (headless_qgis.py) that loads the plugin from that profile and sets up the
worker environment with pip pointed only at the wheelhouse `make setup` filled
(PIP_NO_INDEX=1, PIP_FIND_LINKS), generates the sample data with it and runs a job through
Processing. Then the same with no wheelhouse and no index: one clear error, nothing
half-installed, QGIS still usable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / "build" / "wheelhouse"
QGIS_PYTHON = "/usr/bin/python3"
SESSION = Path(__file__).with_name("headless_qgis.py")
SAMPLE_EXTENT = "9.02,9.11,47.67,47.72 [EPSG:4326]"
PROFILE = Path(".local", "share", "QGIS", "QGIS3", "profiles", "default")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.isfile(QGIS_PYTHON), reason="needs Debian's /usr/bin/python3"),
]


def build_plugin_zip() -> Path:
    """`make package`: the ZIP an analyst installs."""
    built = subprocess.run(["make", "-s", "package"], cwd=ROOT, capture_output=True,
                           text=True, check=False)
    assert built.returncode == 0, built.stderr
    version = next(line.split("=", 1)[1].strip() for line in
                   (ROOT / "metadata.txt").read_text().splitlines()
                   if line.startswith("version="))
    return ROOT / "dist" / f"qgis_rsbatch-{version}.zip"


@pytest.fixture(scope="module")
def plugin_zip() -> Path:
    return build_plugin_zip()


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    if not (WHEELHOUSE / ".complete").is_file():
        pytest.fail(f"no wheelhouse in {WHEELHOUSE}: run `make setup` (or `make wheelhouse`)")
    return WHEELHOUSE


def install(plugin_zip: Path, home: Path) -> Path:
    """Plugins ▸ Install from ZIP: the archive unpacked into the profile's plugin folder."""
    plugins = home / PROFILE / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as archive:
        archive.extractall(plugins)
    return home / PROFILE


def qgis_session(home: Path, steps: list[dict], find_links: Path,
                 extra_env: dict[str, str] | None = None) -> list[dict]:
    """Run the steps in a headless QGIS of QGIS's own Python; what each step did."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV", "RSBATCH", "XDG_DATA",
                                     "QGIS_CUSTOM", "QGIS_OPTIONS"))}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p != venv_bin)
    env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen", PIP_CONFIG_FILE=os.devnull,
               PIP_NO_INDEX="1", PIP_FIND_LINKS=str(find_links), PYTHONNOUSERSITE="1")
    env.update(extra_env or {})
    steps_path, result_path = home / "steps.json", home / "result.json"
    steps_path.write_text(json.dumps(steps))
    result_path.unlink(missing_ok=True)
    done = subprocess.run([QGIS_PYTHON, str(SESSION), str(steps_path), str(result_path)],
                          cwd=home, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(result_path.read_text())["steps"]


def runjob(out: Path, catalog: str, products: list[int]) -> dict:
    return {"do": "algorithm", "id": "rsbatch:runjob", "load": True, "params": {
        "EXTENT": SAMPLE_EXTENT, "START": "2024-06-01", "END": "2024-06-11", "MAX_CLOUD": 100,
        "CATALOG": catalog, "PRODUCTS": products, "OUTPUT_FOLDER": str(out), "LOAD": True}}


MODULES_BEFORE_AND_AFTER_BOTO3 = """
import importlib.util, sys
import numpy, dateutil, urllib3, six  # QGIS's own, imported as a plugin would have
result["had"] = {n: importlib.util.find_spec(n) is not None for n in ("boto3", "rasterio")}
before = {n: (id(m), getattr(m, "__file__", None)) for n, m in list(sys.modules.items())}
from qgis_rsbatch.gui.backends import boto3_missing
result["missing"] = boto3_missing()
import boto3
boto3.session.Session().client("s3", region_name="us-east-1")  # botocore, urllib3, dateutil
after = dict(sys.modules)
result["replaced"] = [n for n, (ident, path) in before.items()
                      if n not in after or id(after[n]) != ident
                      or getattr(after[n], "__file__", None) != path]
result["files"] = {n: getattr(sys.modules[n], "__file__", None)
                   for n in ("boto3", "botocore", "dateutil", "urllib3", "six", "numpy")}
"""


def test_a_zip_install_sets_up_its_worker_and_runs_a_job(plugin_zip, wheelhouse, tmp_path):
    from qgis_rsbatch.core.contract import Status
    from qgis_rsbatch.core.tasklog.schema import is_unit_record
    from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog
    from qgis_rsbatch.gui.layer_tree import job_tag
    from worker.cogcheck import validate_cog

    home = tmp_path / "home"
    profile = install(plugin_zip, home)
    plugin_dir = profile / "python" / "plugins" / "qgis_rsbatch"
    catalog = profile / "rsbatch" / "samples" / "catalog.json"
    steps = qgis_session(home, [
        {"do": "modules"},
        {"do": "algorithm", "id": "rsbatch:setupworker", "params": {"AWS": True}},
        {"do": "python", "code": (  # what the set-up compiled, before any worker ran
            "import pathlib\nresult['compiled'] = sorted(p.name.split('.')[0] for p in "
            f"pathlib.Path({str(plugin_dir / 'bundled' / 'worker' / '__pycache__')!r})"
            ".glob('*.nbi'))")},
        {"do": "python", "code": (
            "from qgis_rsbatch.environments import generate_samples, profile_worker_python, "
            "samples_folder\nresult.update(generate_samples(profile_worker_python(), "
            "samples_folder(), crop=600))")},
        runjob(tmp_path / "out", str(catalog), [0, 1]),
        {"do": "python", "code": MODULES_BEFORE_AND_AFTER_BOTO3},
        {"do": "modules"},
    ], wheelhouse)
    modules, setup, compiled, samples, job, aws, after = steps
    # the plugin ran from the profile, not from this checkout; QGIS never imported rasterio
    files = [f for f in modules["files"].values() if f]
    assert files and all(f.startswith(str(plugin_dir)) for f in files), files
    assert not any(name.split(".")[0] == "worker" for name in after["files"])
    assert not after["rasterio"]

    assert setup["ok"], setup.get("error")
    python = setup["result"]["PYTHON"]
    assert python == str(profile / "rsbatch" / "worker-env" / "bin" / "python")
    assert setup["result"]["RASTERIO"] == "1.4.4" and setup["result"]["GDAL"]
    assert not list((profile / "rsbatch").glob("*.partial"))
    # the set-up compiled the worker's loops beside its code, once for every worker after
    assert compiled["ok"], compiled.get("traceback")
    assert {"kernels", "tiles", "compute"} <= set(compiled["result"]["compiled"])
    assert samples["ok"], samples.get("error")
    assert samples["result"]["catalog"] == str(catalog)

    assert job["ok"], job.get("traceback") or job.get("error")
    result = job["result"]
    assert result["SUCCEEDED"] == 4 and result["FAILED"] == 0
    job_id = result["JOB_ID"]
    # the algorithm's default merges each date's two tiles: one layer per date and product
    assert sorted(job["layers"]) == sorted(
        f"{date} {product} · {job_tag(job_id)}"
        for date in ("2024-06-01", "2024-06-11") for product in ("RGB", "NDVI"))
    log = SqliteTaskLog(str(home / ".local" / "share" / "rsbatch" / "tasklog.sqlite"))
    records = log.job_records(job_id)
    units = [r for r in records if is_unit_record(r)]
    assert len(records) == 8 and len(units) == 4  # 4 cells, then a mosaic per date, product
    assert all(r.status is Status.SUCCEEDED for r in records)
    assert len(result["MOSAICS"]) == 4 and set(result["MOSAICS"]) <= set(result["OUTPUT_LAYERS"])
    for path in result["OUTPUT_LAYERS"]:
        report = validate_cog(path)
        assert report.valid, (path, report.errors)
    check_ndvi(tmp_path / "out" / job_id / "32TMT_2024-06-01_ndvi.tif",
               catalog.parent / "32TMT_2024-06-01")

    # boto3 for QGIS: from the private folder, and nothing QGIS had was replaced
    assert aws["ok"], aws.get("traceback")
    got = aws["result"]
    assert got["had"] == {"boto3": False, "rasterio": False}  # until the AWS backend asks
    assert got["missing"] is None and got["replaced"] == []
    libs = str(profile / "rsbatch" / "aws-libs")
    assert got["files"]["boto3"].startswith(libs) and got["files"]["botocore"].startswith(libs)
    for own in ("dateutil", "urllib3", "six", "numpy"):
        assert got["files"][own].startswith("/usr/lib/python3/"), got["files"][own]
    installed = {p.name.split("-")[0] for p in Path(libs).iterdir()}
    assert not installed & {"dateutil", "urllib3", "six", "numpy", "python_dateutil"}


def check_ndvi(path: Path, scene: Path) -> None:
    """The output's pixels against DESIGN.md's NDVI of the input DNs (offset −0.1)."""
    import rasterio
    from rasterio.windows import from_bounds

    with rasterio.open(path) as out:
        ndvi = out.read(1)
        bounds, shape = out.bounds, out.shape
        assert out.crs.to_epsg() == 32632 and out.res == (10.0, 10.0)
    bands = {}
    for name in ("B04", "B08"):
        with rasterio.open(scene / f"{name}.tif") as src:
            window = from_bounds(*bounds, transform=src.transform).round_offsets()
            bands[name] = src.read(1, window=window.round_lengths(), boundless=True,
                                   fill_value=0).astype(np.float64)[: shape[0], : shape[1]]
    red = np.maximum(bands["B04"] * 0.0001 - 0.1, 0)
    nir = np.maximum(bands["B08"] * 0.0001 - 0.1, 0)
    with np.errstate(all="ignore"):
        want = (nir - red) / (nir + red)
    valid = np.isfinite(ndvi)
    assert valid.mean() > 0.3
    np.testing.assert_allclose(ndvi[valid], want[valid], atol=2e-6)


def test_offline_without_a_wheelhouse_says_what_is_missing(plugin_zip, sample, tmp_path):
    home = tmp_path / "home"
    profile = install(plugin_zip, home)
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    steps = qgis_session(home, [
        {"do": "algorithm", "id": "rsbatch:setupworker", "params": {}},
        runjob(tmp_path / "out", sample["catalog"], [1]),
        {"do": "algorithm", "id": "rsbatch:resolvetiles",
         "params": {"EXTENT": SAMPLE_EXTENT, "OUTPUT": "memory:"}},
    ], empty)
    setup, job, tiles = steps
    assert not setup["ok"]
    error = setup["error"]
    assert "the worker environment was not set up: pip could not get numpy" in error
    assert "PIP_NO_INDEX=1" in error and "nothing was installed" in error
    folder = profile / "rsbatch" / "worker-env"
    assert f"By hand: {QGIS_PYTHON} -m venv {folder} && {folder}/bin/python -m pip " \
           "install -r" in error
    assert "traceback" not in setup
    # nothing half-installed, and nothing that a job would pick up
    assert sorted(p.name for p in (profile / "rsbatch").iterdir()) == []
    assert not job["ok"] and "set up the worker environment" in job["error"]
    # QGIS (and the plugin) still work
    assert tiles["ok"] and tiles["result"]["TILES"] == "32TMT,32TNT"
