"""The worker's tile encoder (worker/tiles.py), read back by GDAL: every dtype, predictor and
codec the COG writer uses decodes to the very pixels written, at every level; tiles of
nodata alone are left out, as GDAL's SPARSE_OK does; what it cannot write is refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from worker import tiff
from worker.cog import CogWriter
from worker.cogcheck import validate_cog

TRANSFORM = from_origin(399960, 5300040, 10, 10)


def _write(path, data, nodata, *, strips=(300, 211), blocksize=256, **options):
    bands, height, width = data.shape
    profile = {"dtype": data.dtype.name, "count": bands, "nodata": nodata,
               "crs": "EPSG:32632", "transform": TRANSFORM, "width": width,
               "height": height}
    writer = CogWriter(str(path), profile, blocksize=blocksize, options=options,
                       colorinterp=("red", "green", "blue") if bands >= 3 else None)
    row, turn = 0, 0
    while row < height:  # strips of uneven heights, so that rows gather between tiles
        rows = min(strips[turn % len(strips)], height - row)
        writer.write(data[:, row:row + rows], row)
        row, turn = row + rows, turn + 1
    return writer.close()


def _scene(dtype, bands, height=700, width=900, seed=1):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        # smooth, with sign changes and the float edge cases the predictor must carry
        y, x = np.mgrid[0:height, 0:width]
        data = np.stack([np.sin(x / (37.0 + b)) * np.cos(y / 53.0) for b in range(bands)])
        data = data.astype(dtype)
        data[:, 5, :4] = [0.0, -0.0, np.finfo(dtype).max, np.finfo(dtype).tiny]
        return data
    top = np.iinfo(dtype).max
    return rng.integers(1, top, (bands, height, width), endpoint=True).astype(dtype)


CASES = [  # (dtype, bands, predictor, nodata): what the products and their masks write
    ("uint16", 3, 2, 0),               # true colour
    ("uint16", 4, 2, 0),               # a true-colour composite with its count
    ("uint8", 1, 2, 255),              # cloud flags
    ("float32", 1, 3, math.nan),       # an index
    ("float32", 2, 3, math.nan),       # an index's composite with its count
    ("float64", 1, 3, None),
    ("uint16", 1, None, None),
]


@pytest.mark.parametrize(("dtype", "bands", "predictor", "nodata"), CASES)
@pytest.mark.parametrize("codec", ["ZSTD", "DEFLATE", "NONE"])
def test_gdal_reads_back_every_pixel_the_encoder_wrote(tmp_path, dtype, bands, predictor,
                                                       nodata, codec):
    data = _scene(dtype, bands)
    if nodata is not None:
        data[:, 40:90, 100:700] = nodata
    path = tmp_path / "out.tif"
    _write(path, data, nodata, compress=codec, predictor=predictor, level=1)
    assert validate_cog(str(path)).valid
    with rasterio.open(path) as ds:
        assert (ds.compression.name.upper() if ds.compression else "NONE") == codec
        if codec != "NONE":  # libtiff predicts only what it compresses
            assert ds.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR", "1") == str(predictor or 1)
        assert ds.read().tobytes() == data.tobytes()  # NaNs and -0.0 to the bit
        assert ds.overviews(1) == [2, 4]


def test_tiles_of_nodata_alone_are_left_out_and_read_as_nodata(tmp_path):
    """An AOI's clip leaves whole tiles empty: they take no bytes in the file."""
    data = _scene("float32", 1, height=512, width=768)
    data[:, :256, :256] = np.nan          # one tile of the full resolution, nodata alone
    data[:, 256:, 512:] = np.nan
    data[:, 300, 600] = 0.5               # … but for one pixel: that tile is written
    path = tmp_path / "clip.tif"
    _write(path, data, math.nan, compress="ZSTD", predictor=3, level=1)
    with open(path, "rb") as fh:
        full = tiff.read_structure(fh).ifds[0]
    counts = full.array(tiff.TAG_TILE_COUNTS)
    assert len(counts) == 6 and counts[0] == 0
    assert all(counts[1:])
    with rasterio.open(path) as ds:
        assert ds.read().tobytes() == data.tobytes()


def test_a_codec_the_encoder_cannot_write_is_refused_before_any_file(tmp_path):
    data = _scene("uint16", 1, height=10, width=10)
    with pytest.raises(ValueError, match="LZW"):
        _write(tmp_path / "lzw.tif", data, 0, compress="LZW")
    assert list(tmp_path.iterdir()) == []
