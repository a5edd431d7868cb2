"""Bad input: a clear one-line error, a FAILED record with the reason, and nothing half-written.

Most cases run the real `rsbatch-worker` command, as AWS Batch and the local backend do.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from qgis_rsbatch.core.contract import Status
from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog
from tests.worker.test_process import AOI


def run_worker(*args, env=None, user=None):
    command = [sys.executable, "-m", "worker.cli", *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, check=False)


def cell_json(bands, out, **fields):
    return {"job_id": "bad", "tile": "32TMT", "date": "2024-06-01", "bands": bands,
            "products": ["rgb", "ndvi"], "output": str(out), "offset": -0.1, **fields}


def assert_failed(tmp_path, proc, code, message, task_id="bad#32TMT_2024-06-01"):
    assert proc.returncode == code, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "rsbatch-worker: error:" in line]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    record = SqliteTaskLog(str(tmp_path / "log.sqlite")).get(task_id)
    assert record is not None and record.status is Status.FAILED
    assert message in record.error
    out = tmp_path / "out"
    leftovers = [p for p in out.rglob("*")] if out.exists() else []
    assert [p for p in leftovers if p.is_file()] == [], leftovers   # nothing, not even scratch


def _run(tmp_path, cell, **kwargs):
    path = tmp_path / "cell.json"
    path.write_text(json.dumps(cell))
    return run_worker("--task-log", f"sqlite://{tmp_path / 'log.sqlite'}", "run", str(path),
                      **kwargs)


@pytest.mark.parametrize(("change", "message"), [
    ({"products": ["rgb", "lai"]}, "cell field 'products': unknown product(s) lai; known: rgb"),
    ({"date": "2024-13-01"}, "cell field 'date' '2024-13-01' is not a date"),
    ({"tile": "99ZZZ"}, "'99ZZZ' is not a Sentinel-2 tile id"),
    ({"bands": {"red": "a.tif"}}, "cell field 'bands.blue' is missing"),
    ({"cloudmask": True}, "cell has unknown field(s): cloudmask"),
    ({"scale": "0.0001"}, "cell field 'scale' must be a finite number"),
])
def test_invalid_cell_json_names_the_field(tmp_path, scene, change, message):
    cell = {**cell_json(scene, tmp_path / "out"), **change}
    proc = _run(tmp_path, cell)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"rsbatch-worker: error: {message}" \
        or message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_not_json_at_all(tmp_path):
    (tmp_path / "cell.json").write_text("{not json")
    proc = run_worker("run", str(tmp_path / "cell.json"))
    assert proc.returncode == 2 and "cell is not valid JSON" in proc.stderr


def test_missing_band(tmp_path, scene):
    bands = {**scene, "nir": str(tmp_path / "nowhere" / "B08.tif")}
    proc = _run(tmp_path, cell_json(bands, tmp_path / "out"))
    assert_failed(tmp_path, proc, 2, f"band nir ({bands['nir']}) does not exist")


def test_corrupt_raster(tmp_path, scene):
    broken = tmp_path / "B04.tif"
    broken.write_bytes(b"II*\x00" + os.urandom(5000))
    proc = _run(tmp_path, cell_json({**scene, "red": str(broken)}, tmp_path / "out"))
    assert_failed(tmp_path, proc, 2, f"band red ({broken}) is not a readable raster")


def test_truncated_raster_fails_while_reading(tmp_path, scene):
    truncated = tmp_path / "B08.tif"
    with open(scene["nir"], "rb") as fh:
        data = fh.read()
    truncated.write_bytes(data[: len(data) // 2])
    proc = _run(tmp_path, cell_json({**scene, "nir": str(truncated)}, tmp_path / "out"))
    assert_failed(tmp_path, proc, 2, f"band nir ({truncated}) is not a readable raster")
    assert "See previous exception" not in proc.stderr
    assert "Read error at" in proc.stderr  # GDAL's own words (libtiff's short read)


def test_a_damaged_tile_in_a_band_names_the_band_href_and_gdal_message(tmp_path, scene):
    damaged = tmp_path / "B04.tif"
    shutil.copy(scene["red"], damaged)
    _damage_one_tile(damaged)
    proc = _run(tmp_path, cell_json({**scene, "red": str(damaged)}, tmp_path / "out"))
    assert_failed(tmp_path, proc, 2, f"band red ({damaged}) is not a readable raster: ")
    assert "See previous exception" not in proc.stderr
    assert "incorrect header check" in proc.stderr  # zlib's complaint, passed on by GDAL
    record = SqliteTaskLog(str(tmp_path / "log.sqlite")).get("bad#32TMT_2024-06-01")
    assert "incorrect header check" in record.error


def test_bands_on_different_grids(tmp_path, scene, scene_factory):
    shifted = scene_factory(size=1000, origin=(399970.0, 5300040.0), epsg=32632, seed=3)
    proc = _run(tmp_path, cell_json({**scene, "nir": shifted["nir"]}, tmp_path / "out"))
    assert_failed(tmp_path, proc, 2, "bands are on different grids")
    assert "399970" in proc.stderr


def test_aoi_outside_the_tile(tmp_path, scene):
    far = {"type": "Polygon", "coordinates": [[[20, 10], [20.1, 10], [20.1, 10.1], [20, 10]]]}
    proc = _run(tmp_path, cell_json(scene, tmp_path / "out", aoi=far))
    assert_failed(tmp_path, proc, 2, "the AOI does not overlap tile 32TMT")


def test_unreachable_href(tmp_path, scene):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    href = f"http://127.0.0.1:{port}/B04.tif"
    proc = _run(tmp_path, cell_json({**scene, "red": href}, tmp_path / "out"),
                env={"GDAL_HTTP_MAX_RETRY": "0"})
    assert_failed(tmp_path, proc, 1, f"band red ({href}) is unreachable")


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0,
                    reason="needs root to run the worker as an unprivileged user")
def test_no_permission_to_write_the_output(scene):
    probe = run_worker("--help", user=65534)
    if probe.returncode != 0:  # e.g. the checkout sits in a folder private to root
        pytest.skip("the unprivileged user cannot run this checkout's worker: "
                    + probe.stderr.strip()[-200:])
    # pytest's tmp folders are private to root: build a world-readable one for the user
    root = tempfile.mkdtemp(prefix="rsbatch-perm-")
    try:
        os.chmod(root, 0o755)
        bands = {}
        for key, path in scene.items():
            bands[key] = shutil.copy(path, os.path.join(root, os.path.basename(path)))
        readonly = os.path.join(root, "out")
        os.mkdir(readonly, 0o755)
        home = os.path.join(root, "home")
        os.mkdir(home)
        os.chmod(home, 0o777)
        log = os.path.join(home, "log.sqlite")
        cell = json.dumps(cell_json(bands, os.path.join(readonly, "sub")))
        proc = run_worker("--task-log", f"sqlite://{log}", "run", cell,
                          env={"RSBATCH_HOME": home}, user=65534)
        assert proc.returncode == 2, proc.stderr
        assert f"cannot write the output folder {readonly}/sub/bad" in proc.stderr
        assert "permission denied" in proc.stderr
        record = SqliteTaskLog(log).get("bad#32TMT_2024-06-01")
        assert record.status is Status.FAILED and "permission denied" in record.error
    finally:
        shutil.rmtree(root)


def test_a_failed_cell_can_be_retried_and_then_succeeds(tmp_path, scene):
    bands = {**scene, "nir": str(tmp_path / "later" / "B08.tif")}
    assert _run(tmp_path, cell_json(bands, tmp_path / "out")).returncode == 2
    (tmp_path / "later").mkdir()
    shutil.copy(scene["nir"], tmp_path / "later" / "B08.tif")
    proc = _run(tmp_path, cell_json(bands, tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    record = SqliteTaskLog(str(tmp_path / "log.sqlite")).get("bad#32TMT_2024-06-01")
    assert record.status is Status.SUCCEEDED and record.attempts == 2 and record.error is None
    assert json.loads(proc.stdout)["outputs"]["ndvi"].endswith("32TMT_2024-06-01_ndvi.tif")


def test_no_arguments_and_no_seed_environment_is_a_usage_error():
    proc = run_worker(env={"files": ""})
    assert proc.returncode == 2 and "nothing to do" in proc.stderr


def test_check_command_reports_layout(tmp_path, scene):
    proc = _run(tmp_path, cell_json(scene, tmp_path / "out", aoi=AOI))
    assert proc.returncode == 0, proc.stderr
    ndvi = json.loads(proc.stdout)["outputs"]["ndvi"].removeprefix("file://")
    report = json.loads(run_worker("check", ndvi).stdout)
    assert report["valid"] is True and report["blocksize"] == [512, 512]
    assert run_worker("check", scene["red"]).returncode == 0


# --- the checker and the skip path on real damaged outputs -----------------------------------
def _damage_one_tile(path):
    """Overwrite the data of one full-resolution tile in place (size and leaders kept)."""
    from worker import tiff

    with open(path, "rb") as fh:
        info = tiff.read_structure(fh)
    main = info.ifds[0]
    offset, size = next((o, c) for o, c in zip(main.array(tiff.TAG_TILE_OFFSETS),
                                               main.array(tiff.TAG_TILE_COUNTS)) if c > 64)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write((b"\xde\xad\xbe\xef" * size)[:size])


@pytest.fixture
def finished_cell(tmp_path, scene):
    """A cell run by the real worker: (its cell JSON, {product: output path})."""
    cell = cell_json(scene, tmp_path / "out")
    proc = _run(tmp_path, cell)
    assert proc.returncode == 0, proc.stderr
    outputs = {p: uri.removeprefix("file://")
               for p, uri in json.loads(proc.stdout)["outputs"].items()}
    return cell, outputs


@pytest.mark.parametrize(("damage", "message"), [
    ("half", "tiles lie beyond the end of the file"),
    ("stub_1mb", "tiles lie beyond the end of the file"),
    ("header_only", "the file ends inside"),
    ("garbage", "not a TIFF file"),
    ("tile", "the full-resolution image does not decode: "),
])
def test_check_refuses_damaged_outputs_in_one_line(tmp_path, finished_cell, damage, message):
    _, outputs = finished_cell
    good = outputs["rgb"]
    assert os.path.getsize(good) > 2 << 20  # the 1 MB stub below is a real prefix
    assert run_worker("check", good).returncode == 0
    bad = tmp_path / f"{damage}.tif"
    data = Path(good).read_bytes()
    if damage == "half":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "stub_1mb":
        bad.write_bytes(data[: 1 << 20])
    elif damage == "header_only":
        bad.write_bytes(data[:300])
    elif damage == "garbage":
        bad.write_bytes(os.urandom(len(data) // 4))
    else:
        shutil.copy(good, bad)
        _damage_one_tile(bad)
        assert os.path.getsize(bad) == len(data)
    proc = run_worker("check", str(bad))
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("rsbatch-worker:")]
    assert lines == [f"rsbatch-worker: {bad} is not a valid COG: {lines[0].split(': ', 2)[2]}"]
    assert message in lines[0] and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["valid"] is False


def test_check_of_a_missing_file_is_bad_input(tmp_path):
    proc = run_worker("check", str(tmp_path / "nothing.tif"))
    assert proc.returncode == 2 and "nothing.tif does not exist" in proc.stderr


@pytest.mark.parametrize("damage", ["truncate", "tile"])
def test_a_damaged_final_output_is_made_again_not_trusted(tmp_path, finished_cell, damage):
    cell, outputs = finished_cell
    ndvi = outputs["ndvi"]
    if damage == "truncate":
        with open(ndvi, "r+b") as fh:
            fh.truncate(os.path.getsize(ndvi) // 2)
    else:
        _damage_one_tile(ndvi)
    assert run_worker("check", ndvi).returncode == 1
    proc = _run(tmp_path, cell)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["skipped"] is False
    assert run_worker("check", ndvi).returncode == 0
    # and once whole again, the next run trusts it
    assert json.loads(_run(tmp_path, cell).stdout)["skipped"] is True


# --- a cell whose tile and bands disagree ------------------------------------------------------
def test_bands_of_another_tile_are_refused_naming_both(tmp_path, scene):
    # 32TNT's cell given 32TMT's bands (a crop at 32TMT's origin, outside 32TNT)
    proc = _run(tmp_path, cell_json(scene, tmp_path / "out", tile="32TNT"),)
    assert_failed(tmp_path, proc, 2, "the cell's tile 32TNT (EPSG:32632, 10 m grid from "
                  "(499980, 5300040)) does not match its bands", task_id="bad#32TNT_2024-06-01")
    assert "which is tile 32TMT's grid" in proc.stderr
    assert not (tmp_path / "out" / "bad" / "32TNT_2024-06-01.json").exists()


def test_bands_in_another_zone_are_refused_naming_both_crs(tmp_path, scene_factory):
    bands = scene_factory(size=600, tile="39QTA", seed=5)
    cell = {**cell_json(bands, tmp_path / "out"), "tile": "32TMT"}
    proc = _run(tmp_path, cell)
    assert_failed(tmp_path, proc, 2, "the cell's tile 32TMT (EPSG:32632", )
    assert "EPSG:32639" in proc.stderr and "which is tile 39QTA's grid" in proc.stderr


def test_bands_off_the_tiles_pixel_grid_are_refused(tmp_path, scene_factory):
    # inside 32TMT, in its CRS, but 5 m off its 10 m grid
    bands = scene_factory(size=600, origin=(400005.0, 5300035.0), epsg=32632, seed=6)
    proc = _run(tmp_path, cell_json(bands, tmp_path / "out"))
    assert_failed(tmp_path, proc, 2, "the cell's tile 32TMT")
    assert "which is no tile's grid" in proc.stderr


def test_a_crop_of_the_tile_on_its_grid_is_accepted(tmp_path, scene_factory):
    bands = scene_factory(size=600, origin=(450000.0, 5250000.0), epsg=32632, seed=7)
    proc = _run(tmp_path, cell_json(bands, tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr


# --- a full disk --------------------------------------------------------------------------------
@pytest.mark.parametrize("size", ["1m", "3m", "6m"])  # fails in GDAL's writes, or in assembly
def test_a_full_disk_is_named_with_the_space_needed(tmp_path, scene, small_disk, size):
    disk = small_disk(size)
    proc = _run(tmp_path, cell_json(scene, disk / "out"))
    # 1000 × 1000 px of RGB (3 × 2 bytes) and NDVI (4 bytes), plus a third for overviews
    message = f"no space left on {disk} (tmpfs) writing {disk}/out/bad: about 13 MB needed"
    assert_failed(tmp_path, proc, 1, message)
    assert "internal error" not in proc.stderr
    assert [p for p in disk.rglob("*") if p.is_file()] == []  # no scratch, nothing partial
    # once there is room, the same cell succeeds
    subprocess.run(["mount", "-o", "remount,size=32m", str(disk)], check=True)
    proc = _run(tmp_path, cell_json(scene, disk / "out"))
    assert proc.returncode == 0, proc.stderr
    assert run_worker("check", json.loads(proc.stdout)["outputs"]["rgb"][7:]).returncode == 0


def test_real_items_bands_fit_their_own_tile_and_no_neighbour():
    """The tile check against the proj:transform of real Earth Search items (six zones, both
    hemispheres): each item's 10 m grid is its own tile's, never its neighbour's."""
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    from qgis_rsbatch.core.errors import InvalidInput
    from tests.core.conftest import real_items_path
    from worker.reader import Grid, check_on_tile

    path = real_items_path()
    if path is None:
        pytest.skip("real Earth Search items not present (../shared/real-data)")
    items = json.loads(Path(path).read_text())["features"]
    tiles = []
    for item in items:
        p = item["properties"]
        tiles.append(f"{p['mgrs:utm_zone']}{p['mgrs:latitude_band']}{p['mgrs:grid_square']}")
    for item, tile in zip(items, tiles):
        red = item["assets"].get("red") or item["assets"]["B04"]
        rows, cols = red["proj:shape"]
        grid = Grid(CRS.from_epsg(item["properties"]["proj:epsg"]),
                    Affine(*red["proj:transform"][:6]), cols, rows)
        check_on_tile(grid, tile)
        for other in sorted(set(tiles) - {tile}):  # neighbours in its zone, and other zones
            with pytest.raises(InvalidInput, match=f"which is tile {tile}'s grid"):
                check_on_tile(grid, other)
