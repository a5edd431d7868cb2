"""Remote band sources: COGs over HTTPS with ranged reads, S3 through moto, the seed's input."""

from __future__ import annotations

import json
import os

import boto3
import numpy as np
import pytest
import rasterio

from qgis_rsbatch.core.contract import Status
from qgis_rsbatch.core.products import BANDS
from qgis_rsbatch.core.tasklog.dynamodb import DynamoTaskLog
from qgis_rsbatch.core.tasklog.schema import TABLE_NAME, table_shape
from qgis_rsbatch.core.tasklog.sqlite import SqliteTaskLog
from tests.range_server import RangeServer
from tests.worker.test_compute import reference_ndvi
from tests.worker.test_failures import run_worker
from tests.worker.test_process import AOI, fail_assembly, make_cell, read_band, scl_at_10m
from worker.process import process_cell


@pytest.fixture
def big_scene(scene_factory):
    """2048 px in 256 px blocks: the AOI (upper-left 1000 px) needs a fraction of the blocks."""
    return scene_factory(size=2048, blocksize=256, cloud=0.25, seed=3)


@pytest.fixture
def served(big_scene):
    server = RangeServer(os.path.dirname(big_scene["red"]))
    yield server, {k: f"{server.url}/{os.path.basename(p)}" for k, p in big_scene.items()}
    server.close()


def test_https_cog_is_read_with_ranges_not_downloaded(served, big_scene, tmp_path):
    server, hrefs = served
    scene = big_scene
    remote = process_cell(make_cell(hrefs, tmp_path / "remote", aoi=AOI))
    local = process_cell(make_cell(scene, tmp_path / "local", aoi=AOI))
    for product in ("rgb", "ndvi"):
        a, _ = read_band(remote.outputs[product].removeprefix("file://"))
        b, _ = read_band(local.outputs[product].removeprefix("file://"))
        np.testing.assert_array_equal(a, b)
    total = sum(os.path.getsize(p) for p in scene.values())
    assert all(r[2] for r in server.requests if r[0] == "GET"), "every GET is a range request"
    assert server.bytes_sent < total * 0.4, (server.bytes_sent, total)


def test_https_missing_band_is_named(served, tmp_path):
    _, hrefs = served
    hrefs = {**hrefs, "nir": hrefs["nir"].replace("B08", "B8A")}
    with pytest.raises(FileNotFoundError,
                       match=r"band nir \(.*B8A.tif\) does not exist \(HTTP 404\)"):
        process_cell(make_cell(hrefs, tmp_path / "out"))


# --- S3 (a moto server in its own process) --------------------------------------------------

def create_task_table(region="us-east-1"):
    """The task-log table as the stack creates it, for tests (shape from core's schema)."""
    boto3.client("dynamodb", region_name=region).create_table(TableName=TABLE_NAME,
                                                              **table_shape())


def test_s3_bands_and_s3_output(aws_endpoint, scene, tmp_path):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="bands")
    s3.create_bucket(Bucket="results")
    hrefs = {}
    for key, path in scene.items():
        s3.upload_file(path, "bands", f"scene/{os.path.basename(path)}")
        hrefs[key] = f"s3://bands/scene/{os.path.basename(path)}"
    create_task_table()
    log = DynamoTaskLog()
    result = process_cell(make_cell(hrefs, "s3://results/runs", aoi=AOI), task_log=log)
    assert result.outputs["ndvi"] == "s3://results/runs/job1/32TMT_2024-06-01_ndvi.tif"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="results")["Contents"])
    assert keys == ["runs/job1/32TMT_2024-06-01.json", "runs/job1/32TMT_2024-06-01_ndvi.tif",
                    "runs/job1/32TMT_2024-06-01_rgb.tif",
                    # the SCL cloud mask beside RGB, for cloud-free RGB composites
                    "runs/job1/32TMT_2024-06-01_rgb_clouds.tif"]
    local = process_cell(make_cell(scene, tmp_path / "local", aoi=AOI))
    s3.download_file("results", "runs/job1/32TMT_2024-06-01_ndvi.tif", str(tmp_path / "n.tif"))
    a, _ = read_band(tmp_path / "n.tif")
    b, _ = read_band(local.outputs["ndvi"].removeprefix("file://"))
    np.testing.assert_array_equal(a, b)
    record = log.get("job1#32TMT_2024-06-01")
    assert record.status is Status.SUCCEEDED and record.outputs == result.outputs
    # a retry finds the outputs complete in S3 and does nothing
    assert process_cell(make_cell(hrefs, "s3://results/runs", aoi=AOI), task_log=log).skipped


