"""The benchmark's COG writers make the same deliverable as the worker's own writer.

`make bench` decides between the hand-assembled COG layout and GDAL's or rio-cogeo's by
speed alone, which is fair only if all three write the same thing: the same pixels, codec,
predictor, blocks, overview levels, statistics and metadata, and a COG that GDAL's own
validator accepts.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from bench.cog_contenders import WRITERS
from tests.cog_reference import assert_valid_cog
from tests.worker.test_process import make_cell
from worker import process


def _outputs(scene, out, monkeypatch, writer=None):
    if writer is not None:
        monkeypatch.setattr(process, "CogWriter", WRITERS[writer])
    result = process.process_cell(make_cell(scene, out, aoi=None))
    monkeypatch.undo()
    return {product: uri.removeprefix("file://") for product, uri in result.outputs.items()}


def _describe(path):
    with rasterio.open(path) as ds:
        return {
            "pixels": ds.read(), "profile": {k: ds.profile[k] for k in
                                             ("dtype", "count", "nodata", "crs", "transform",
                                              "blockxsize", "blockysize", "interleave")},
            "structure": ds.tags(ns="IMAGE_STRUCTURE"), "overviews": ds.overviews(1),
            "band_tags": [ds.tags(b) for b in ds.indexes], "tags": ds.tags(),
            "descriptions": ds.descriptions, "scales": ds.scales,
            "colorinterp": ds.colorinterp,
        }


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_contender_writes_what_the_worker_writes(scene, tmp_path, monkeypatch, writer):
    ours = _outputs(scene, tmp_path / "ours", monkeypatch)
    theirs = _outputs(scene, tmp_path / writer, monkeypatch, writer)
    for product in ("rgb", "ndvi"):
        assert_valid_cog(theirs[product])
        a, b = _describe(ours[product]), _describe(theirs[product])
        np.testing.assert_array_equal(a.pop("pixels"), b.pop("pixels"))
        b["tags"].pop("OVERVIEW_RESAMPLING", None)  # rio-cogeo's own note
        nodata = a["profile"].pop("nodata"), b["profile"].pop("nodata")
        assert np.array_equal(*nodata, equal_nan=True)
        assert a == b
        with rasterio.open(ours[product], overview_level=0) as x, \
                rasterio.open(theirs[product], overview_level=0) as y:
            # both average the valid pixels under each overview pixel
            np.testing.assert_allclose(x.read().astype(float), y.read().astype(float),
                                       atol=1.0 if product == "rgb" else 1e-6)
