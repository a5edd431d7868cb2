"""AWS jobs from a ZIP install: QGIS's own Python has no boto3; after the set-up (with boto3
for AWS jobs), the AWS backend runs a job on the deployed (moto) stack from QGIS's process,
with boto3 from the profile's private folder and every module QGIS had left in place."""

from __future__ import annotations

import json
import os

import pytest

from tests.plugin.test_zip_install import (
    QGIS_PYTHON,
    WHEELHOUSE,
    build_plugin_zip,
    install,
    qgis_session,
)

from .conftest import STACK
from .test_end_to_end import CELLS, _job

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.isfile(QGIS_PYTHON), reason="needs Debian's /usr/bin/python3"),
]

RUN_ON_AWS = """
import json, sys
from qgis_rsbatch.gui.backends import boto3_missing
result["missing"] = boto3_missing()
from qgis_rsbatch.core.backends import get_backend
from qgis_rsbatch.core.contract import Job
with open(JOB_FILE) as fh:
    job = Job.from_dict(json.load(fh))
backend = get_backend("aws", stack=STACK)
backend.submit(job)
status = backend.wait(job.job_id, interval=0.5, timeout=240)
result["counts"] = status.counts
result["outputs"] = sorted(status.outputs())
result["boto3"] = sys.modules["boto3"].__file__
result["urllib3"] = sys.modules["urllib3"].__file__
"""


def test_the_aws_backend_runs_from_qgis_with_boto3_from_the_set_up(
        plugin_zip, deploy_stack, bands, tmp_path):
    if not (WHEELHOUSE / ".complete").is_file():
        pytest.fail(f"no wheelhouse in {WHEELHOUSE}: run `make setup` (or `make wheelhouse`)")
    stack = deploy_stack()
    from qgis_rsbatch.core.backends.aws import AwsBackend

    job = _job("job-from-qgis", AwsBackend(stack=STACK).default_output(), bands, CELLS[:2])
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    home = tmp_path / "home"
    profile = install(plugin_zip, home)
    aws_env = {name: os.environ[name] for name in os.environ
               if name.startswith("AWS_") or name in ("MOTO_PORT", "RSBATCH_HOME")}
    code = f"JOB_FILE = {str(job_file)!r}\nSTACK = {STACK!r}\n" + RUN_ON_AWS
    setup, run = qgis_session(home, [
        {"do": "algorithm", "id": "rsbatch:setupworker", "params": {"AWS": True}},
        {"do": "python", "code": code},
    ], WHEELHOUSE, aws_env)
    assert setup["ok"], setup.get("error")
    assert setup["result"]["AWS_LIBS"] == str(profile / "rsbatch" / "aws-libs")
    assert run["ok"], run.get("traceback")
    got = run["result"]
    assert got["missing"] is None
    assert got["boto3"].startswith(str(profile / "rsbatch" / "aws-libs"))
    assert got["urllib3"].startswith("/usr/lib/python3/")  # QGIS's own, not a second copy
    assert got["counts"]["SUCCEEDED"] == 2
    assert got["outputs"] == ["32TMT_2024-06-01", "32TNT_2024-06-01"]
    assert {r.status.value for r in stack.records("job-from-qgis").values()} == {"SUCCEEDED"}


@pytest.fixture(scope="module")
def plugin_zip():
    return build_plugin_zip()
