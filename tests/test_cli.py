"""`rsbatch` as a user runs it: a real process, its output, its exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest


def rsbatch(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "qgis_rsbatch.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, **(env or {})})


def test_tiles_as_json_for_a_bbox_in_another_crs():
    proc = rsbatch("tiles", "--aoi", "500000,5280000,505000,5285000", "--aoi-crs", "EPSG:32632")
    assert proc.returncode == 0, proc.stderr
    tiles = json.loads(proc.stdout)
    assert [t["tile"] for t in tiles] == ["32TMT", "32TNT"]
    assert tiles[0]["epsg"] == 32632 and tiles[0]["origin"] == [399960.0, 5300040.0]
    assert tiles[0]["footprint"]["type"] == "Polygon"


def test_search_lists_scenes(sample_catalog, tmp_path):
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": sample_catalog["aoi"]}]}))
    proc = rsbatch("search", "--aoi", str(aoi), "--start", "2024-06-01", "--end", "2024-06-05",
                   "--catalog", sample_catalog["catalog"])
    assert proc.returncode == 0, proc.stderr
    scenes = json.loads(proc.stdout)
    assert [(s["tile"], s["date"]) for s in scenes] == [("32TMT", "2024-06-01"),
                                                        ("32TNT", "2024-06-01")]
    assert scenes[0]["offset"] == -0.1 and scenes[0]["bands"]["nir"].endswith("B08.tif")


def test_run_then_status_from_anywhere(sample_catalog, tmp_path):
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps(sample_catalog["aoi"]))
    proc = rsbatch("run", "--aoi", str(aoi), "--start", sample_catalog["start"],
                   "--end", sample_catalog["end"], "--catalog", sample_catalog["catalog"],
                   "--products", "ndvi", "--max-cloud", "100", "--no-mosaic", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.splitlines()[0]
    assert job_id.startswith("rsb-")
    assert "4 succeeded" in proc.stdout and "4/4 cells" in proc.stderr
    # a run does not stop to estimate (that is what --dry-run is for)
    assert "4 cell(s) on 2 tile(s) (`--dry-run` estimates" in proc.stderr
    assert "vCPU-hours" not in proc.stderr
    outputs = sorted(p.name for p in (tmp_path / "rsbatch-output" / job_id).glob("*.tif"))
    assert outputs == ["32TMT_2024-06-01_ndvi.tif", "32TMT_2024-06-11_ndvi.tif",
                       "32TNT_2024-06-01_ndvi.tif", "32TNT_2024-06-11_ndvi.tif"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status = rsbatch("status", job_id, "--json", cwd=elsewhere)
    assert status.returncode == 0
    data = json.loads(status.stdout)
    assert data["counts"]["SUCCEEDED"] == 4 and data["finished"]
    assert {c["Status"] for c in data["cells"]} == {"SUCCEEDED"}
    table = rsbatch("status", job_id, cwd=elsewhere).stdout
    assert "32TNT_2024-06-11  SUCCEEDED" in table
    assert job_id in rsbatch("jobs").stdout


def test_run_makes_mosaics_and_a_composite_and_status_lists_them(sample_catalog, tmp_path):
    proc = rsbatch("run", "--aoi", json.dumps(sample_catalog["aoi"]), "--start",
                   sample_catalog["start"], "--end", sample_catalog["end"], "--catalog",
                   sample_catalog["catalog"], "--products", "ndvi", "--composite", "median",
                   "--composite-period", "month", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.splitlines()[0]
    assert "4 cell(s) on 2 tile(s) and 3 mosaic/composite unit(s)" in proc.stderr
    assert "7/7 cells and units" in proc.stderr
    assert "7 succeeded (4 cell(s), 3 mosaic/composite unit(s))" in proc.stdout
    folder = tmp_path / "rsbatch-output" / job_id
    assert sorted(p.name for p in (folder / "mosaic").glob("*.tif")) == [
        "2024-06-01_ndvi.tif", "2024-06-11_ndvi.tif"]
    assert [p.name for p in (folder / "composite").glob("*.tif")] == [
        "2024-06-01_2024-06-11_ndvi_median.tif"]
    table = rsbatch("status", job_id).stdout
    assert table.splitlines()[0].startswith("CELL OR UNIT")
    rows = {line.split()[0]: line.split()[1] for line in table.splitlines()[1:-1]}
    # listed as the dock lists them: cells, then mosaics by date, then the composite
    assert list(rows)[4:] == ["mosaic_2024-06-01_ndvi", "mosaic_2024-06-11_ndvi",
                              "composite_2024-06-01_2024-06-11_ndvi_median"]
    assert rows["mosaic_2024-06-11_ndvi"] == "SUCCEEDED"
    assert rows["composite_2024-06-01_2024-06-11_ndvi_median"] == "SUCCEEDED"
    data = json.loads(rsbatch("status", job_id, "--json").stdout)
    kinds = sorted(c.get("Kind", "cell") for c in data["cells"])
    assert kinds == ["cell"] * 4 + ["composite"] + ["mosaic"] * 2
    log = rsbatch("logs", job_id, "mosaic_2024-06-11_ndvi")
    assert log.returncode == 0, log.stderr
    assert "attempt started by the rsbatch supervisor" in log.stdout
    assert '"unit_id": "mosaic_2024-06-11_ndvi"' in log.stdout  # the worker's own last line


def test_dry_run_lists_units_in_the_crs_asked_and_bad_options_are_one_line(sample_catalog,
                                                                            tmp_path):
    base = ("run", "--aoi", json.dumps(sample_catalog["aoi"]), "--start", "2024-06-01",
            "--end", "2024-06-30", "--catalog", sample_catalog["catalog"], "--dry-run")
    proc = rsbatch(*base, "--mosaic-crs", "EPSG:32633", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert [u["unit_id"] for u in plan["units"]] == [
        "mosaic_2024-06-01_ndvi", "mosaic_2024-06-01_rgb", "mosaic_2024-06-11_ndvi",
        "mosaic_2024-06-11_rgb"]
    assert plan["estimate"]["units"] == 4 and "4 mosaic/composite unit(s)" in plan["summary"]
    cells_only = json.loads(rsbatch(*base, "--no-mosaic", cwd=tmp_path).stdout)
    assert cells_only["units"] == [] and cells_only["estimate"]["units"] == 0
    for key in ("vcpu_hours", "input_gb", "output_gb"):  # the mosaics cost something too
        assert plan["estimate"][key] > cells_only["estimate"][key]
    assert plan["estimate"]["pixels"] == cells_only["estimate"]["pixels"]
    for option, message in [(("--mosaic-crs", "UTM32"), "mosaic CRS 'UTM32' must be an EPSG"),
                            (("--composite-period", "0d"), "composite period '0d' must be")]:
        bad = rsbatch(*base, *option, "--composite", "median", cwd=tmp_path)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
        assert bad.stderr.startswith("rsbatch: error: ") and message in bad.stderr


def test_dry_run_prints_plan_and_estimate(sample_catalog, tmp_path):
    proc = rsbatch("run", "--aoi", json.dumps(sample_catalog["aoi"]), "--start", "2024-06-01",
                   "--end", "2024-06-30", "--catalog", sample_catalog["catalog"], "--dry-run",
                   "--exclude", "32TMT_2024-06-11", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["tiles"] == ["32TMT", "32TNT"] and len(plan["cells"]) == 3
    assert plan["estimate"]["cells"] == 3 and "vCPU-hours" in plan["summary"]
    assert not (tmp_path / "rsbatch-output").exists()


def test_some_cells_failing_exits_1(sample_catalog, tmp_path):
    copy = tmp_path / "catalog"
    shutil.copytree(os.path.dirname(sample_catalog["catalog"]), copy)
    os.remove(copy / "32TNT_2024-06-11" / "B08.tif")
    proc = rsbatch("run", "--aoi", json.dumps(sample_catalog["aoi"]), "--start", "2024-06-01",
                   "--end", "2024-06-30", "--catalog", str(copy / "catalog.json"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "32TNT_2024-06-11 FAILED: band nir" in proc.stderr
    # that date's mosaics still run, on the tile that succeeded
    assert "7 succeeded, 1 failed (4 cell(s), 4 mosaic/composite unit(s))" in proc.stdout
    assert "lacking (failed or skipped): 32TNT_2024-06-11" in proc.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--start", "2024-06-11", "--end", "2024-06-01"], "the date range is empty"),
    (["--start", "2023-01-01", "--end", "2023-01-02"], "no Sentinel-2 scene of tile(s)"),
])
def test_bad_input_exits_2_with_one_line(sample_catalog, tmp_path, args, message):
    proc = rsbatch("run", "--aoi", json.dumps(sample_catalog["aoi"]), *args,
                   "--catalog", sample_catalog["catalog"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert proc.stderr.startswith("rsbatch: error: ")


@pytest.mark.parametrize(("aoi", "message"), [
    ("0,85,10,88", "Sentinel-2 tiles cover 80°S to 84°N"),
    ("POLYGON((1 2, 3 4", "WKT"),
    ("10,20,5,21,7", "bbox"),
])
def test_bad_aois(aoi, message):
    proc = rsbatch("tiles", "--aoi", aoi)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_job():
    proc = rsbatch("status", "rsb-nope")
    assert proc.returncode == 2 and "no job rsb-nope on this machine" in proc.stderr


def test_unreachable_catalog_is_a_clear_error(tmp_path):
    proc = rsbatch("search", "--aoi", "9,47.6,9.1,47.7", "--start", "2024-06-01",
                   "--end", "2024-06-02", "--catalog", "http://127.0.0.1:9/stac")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "127.0.0.1:9" in proc.stderr


def test_detached_run_cancel_and_resume(sample_catalog, tmp_path):
    slow = tmp_path / "slow-python"
    slow.write_text(f"#!/bin/bash\nif [ \"$2\" = worker.cli ]; then sleep 30; fi\n"
                    f"exec {sys.executable} \"$@\"\n")
    slow.chmod(0o755)
    env = {"RSBATCH_WORKER_PYTHON": str(slow)}
    proc = rsbatch("run", "--aoi", json.dumps(sample_catalog["aoi"]), "--start", "2024-06-01",
                   "--end", "2024-06-30", "--catalog", sample_catalog["catalog"], "--detach",
                   "--workers", "1", "--no-mosaic", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.split()[0]
    cancelled = rsbatch("cancel", job_id, env=env)
    assert cancelled.returncode == 0 and "4 cancelled" in cancelled.stdout
    resumed = rsbatch("resume", job_id)
    assert resumed.returncode == 0, resumed.stderr
    assert "4 succeeded" in resumed.stdout


# --- AOIs and arguments the way users type them ------------------------------------------------
NEW_YORK = "-74.1,40.6,-73.9,40.8"  # west of Greenwich: the first number is negative


@pytest.mark.parametrize("form", [["--aoi", NEW_YORK], [f"--aoi={NEW_YORK}"],
                                  ["--aoi", "-74.1 40.6 -73.9 40.8"]])
def test_tiles_takes_a_bbox_starting_with_a_minus_sign(form):
    proc = rsbatch("tiles", *form)
    assert proc.returncode == 0, proc.stderr
    assert [t["tile"] for t in json.loads(proc.stdout)] == ["18TWK", "18TWL"]


def test_tiles_takes_a_southern_bbox_and_a_negative_projected_bbox():
    proc = rsbatch("tiles", "--aoi", "-39.5,-4.8,-39.3,-4.6")
    assert proc.returncode == 0, proc.stderr
    assert [t["tile"] for t in json.loads(proc.stdout)] == ["24MVA", "24MVV"]
    # metres west of the false easting's origin are negative too (EPSG:3857 here)
    proc = rsbatch("tiles", "--aoi", "-8249000,4960000,-8248000,4961000",
                   "--aoi-crs", "EPSG:3857")
    assert proc.returncode == 0, proc.stderr
    assert "18TWL" in [t["tile"] for t in json.loads(proc.stdout)]


@pytest.mark.parametrize("command", ["search", "run"])
def test_search_and_run_take_a_bbox_starting_with_a_minus_sign(sample_catalog, tmp_path,
                                                               command):
    # the sample catalog holds zone 32 only: reaching the planner with New York's tiles
    # proves the AOI got through the argument parser intact
    proc = rsbatch(command, "--aoi", NEW_YORK, "--start", "2024-06-01", "--end", "2024-06-11",
                   "--catalog", sample_catalog["catalog"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "expected one argument" not in proc.stderr
    assert "no Sentinel-2 scene of tile(s) 18TWK, 18TWL" in proc.stderr


@pytest.mark.parametrize("workers", ["-3", "0", "two"])
def test_workers_must_be_a_positive_whole_number(sample_catalog, tmp_path, workers):
    proc = rsbatch("run", "--aoi", json.dumps(sample_catalog["aoi"]), "--start", "2024-06-01",
                   "--end", "2024-06-11", "--catalog", sample_catalog["catalog"],
                   "--workers", workers, cwd=tmp_path)
    assert proc.returncode == 2
    assert "argument --workers:" in proc.stderr.splitlines()[-1]
    assert not (tmp_path / "rsbatch-output").exists()


@pytest.mark.parametrize(("aoi", "where"), [
    ("POLYGON ((-74.1 40.6, -73.9 40.8, -73.9 40.6, -74.1 40.7, -74.1 40.6))",
     "-74.033333, 40.666667"),
    ("POLYGON ((8 47, 9 48, 9 47, 8 48, 8 47))", "8.5, 47.5"),
])
def test_self_intersecting_aoi_exits_2_naming_the_crossing(aoi, where):
    proc = rsbatch("tiles", "--aoi", aoi)
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.count("\n") == 1 and f"self-intersecting at {where}" in proc.stderr


# --- a --catalog that is not a catalog is bad input ----------------------------------------
@pytest.mark.parametrize(("name", "content", "message"), [
    ("empty.json", b"", "is empty"),
    ("blank.json", b"  \n", "is empty"),
    ("page.html", b"<!DOCTYPE html><html><body>Not found</body></html>",
     "is not JSON (it looks like HTML)"),
    ("broken.json", b'{"type": "Catalog", ', "is not JSON"),
    ("binary.json", b"\xff\xfe\x00\x01garbage", "is not JSON (it is not even text)"),
    ("other.json", b'{"name": "my settings", "debug": true}',
     "is neither a STAC API, a static catalog nor an ItemCollection"),
    ("list.json", b"[1, 2, 3]", "is not a STAC document (a JSON object)"),
    ("folder", None, "is a folder without catalog.json or collection.json"),
])
def test_a_catalog_that_is_not_stac_exits_2(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        path.mkdir()
        (path / "notes.txt").write_text("no catalog here")
    else:
        path.write_bytes(content)
    for command in ("search", "run"):
        proc = rsbatch(command, "--aoi", "9,47.6,9.1,47.7", "--start", "2024-06-01",
                       "--end", "2024-06-02", "--catalog", str(path), cwd=tmp_path)
        assert proc.returncode == 2, (command, proc.stderr)
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
        assert str(path) in proc.stderr and "Traceback" not in proc.stderr


def test_max_aoi_cloud_skips_cloudy_cells_and_still_exits_0(sample_catalog, tmp_path):
    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps(sample_catalog["aoi"]))
    common = ("--aoi", str(aoi), "--start", sample_catalog["start"], "--end",
              sample_catalog["end"], "--catalog", sample_catalog["catalog"], "--products",
              "ndvi", "--max-cloud", "100", "--no-mosaic")
    first = rsbatch("run", *common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    cells = json.loads(rsbatch("status", first.stdout.splitlines()[0], "--json").stdout)["cells"]
    shares = {c["CellId"]: c["AoiMaskedPct"] for c in cells}  # every record carries it
    assert len(shares) == 4 and all(0 <= v <= 100 for v in shares.values())
    limit = (min(shares.values()) + max(shares.values())) / 2
    cloudy = sorted(cell for cell, share in shares.items() if share > limit)
    assert cloudy and len(cloudy) < 4

    proc = rsbatch("run", *common, "--max-aoi-cloud", f"{limit:.3f}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # skipped cells are done, not failures
    job_id = proc.stdout.splitlines()[0]
    assert f"{len(cloudy)} skipped" in proc.stderr and "4/4 cells" in proc.stderr
    for cell in cloudy:
        line = next(row for row in proc.stdout.splitlines() if row.startswith(cell))
        assert "SKIPPED" in line and f"masked > {limit:.3f} %" in line
        assert f"{shares[cell]:.1f} %" in line
    outputs = sorted(p.name.removesuffix("_ndvi.tif")
                     for p in (tmp_path / "rsbatch-output" / job_id).glob("*.tif"))
    assert outputs == sorted(set(shares) - set(cloudy))
    resumed = rsbatch("resume", job_id)
    assert resumed.returncode == 0, resumed.stderr
    status = json.loads(rsbatch("status", job_id, "--json").stdout)
    assert status["counts"]["SKIPPED"] == len(cloudy) and status["finished"]
    assert all(c["Attempts"] == 1 for c in status["cells"])  # resume re-ran nothing


@pytest.mark.parametrize("mosaic", [True, False], ids=["mosaic", "no-mosaic"])
def test_stats_rows_by_date_match_numpy_on_the_outputs(sample_catalog, tmp_path, mosaic):
    """With mosaics (the default) a date has one row per index, computed on the mosaic
    (each ground pixel once); with --no-mosaic, one row per tile."""
    import numpy as np
    import rasterio

    aoi = tmp_path / "aoi.geojson"
    aoi.write_text(json.dumps(sample_catalog["aoi"]))
    run = rsbatch("run", "--aoi", str(aoi), "--start", sample_catalog["start"], "--end",
                  sample_catalog["end"], "--catalog", sample_catalog["catalog"], "--products",
                  "ndvi,ndmi", "--max-cloud", "100", *([] if mosaic else ["--no-mosaic"]),
                  cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    job_id = run.stdout.splitlines()[0]
    proc = rsbatch("stats", job_id, "--json", "--csv", str(tmp_path / "stats.csv"))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    tiles = ("mosaic",) if mosaic else ("32TMT", "32TNT")
    assert [(r["date"], r["tile"], r["product"]) for r in rows] == [
        (d, t, p) for d in ("2024-06-01", "2024-06-11") for t in tiles
        for p in ("ndvi", "ndmi")]
    assert f"{len(rows)} row(s) written to" in proc.stderr
    csv_lines = (tmp_path / "stats.csv").read_text().splitlines()
    assert csv_lines[0].startswith("tile,date,product,status,valid_pixels") and len(
        csv_lines) == len(rows) + 1
    folder = tmp_path / "rsbatch-output" / job_id
    for row in rows:
        path = (folder / "mosaic" / f"{row['date']}_{row['product']}.tif" if mosaic else
                folder / f"{row['tile']}_{row['date']}_{row['product']}.tif")
        with rasterio.open(path) as ds:
            values = ds.read(1)
        valid = values[~np.isnan(values)].astype(np.float64)
        assert row["valid_pixels"] == valid.size and row["status"] == "SUCCEEDED"
        assert row["mean"] == pytest.approx(valid.mean(), rel=1e-9)
        assert row["std"] == pytest.approx(valid.std(), rel=1e-9)
        for name, q in (("p10", 10), ("median", 50), ("p90", 90)):
            assert abs(row[name] - np.percentile(valid, q)) <= 1e-5 + 1e-12
        assert row["valid_fraction"] == pytest.approx(valid.size / row["aoi_pixels"])
    table = rsbatch("stats", job_id).stdout.splitlines()
    assert table[0].split()[:4] == ["DATE", "TILE", "PRODUCT", "STATUS"]
    assert len(table) == len(rows) + 1
    unknown = rsbatch("stats", "rsb-nope")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
