"""The COG writer against GDAL and the independent layout checker."""

from __future__ import annotations

import errno
import os
import warnings

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from tests.cog_reference import assert_valid_cog
from worker import tiff
from worker.cog import CogWriter
from worker.cogcheck import validate_cog

TRANSFORM = Affine(10, 0, 399960, 0, -10, 5300040)


def _profile(width, height, dtype="float32", count=1, nodata=np.nan):
    return {"dtype": dtype, "count": count, "nodata": nodata, "crs": "EPSG:32632",
            "transform": TRANSFORM, "width": width, "height": height}


def _write(path, data, strip_rows, **kwargs):
    profile = _profile(data.shape[2], data.shape[1], data.dtype.name, data.shape[0],
                       kwargs.pop("nodata", np.nan))
    with CogWriter(str(path), profile, **kwargs) as writer:
        for row in range(0, data.shape[1], strip_rows):
            writer.write(data[:, row:row + strip_rows], row)
    return writer


def _block_mean(a):
    """Reference 2 × 2 nodata-aware mean for odd sizes too (NaN = nodata)."""
    h, w = a.shape
    padded = np.full(((h + 1) // 2 * 2, (w + 1) // 2 * 2), np.nan)
    padded[:h, :w] = a
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2),
                          axis=(1, 3))


@pytest.mark.parametrize(("width", "height", "strip"), [(1300, 1100, 333), (1025, 1537, 1024),
                                                        (700, 600, 600), (300, 200, 64)])
def test_float_cog_round_trips_and_overviews_are_exact_means(tmp_path, width, height, strip):
    rng = np.random.default_rng(width)
    data = rng.random((1, height, width)).astype(np.float32)
    data[0, 50:180, 40:300] = np.nan
    path = tmp_path / "ndvi.tif"
    _write(path, data, strip, options={"predictor": 3})

    assert_valid_cog(str(path))
    with rasterio.open(path) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.block_shapes == [(512, 512)]
        assert ds.crs.to_epsg() == 32632 and ds.transform == TRANSFORM
        np.testing.assert_array_equal(ds.read(), data)
        expected_levels = 0
        size = max(width, height)
        while size > 512:
            size = (size + 1) // 2
            expected_levels += 1
        assert len(ds.overviews(1)) == expected_levels
        stats = ds.tags(1)
        valid = data[~np.isnan(data)]
        assert float(stats["STATISTICS_MINIMUM"]) == pytest.approx(valid.min())
        assert float(stats["STATISTICS_MAXIMUM"]) == pytest.approx(valid.max())
        assert float(stats["STATISTICS_MEAN"]) == pytest.approx(valid.mean(), rel=1e-6)
        assert float(stats["STATISTICS_STDDEV"]) == pytest.approx(valid.std(), rel=1e-4)
    reference = data[0].astype(np.float64)
    for level in range(expected_levels):
        reference = _block_mean_weighted(reference, level, data[0])
        with rasterio.open(path, overview_level=level) as ov:
            got = ov.read(1)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(reference))
        np.testing.assert_allclose(got[~np.isnan(got)], reference[~np.isnan(reference)],
                                   rtol=1e-5)


def _block_mean_weighted(_previous, level, full):
    """The mean of all valid full-resolution pixels under each overview pixel."""
    step = 2 ** (level + 1)
    h, w = full.shape
    oh, ow = -(-h // step), -(-w // step)
    padded = np.full((oh * step, ow * step), np.nan)
    padded[:h, :w] = full
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(padded.reshape(oh, step, ow, step), axis=(1, 3))


def test_rgb_cog_keeps_interleave_colours_and_nodata(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(1, 4000, (3, 900, 1000), dtype=np.uint16)
    data[:, :100, :] = 0
    path = tmp_path / "rgb.tif"
    _write(path, data, 256, nodata=0, colorinterp=("red", "green", "blue"),
           descriptions=("r", "g", "b"), scales=(0.0001,) * 3, offsets=(0.0,) * 3,
           options={"predictor": 2})
    assert_valid_cog(str(path))
    with rasterio.open(path) as ds:
        assert [c.name for c in ds.colorinterp] == ["red", "green", "blue"]
        assert ds.nodata == 0 and ds.scales == (0.0001,) * 3 and ds.descriptions == ("r", "g", "b")
        np.testing.assert_array_equal(ds.read(), data)
    with rasterio.open(path, overview_level=0) as ov:
        got = ov.read()
    assert (got[:, :50] == 0).all()                   # all-nodata blocks stay nodata
    block = data[:, 100:102, 0:2].reshape(3, -1).astype(float).mean(axis=1)
    np.testing.assert_array_equal(got[:, 50, 0], np.rint(block))


def test_nothing_is_visible_under_the_final_name_until_close(tmp_path):
    data = np.ones((1, 600, 600), np.float32)
    path = tmp_path / "out.tif"
    writer = CogWriter(str(path), _profile(600, 600))
    writer.write(data[:, :300], 0)
    assert not path.exists()
    writer.abort()
    assert os.listdir(tmp_path) == []   # scratch files are gone too


def test_closing_an_incomplete_raster_fails_and_leaves_nothing(tmp_path):
    writer = CogWriter(str(tmp_path / "out.tif"), _profile(600, 600))
    writer.write(np.ones((1, 100, 600), np.float32), 0)
    with pytest.raises(ValueError, match="rows written"):
        writer.close()
    assert os.listdir(tmp_path) == []


def test_strips_must_come_in_order(tmp_path):
    writer = CogWriter(str(tmp_path / "out.tif"), _profile(600, 600))
    with pytest.raises(ValueError, match="row order"):
        writer.write(np.ones((1, 100, 600), np.float32), 100)
    writer.abort()


def test_checker_rejects_a_plain_geotiff_with_overviews_appended(tmp_path):
    path = tmp_path / "plain.tif"
    data = np.arange(1200 * 1200, dtype=np.float32).reshape(1, 1200, 1200)
    with rasterio.open(path, "w", driver="GTiff", tiled=True, blockxsize=512, blockysize=512,
                       **_profile(1200, 1200)) as ds:
        ds.write(data)
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 4])
    report = validate_cog(str(path))
    assert not report.valid
    assert any("IFD" in e or "overview data" in e for e in report.errors)


