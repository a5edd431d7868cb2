"""Shared fixtures: isolated environment, generated Sentinel-2-like scenes, a moto S3 server.

Fake AWS credentials and a private RSBATCH_HOME are set before anything imports boto3, so
no test can reach a real account or the developer's own task log.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing", "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
})
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "RSBATCH_TASK_LOG"):
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True)
def _private_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own rsbatch user data folder (task log, job registry)."""
    monkeypatch.setenv("RSBATCH_HOME", str(tmp_path_factory.mktemp("rsbatch-home")))


# --- generated scenes --------------------------------------------------------------------

#: the real 10 m grid origins of a few tiles (proj:transform of real Earth Search items)
TILES = {
    "32TMT": (32632, (399960.0, 5300040.0)),
    "32TNT": (32632, (499980.0, 5300040.0)),
    "39QTA": (32639, (199980.0, 2100000.0)),
}


@pytest.fixture(scope="session")
def scene_factory(tmp_path_factory: pytest.TempPathFactory):
    """make(**SampleScene fields) → band paths; each distinct scene is generated once."""
    from worker.samples import SampleScene, write_scene

    cache: dict[tuple, dict[str, str]] = {}
    root = tmp_path_factory.mktemp("scenes")

    def make(**fields) -> dict[str, str]:
        tile = fields.get("tile", "32TMT")
        epsg, origin = TILES.get(tile, (None, None))
        if epsg is not None:
            fields.setdefault("epsg", epsg)
            fields.setdefault("origin", origin)
        spec = SampleScene(**fields)
        key = tuple(sorted((k, str(v)) for k, v in fields.items()))
        if key not in cache:
            folder = root / f"scene{len(cache)}"
            cache[key] = write_scene(str(folder), spec)
        return dict(cache[key])

    return make


@pytest.fixture(scope="session")
def scene(scene_factory) -> dict[str, str]:
    """A 1000 px 32TMT scene with the +1000 offset (baseline ≥ 04.00), some clouds."""
    return scene_factory(size=1000, cloud=0.25, boa_offset=1000, seed=3, nodata_corner=True)


# --- a full disk ----------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """mount(size) → a folder on a tmpfs of that size; unmounted afterwards."""
    mounted = []

    def mount(size):
        if shutil.which("mount") is None:
            pytest.skip("a full file system needs a small tmpfs: no mount command here")
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(folder)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.skip("a full file system needs a small tmpfs, and mounting one needs root "
                        f"(CAP_SYS_ADMIN): {proc.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)


# --- a moto server in its own process (GDAL's /vsis3/ needs a real socket) ---------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def aws_endpoint(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 (and, through it, the worker's GDAL settings) at a fresh moto server."""
    request = urllib.request.Request(moto_server + "/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return moto_server


@pytest.fixture(scope="session")
def sample_catalog(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The demo's sample catalog, small: two overlapping tiles × two dates, 600 px crops."""
    from worker.samples import write_sample_catalog

    return write_sample_catalog(str(tmp_path_factory.mktemp("sample")), crop=600)