def test_s3_missing_band_and_missing_bucket(aws_endpoint, scene):
    boto3.client("s3").create_bucket(Bucket="bands")
    hrefs = {**scene, "red": "s3://bands/none/B04.tif"}
    with pytest.raises(FileNotFoundError, match=r"band red \(s3://bands/none/B04.tif\) does not"):
        process_cell(make_cell(hrefs, "/tmp/unused"))
    hrefs = {**scene, "red": "s3://no-such-bucket/B04.tif"}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        process_cell(make_cell(hrefs, "/tmp/unused"))


# --- the seed's execution input -------------------------------------------------------------

def _seed_bucket(scene_factory, prefix, baseline, boa_offset):
    """The sentinel-s2-l2a layout: R10m/B0x.jp2, R20m/SCL.jp2, tileInfo.json."""
    bands = scene_factory(size=500, fmt="JP2", boa_offset=boa_offset, cloud=0.2, seed=9,
                          tile="32TMT")
    s3 = boto3.client("s3")
    for key, path in bands.items():
        folder = f"R{BANDS[key].resolution}m"
        s3.upload_file(path, "sentinel-s2-l2a", f"{prefix}{folder}/{os.path.basename(path)}")
    name = f"S2A_MSIL2A_20240601T103021_N{baseline}_R108_T32TMT_20240601T140000"
    s3.put_object(Bucket="sentinel-s2-l2a", Key=prefix + "tileInfo.json",
                  Body=json.dumps({"productName": name, "productPath": f"products/{name}"}))
    return bands


@pytest.mark.parametrize(("baseline", "boa_offset", "offset"), [("0214", 0, 0.0),
                                                                ("0400", 1000, -0.1)])
def test_seed_environment_mode(aws_endpoint, scene_factory, tmp_path, baseline, boa_offset,
                               offset):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="sentinel-s2-l2a")
    s3.create_bucket(Bucket="my-results")
    create_task_table()
    prefix = "tiles/32/T/MT/2024/6/1/0/"
    bands = _seed_bucket(scene_factory, prefix, baseline, boa_offset)
    env = {"files": f"s3://sentinel-s2-l2a/{prefix}R10m/", "date": "20240601",
           "output_bucket": "my-results", "region_name": "us-east-1"}
    proc = run_worker(env=env)
    assert proc.returncode == 0, proc.stderr
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="my-results")["Contents"])
    assert keys == ["20240601/32TMT_2024-06-01.json", "20240601/32TMT_2024-06-01_ndvi.tif",
                    "20240601/32TMT_2024-06-01_rgb.tif",
                    "20240601/32TMT_2024-06-01_rgb_clouds.tif"]
    s3.download_file("my-results", keys[1], str(tmp_path / "ndvi.tif"))
    with rasterio.open(tmp_path / "ndvi.tif") as ds:
        ndvi = ds.read(1)
        assert float(ds.tags()["REFLECTANCE_OFFSET_APPLIED"]) == offset
    red, _ = read_band(bands["red"])
    nir, _ = read_band(bands["nir"])
    want = reference_ndvi(red, nir, 0.0001, offset, scl_at_10m(bands["scl"], red.shape))
    np.testing.assert_allclose(ndvi, want, atol=2e-6)
    record = DynamoTaskLog(region="us-east-1").get("20240601#32TMT_2024-06-01")
    assert record.status is Status.SUCCEEDED
    # the seed's own fields stay readable in the record
    assert record.extra["files"] == env["files"] and record.extra["date"] == "20240601"
    assert record.extra["result"] == "success" and record.extra["exec_time"]


def test_seed_mode_without_b08_makes_rgb_only(aws_endpoint, scene_factory):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="sentinel-s2-l2a")
    s3.create_bucket(Bucket="my-results")
    create_task_table()
    prefix = "tiles/32/T/MT/2024/6/1/0/"
    _seed_bucket(scene_factory, prefix, "0500", 1000)
    s3.delete_object(Bucket="sentinel-s2-l2a", Key=prefix + "R10m/B08.jp2")
    env = {"files": f"s3://sentinel-s2-l2a/{prefix}R10m/", "date": "20240601",
           "output_bucket": "my-results", "region_name": "us-east-1", "job_id": "seedjob"}
    proc = run_worker(env=env)
    assert proc.returncode == 0, proc.stderr
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="my-results")["Contents"])
    assert keys == ["seedjob/32TMT_2024-06-01.json", "seedjob/32TMT_2024-06-01_rgb.tif"]


def test_seed_prefix_that_is_not_a_tile_path(aws_endpoint):
    env = {"files": "s3://sentinel-s2-l2a/products/2020/", "date": "20200801",
           "output_bucket": "x", "region_name": "us-east-1"}
    proc = run_worker("--no-task-log", env=env)
    assert proc.returncode == 2 and "is not a sentinel-s2-l2a tile prefix" in proc.stderr


