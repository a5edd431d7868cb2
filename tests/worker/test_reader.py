"""Reading helpers of the worker against plain numpy."""

from __future__ import annotations

import numpy as np
import pytest

from worker.reader import upsampled


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.uint16, np.int16, np.float32])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_upsampling_repeats_each_pixel_k_by_k(dtype, k):
    """The word trick for 1- and 2-byte pixels at k = 2 gives numpy's repeat exactly,
    whatever the values (0, the type's extremes, negatives)."""
    rng = np.random.default_rng(k)
    coarse = rng.integers(-40000, 70000, (7, 9)).astype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        coarse[0, :3] = [info.min, info.max, 0]
    got = upsampled(coarse, k)
    want = np.repeat(np.repeat(coarse, k, axis=0), k, axis=1)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