def test_checker_rejects_striped_and_unreadable_files(tmp_path):
    striped = tmp_path / "striped.tif"
    with rasterio.open(striped, "w", driver="GTiff", **_profile(100, 100)) as ds:
        ds.write(np.ones((1, 100, 100), np.float32))
    assert validate_cog(str(striped)).errors == ["the full-resolution image is not tiled"]
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"this is not a tiff")
    assert not validate_cog(str(junk)).valid


def _levels(tmp_path, data):
    """Scratch levels as the writer leaves them: full resolution and one overview, each a
    plain tiled ZSTD GeoTIFF."""
    source = tmp_path / "small.tif"
    _write(source, data, 700)
    levels = []
    for index in range(2):
        level = tmp_path / f"L{index}.tif"
        with rasterio.open(source, overview_level=index - 1 if index else None) as src:
            profile = src.profile | {"driver": "GTiff", "tiled": True, "blockxsize": 512,
                                     "blockysize": 512, "compress": "ZSTD"}
            with rasterio.open(level, "w", **profile) as dst:
                dst.write(src.read())
        levels.append(str(level))
    return levels


def test_assembly_copies_tiles_in_the_kernel_or_through_python_alike(tmp_path, monkeypatch):
    """Tiles go file to file with copy_file_range; where the kernel refuses (another file
    system: EXDEV) or lacks it, they are read and written instead: the same bytes."""
    data = np.random.default_rng(4).random((1, 700, 800)).astype(np.float32)
    levels = _levels(tmp_path, data)
    in_kernel = tmp_path / "kernel.tif"
    tiff.assemble(levels, str(in_kernel))
    refusals = []

    def refuse(*args, **kwargs):
        refusals.append(args)
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    refused = tmp_path / "refused.tif"
    tiff.assemble(levels, str(refused))
    monkeypatch.delattr(os, "copy_file_range")
    lacking = tmp_path / "lacking.tif"
    tiff.assemble(levels, str(lacking))
    assert refusals  # the refusal was met, once per assembly, then not asked again
    assert len(refusals) == 1
    assert refused.read_bytes() == in_kernel.read_bytes() == lacking.read_bytes()
    assert_valid_cog(str(in_kernel))
    with rasterio.open(in_kernel) as ds:
        np.testing.assert_array_equal(ds.read(), data)


@pytest.mark.parametrize("in_kernel", [True, False])
def test_assembly_of_a_truncated_level_fails(tmp_path, monkeypatch, in_kernel):
    data = np.random.default_rng(6).random((1, 700, 800)).astype(np.float32)
    levels = _levels(tmp_path, data)
    if not in_kernel:
        monkeypatch.delattr(os, "copy_file_range")
    with open(levels[0], "r+b") as fh:  # the last tiles of the full resolution are cut off
        fh.truncate(os.path.getsize(levels[0]) - 1000)
    with pytest.raises(ValueError, match="truncated tile"):
        tiff.assemble(levels, str(tmp_path / "cut.tif"))


def test_assembly_also_writes_bigtiff(tmp_path):
    """The assembler's BigTIFF path (used above 4 GB) gives a file GDAL reads identically."""
    data = np.random.default_rng(3).random((1, 700, 800)).astype(np.float32)
    levels = _levels(tmp_path, data)
    big = tmp_path / "big.tif"
    tiff.assemble(levels, str(big), bigtiff=True)
    assert big.read_bytes()[2:4] == b"\x2b\x00"
    assert_valid_cog(str(big))
    with rasterio.open(big) as ds:
        np.testing.assert_array_equal(ds.read(), data)
        assert ds.overviews(1) == [2]


@pytest.mark.parametrize(("dtype", "nodata"), [("uint16", 0), ("uint16", None), ("uint16", 65535),
                                           ("uint8", 0), ("float32", float("nan")),
                                           ("float32", -9999.0)])
