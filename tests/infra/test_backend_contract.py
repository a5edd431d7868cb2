"""One job, both backends: the same task-log records and the same outputs.

The local backend runs the cells as worker processes on this machine; the aws backend runs
them through the deployed stack (Step Functions → Batch → the same worker, on moto). Both
read the same bands from S3; the records and every output pixel must agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from qgis_rsbatch.core.backends.aws import AwsBackend
from qgis_rsbatch.core.backends.local import LocalBackend
from qgis_rsbatch.core.contract import Job, Status

from .conftest import STACK
from .test_end_to_end import CELLS, _job

pytestmark = pytest.mark.slow


def _records(status):
    return {r.cell_id: (r.status, r.attempts, r.error, tuple(r.warnings), sorted(r.outputs))
            for r in status.records}


def test_the_same_job_gives_the_same_records_and_outputs(deploy_stack, bands, tmp_path):
    stack = deploy_stack()
    aws = AwsBackend(stack=STACK)
    cloud_job = Job.from_dict(_job("job-contract", aws.default_output(), bands, CELLS[:2]))
    local_job = Job.from_dict({**cloud_job.to_dict(), "cells": [
        {**cell.to_dict(), "output": str(tmp_path / "local")} for cell in cloud_job.cells]})

    local = LocalBackend(task_log_path=str(tmp_path / "log.sqlite"), workers=2)
    local_status = local.submit(local_job, wait=True)
    aws.submit(cloud_job)
    cloud_status = aws.wait(cloud_job.job_id, interval=0.5, timeout=180)

    assert local_status.succeeded and cloud_status.succeeded
    assert _records(local_status) == _records(cloud_status)
    assert all(r.status is Status.SUCCEEDED and r.attempts == 1 for r in cloud_status.records)

    s3 = stack.client("s3")
    for cell_id, outputs in cloud_status.outputs().items():
        local_outputs = local_status.outputs()[cell_id]
        for product, uri in outputs.items():
            assert Path(uri).name == Path(local_outputs[product]).name
            bucket, _, key = uri[len("s3://"):].partition("/")
            downloaded = tmp_path / f"cloud-{Path(key).name}"
            s3.download_file(bucket, key, str(downloaded))
            with rasterio.open(downloaded) as a, \
                    rasterio.open(local_outputs[product].removeprefix("file://")) as b:
                pa, pb = dict(a.profile), dict(b.profile)
                na, nb = pa.pop("nodata"), pb.pop("nodata")
                assert pa == pb and (na == nb or (np.isnan(na) and np.isnan(nb)))
                np.testing.assert_array_equal(a.read(), b.read())
