"""The compiled loops (worker/kernels.py) against numpy written the plain way: the same
pixels to the bit, the same sums, for every dtype, nodata and odd size the writer meets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worker import kernels


def _valid(data: np.ndarray, nodata) -> np.ndarray:
    if nodata is None:
        return np.ones(data.shape[1:], bool)
    if isinstance(nodata, float) and math.isnan(nodata):
        return ~np.isnan(data).any(axis=0)
    return (data != nodata).all(axis=0)


def _pad(array: np.ndarray) -> np.ndarray:
    """An odd last row or column completed with zeros (which add nothing to a sum)."""
    rows, cols = array.shape[-2:]
    width = [(0, 0)] * (array.ndim - 2) + [(0, rows % 2), (0, cols % 2)]
    return np.pad(array, width)


def _block_sums(array: np.ndarray, dtype) -> np.ndarray:
    """2 × 2 sums in `dtype`: the two rows first, then the two columns."""
    padded = _pad(array).astype(dtype)
    rows = padded[..., 0::2, :] + padded[..., 1::2, :]
    return rows[..., 0::2] + rows[..., 1::2]


def _reference_level_one(data, nodata):
    """numpy: sums of the valid pixels (uint32 or float32), counts, float32 means rounded
    half to even for integers, the fill where no pixel is valid."""
    valid = _valid(data, nodata)
    integer = data.dtype.kind in "ui"
    zeroed = np.where(valid, data, np.zeros((), data.dtype))
    sums = _block_sums(zeroed, np.uint32 if integer else np.float32)
    counts = _block_sums(valid, np.uint8)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums.astype(np.float32) / counts.astype(np.float32)
    if integer:
        means = np.rint(means)
    fill = nodata if nodata is not None else (0 if integer else np.nan)
    means[:, counts == 0] = fill
    return sums, counts, means.astype(data.dtype)


CASES = [("uint16", 0), ("uint16", None), ("uint8", 255), ("float32", float("nan")),
         ("float32", -9999.0), ("float32", None)]


@pytest.mark.parametrize(("dtype", "nodata"), CASES)
@pytest.mark.parametrize(("rows", "cols"), [(6, 8), (7, 9), (1, 5), (2, 1)])
def test_level_one_is_numpys_to_the_bit(dtype, nodata, rows, cols):
    rng = np.random.default_rng(rows * cols)
    data = rng.integers(0, 250, (3, rows, cols)).astype(dtype)
    if dtype == "float32":
        data = (data / 7).astype(dtype)
    if nodata is not None:
        holes = rng.random((3, rows, cols)) < 0.3   # one band's nodata voids the pixel
        data[holes] = nodata
    if rows > 1 and cols > 1:
        data[:, :2, :2] = nodata if nodata is not None else data[:, :2, :2]  # a void block
    want_sums, want_counts, want_means = _reference_level_one(data, nodata)
    shape = want_sums.shape
    sums = np.empty(shape, want_sums.dtype)
    counts = np.empty(shape[1:], np.uint8)
    means = np.empty(shape, data.dtype)
    integer = data.dtype.kind in "ui"
    fill = nodata if nodata is not None else (0 if integer else np.nan)
    mode, value = kernels.nodata_mode(nodata)
    kernels.halve_pixels(data, mode, value, sums, counts, means, fill, integer)
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_array_equal(sums, want_sums)
    assert means.tobytes() == want_means.tobytes()


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
@pytest.mark.parametrize(("rows", "cols"), [(6, 8), (5, 7)])
def test_deeper_levels_are_numpys_to_the_bit(dtype, rows, cols):
    rng = np.random.default_rng(cols)
    sums = (rng.random((2, rows, cols)) * 4e4).astype(np.uint32 if dtype == "uint16"
                                                          else np.float32)
    counts = rng.integers(0, 5, (rows, cols)).astype(np.uint8)
    sums[:, counts == 0] = 0
    want_sums = _block_sums(sums, np.float64)
    want_counts = _block_sums(counts, np.int32)
    with np.errstate(invalid="ignore", divide="ignore"):
        want_means = want_sums / want_counts
    integer = dtype == "uint16"
    if integer:
        want_means = np.rint(want_means)
    want_means[:, want_counts == 0] = 0 if integer else np.nan
    half = (2, (rows + 1) // 2, (cols + 1) // 2)
    got_sums, got_counts = np.empty(half), np.empty(half[1:], np.int32)
    got_means = np.empty(half, dtype)
    kernels.halve_sums(sums, counts, got_sums, got_counts, got_means,
                       0 if integer else np.nan, integer)
    np.testing.assert_array_equal(got_counts, want_counts)
    np.testing.assert_array_equal(got_sums, want_sums)
    assert got_means.tobytes() == want_means.astype(dtype).tobytes()


@pytest.mark.parametrize(("dtype", "nodata"), CASES)
def test_band_sums_are_those_of_the_valid_pixels(dtype, nodata):
    rng = np.random.default_rng(9)
    data = rng.integers(0, 250, (2, 40, 31)).astype(dtype)
    if nodata is not None:
        data[rng.random(data.shape) < 0.2] = nodata
    valid = _valid(data, nodata)
    exact = dtype != "float32"
    kind = np.uint64 if exact else np.float64
    counts, totals, squares = np.zeros(2, np.int64), np.zeros(2, kind), np.zeros(2, kind)
    lows = np.full(2, np.iinfo(np.uint64).max if exact else np.inf, kind)
    highs = np.full(2, 0 if exact else -np.inf, kind)
    mode, value = kernels.nodata_mode(nodata)
    pixels = kernels.band_sums(data, mode, value, counts, totals, squares, lows, highs)
    assert pixels == valid.size
    for band in range(2):
        values = data[band][valid].astype(np.float64)
        assert counts[band] == values.size
        assert totals[band] == pytest.approx(values.sum(), rel=0 if exact else 1e-12)
        assert squares[band] == pytest.approx((values ** 2).sum(), rel=0 if exact else 1e-12)
        assert (lows[band], highs[band]) == (values.min(), values.max())


def test_index_sums_count_the_histogram_and_the_values_beyond_it():
    rng = np.random.default_rng(4)
    values = rng.uniform(-1.5, 1.5, (30, 40)).astype(np.float32)
    values[rng.random(values.shape) < 0.25] = np.nan
    values[0, :3] = [-1, 1, 0.25]                     # the range's edges, a bin's edge
    low, high, per_bin = -1.0, 1.0, 1 / 0.125
    histogram = np.zeros(17, np.int64)
    n, lo, hi, shift, first, second, outside = kernels.index_sums(
        values, math.nan, low, high, per_bin, histogram)
    valid = values[~np.isnan(values)].astype(np.float64)
    assert (n, lo, hi) == (valid.size, valid.min(), valid.max())
    assert shift == -1.0                              # the first valid value
    assert first == pytest.approx((valid - shift).sum(), rel=1e-12)
    assert second == pytest.approx(((valid - shift) ** 2).sum(), rel=1e-12)
    inside = valid[(valid >= low) & (valid <= high)]
    assert outside == valid.size - inside.size
    want = np.bincount(((inside - low) * per_bin).astype(np.intp), minlength=17)
    np.testing.assert_array_equal(histogram, want)


def test_a_read_only_install_caches_its_compiled_loops_in_a_folder_of_its_own(tmp_path):
    """Installed where the worker may not write (site-packages of an image, a shared
    Python) by a user who cannot write its home either, the kernels cache under the temporary
    folder instead of failing to import (numba: "no locator available"); a second process
    loads them from there. The package's folder is made read-only for real: immutable
    (chattr +i) when the tests run as root, whom permissions do not stop."""
    import os
    import shutil
    import subprocess
    import sys

    package = tmp_path / "site" / "worker"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copy(kernels.__file__, package / "kernels.py")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    as_root = os.geteuid() == 0
    if as_root:
        locked = subprocess.run(["chattr", "+i", str(package)], capture_output=True,
                                check=False) if shutil.which("chattr") else None
        if locked is None or locked.returncode != 0:
            pytest.skip("root writes anywhere, and this file system has no immutable flag")
    else:
        package.chmod(0o555)
    try:
        assert not os.access(package, os.W_OK)
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
        env.update(TMPDIR=str(temporary), HOME=str(package))  # a home it cannot write
        script = ("import os, sys; sys.path.insert(0, sys.argv[1]); "
                  "from worker import kernels; kernels.warm(); "
                  "print(os.environ['NUMBA_CACHE_DIR'])")
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "site")],
                                 env=env, capture_output=True, text=True, check=False)
            assert out.returncode == 0, out.stderr
            assert out.stdout.strip() == str(temporary / "rsbatch-numba")
        cached = [name for _, _, names in os.walk(temporary) for name in names]
        assert any(name.endswith(".nbi") for name in cached)
        assert sorted(os.listdir(package)) == ["__init__.py", "kernels.py"]
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(package)], check=False)
        else:
            package.chmod(0o755)