def test_band_statistics_are_those_of_the_valid_pixels(dtype, nodata):
    """Strip by strip, the writer's band statistics agree with numpy on the pixels where
    every band holds data (a pixel with one band's nodata is left out in all bands), valid
    zeros included: 8- and 16-bit data summed exactly, floats in float64."""
    from worker.cog import _Stats, valid_mask

    rng = np.random.default_rng(1)
    data = rng.integers(1, 250 if dtype == "uint8" else 5000, (3, 300, 400)).astype(dtype)
    if dtype == "float32":
        data = (data / 1000).astype(dtype)
    data[1, 50:60] = 0 if nodata != 0 else 7   # a valid 0 where 0 is not nodata
    if nodata is not None:
        data[:, :30] = nodata
        data[2, 100:110, 200:] = nodata         # one band's nodata: the pixel is left out
    stats = _Stats(3, nodata)
    for row in range(0, 300, 77):               # strips of uneven height
        stats.add(data[:, row:row + 77])
    valid = valid_mask(data, nodata)
    for band in range(3):
        values = data[band][valid].astype(np.float64)
        tags = stats.tags(band)
        assert float(tags["STATISTICS_MINIMUM"]) == values.min()
        assert float(tags["STATISTICS_MAXIMUM"]) == values.max()
        assert float(tags["STATISTICS_MEAN"]) == pytest.approx(values.mean(), rel=1e-12)
        assert float(tags["STATISTICS_STDDEV"]) == pytest.approx(values.std(), rel=1e-9)
        percent = 100 * valid.sum() / valid.size
        assert float(tags["STATISTICS_VALID_PERCENT"]) == pytest.approx(percent, abs=1e-4)


def test_the_writer_chooses_bigtiff_from_the_sizes_before_writing(tmp_path):
    """Above the classic limit (lowered here for a small file) the writer makes a BigTIFF
    that GDAL's validator accepts and reads back; below it, a classic TIFF."""
    data = np.random.default_rng(5).integers(1, 10000, (3, 700, 900)).astype(np.uint16)
    size = tiff.largest_size([(900, 700), (450, 350)], 3, 2, 512)
    assert size >= 4 * 512 * 512 * 3 * 2 + 512 * 512 * 3 * 2  # whole tiles, both levels
    for name, above, magic in (("big.tif", size - 1, 43), ("classic.tif", size, 42)):
        path = tmp_path / name
        writer = _write(path, data, 256, nodata=0, bigtiff_above=above,
                        colorinterp=("red", "green", "blue"))
        assert writer.bigtiff is (magic == 43)
        assert path.read_bytes()[2:4] == magic.to_bytes(2, "little")
        assert_valid_cog(str(path))
        assert validate_cog(str(path)).valid
        with rasterio.open(path) as ds:
            np.testing.assert_array_equal(ds.read(), data)
            assert ds.overviews(1) == [2]
        assert not [p for p in os.listdir(tmp_path) if p.startswith(f".{name}")]


def test_outputs_past_4_gib_are_planned_as_bigtiff(tmp_path):
    """The decision at the real limit: a tile's RGB stays classic; a 4 × 4-tile RGB mosaic
    (11.6 GB raw) is a BigTIFF from its scratch levels on. Nothing is written."""
    assert tiff.largest_size([(10980, 10980)], 3, 2, 512) < tiff.CLASSIC_LIMIT
    profile = _profile(43920, 43920, "uint16", 3, 0)
    writer = CogWriter(str(tmp_path / "mosaic.tif"), profile)
    try:
        assert writer.bigtiff
    finally:
        writer.abort()
    small = CogWriter(str(tmp_path / "tile.tif"), _profile(10980, 10980, "uint16", 3, 0))
    small.abort()
    assert not small.bigtiff and not list(tmp_path.iterdir())


def test_the_assembler_left_to_decide_plans_the_classic_layout_exactly(tmp_path):
    """With `bigtiff` left open, the assembler plans the classic layout from the tiles'
    sizes before writing: at this file's exact classic size it stays classic (the same
    bytes), one byte lower it is a BigTIFF that GDAL's validator accepts, same pixels."""
    data = np.random.default_rng(5).random((1, 700, 800)).astype(np.float32)
    levels = _levels(tmp_path, data)
    classic = tmp_path / "classic.tif"
    tiff.assemble(levels, str(classic), bigtiff=False)
    size = classic.stat().st_size
    fits = tmp_path / "fits.tif"
    tiff.assemble(levels, str(fits), classic_limit=size)
    assert fits.read_bytes() == classic.read_bytes() and fits.read_bytes()[2:4] == b"\x2a\x00"
    big = tmp_path / "big.tif"
    tiff.assemble(levels, str(big), classic_limit=size - 1)
    assert big.read_bytes()[2:4] == b"\x2b\x00"
    assert_valid_cog(str(big))
    assert validate_cog(str(big)).valid
    with rasterio.open(big) as ds:
        np.testing.assert_array_equal(ds.read(), data)
        assert ds.overviews(1) == [2]