def test_a_full_scratch_disk_before_an_s3_upload_is_named(aws_endpoint, scene, tmp_path,
                                                          small_disk):
    """On AWS Batch the COG is made in the container's scratch folder, then uploaded: when
    that disk fills, the cell says so, is FAILED, and nothing reaches the bucket."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="results")
    scratch = small_disk("3m")
    log = tmp_path / "log.sqlite"
    cell = json.dumps({"job_id": "bad", "tile": "32TMT", "date": "2024-06-01",
                       "bands": scene, "products": ["rgb", "ndvi"],
                       "output": "s3://results/runs", "offset": -0.1})
    proc = run_worker("--task-log", f"sqlite://{log}", "run", cell, env={"TMPDIR": str(scratch)})
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "rsbatch-worker: error:" in line]
    assert len(errors) == 1 and f"no space left on {scratch} (tmpfs) writing {scratch}/" \
        in errors[0], proc.stderr
    assert "MB needed" in errors[0] and "Traceback" not in proc.stderr
    record = SqliteTaskLog(str(log)).get("bad#32TMT_2024-06-01")
    assert record.status is Status.FAILED and "no space left" in record.error
    assert s3.list_objects_v2(Bucket="results").get("KeyCount") == 0
    assert list(scratch.iterdir()) == []  # the scratch folder is gone too


@pytest.mark.parametrize("failing", ["rgb", "ndvi"])
def test_a_product_that_cannot_be_finished_sends_none_to_the_bucket(aws_endpoint, scene,
                                                                   monkeypatch, failing):
    """The products are finished side by side and uploaded only once all are complete:
    when one cannot be finished, the other, finished beside it, never reaches the bucket."""
    fail_assembly(monkeypatch, f"_{failing}.tif", f"cannot assemble {failing}")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="results")
    with pytest.raises(OSError, match=f"cannot assemble {failing}"):
        process_cell(make_cell(scene, "s3://results/runs"))
    assert s3.list_objects_v2(Bucket="results").get("KeyCount") == 0


def test_a_mosaic_that_cannot_be_finished_sends_neither_it_nor_its_mask(aws_endpoint, scene,
                                                                        monkeypatch):
    """A true-colour mosaic and the cloud mask beside it are published together: when the
    mosaic's COG cannot be finished, its mask (finished first) does not reach the bucket."""
    from qgis_rsbatch.core.contract import Job
    from qgis_rsbatch.core.reduce_plan import plan_reduce
    from worker.reduce import process_unit

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="results")
    cell = make_cell(scene, "s3://results/runs", aoi=AOI, products=["rgb"])
    assert process_cell(cell).status is Status.SUCCEEDED
    [unit] = plan_reduce(Job("job1", (cell,)), aoi=AOI, mosaic=True).units
    fail_assembly(monkeypatch, "_rgb.tif", "cannot assemble the mosaic")  # not its mask
    with pytest.raises(OSError, match="cannot assemble the mosaic"):
        process_unit(unit)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="results")["Contents"]]
    assert keys and not [k for k in keys if "/mosaic/" in k], keys


def test_a_cell_from_s3_logs_no_pyopenssl_deprecation_noise(aws_endpoint, scene):
    """The container's path (cell, bands and outputs in S3, the task log in DynamoDB) through
    the real command: botocore probes urllib3's pyOpenSSL support, and where a system
    pyOpenSSL meets a newer cryptography (Debian's python3-openssl beside our wheels) that
    import warned 'DSA is deprecated' ahead of every line of the cell's log."""
    s3 = boto3.client("s3")
    for bucket in ("bands", "results", "jobs"):
        s3.create_bucket(Bucket=bucket)
    hrefs = {}
    for key, path in scene.items():
        s3.upload_file(path, "bands", f"scene/{os.path.basename(path)}")
        hrefs[key] = f"s3://bands/scene/{os.path.basename(path)}"
    create_task_table()
    cell = make_cell(hrefs, "s3://results/runs", aoi=AOI)
    s3.put_object(Bucket="jobs", Key="cell.json", Body=json.dumps(cell.to_dict()))
    proc = run_worker("--task-log", f"dynamodb://{TABLE_NAME}?region=us-east-1", "run",
                      "s3://jobs/cell.json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["outputs"]["ndvi"] == \
        "s3://results/runs/job1/32TMT_2024-06-01_ndvi.tif"
    assert DynamoTaskLog().get("job1#32TMT_2024-06-01").status is Status.SUCCEEDED
    assert "CryptographyDeprecationWarning" not in proc.stderr, proc.stderr
    assert "DSA is deprecated" not in proc.stderr, proc.stderr
    # what a reader of the cell's log sees first is the worker's own progress
    assert " INFO rsbatch.worker 32TMT_2024-06-01 " in proc.stderr.splitlines()[0], proc.stderr
