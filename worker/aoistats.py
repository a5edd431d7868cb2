"""Statistics of an index over the AOI's valid pixels, gathered as the strips go by.

One pass, no second read, bounded memory, whatever the tile size:
* count, mean and standard deviation (population, as numpy's default) from running sums:
  each strip's sums of deviations from a shift close to the mean, in float64, merged with
  Chan's formula, so they stay exact to float64 rounding however far the mean is from 0;
* median, p10 and p90 from a fixed histogram of BIN_WIDTH (2e-5) bins over the index's
  range (products.Product.valid_range, [-1, 1] for an unbounded index like EVI); values
  outside the range are kept exactly. Each order statistic is taken as the centre of its
  bin, so it is off by at most half a bin, 1e-5; a percentile is numpy's default ("linear"),
  a convex combination of two order statistics, so it too is within 1e-5 of numpy's
  percentile of the same pixels (plus float64 rounding at bin edges).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from qgis_rsbatch.core import products

from . import kernels

#: histogram bin width: order statistics within half of it (1e-5) of the exact value
BIN_WIDTH = 2e-5
#: the percentiles recorded (the median is the 50th)
PERCENTILES = {"p10": 10.0, "median": 50.0, "p90": 90.0}


class IndexStats:
    """Running statistics of one index product over the valid pixels it is shown."""

    def __init__(self, product: str) -> None:
        spec = products.get(product)
        self.low, self.high = spec.valid_range or (-1.0, 1.0)
        self.bins = math.ceil((self.high - self.low) / BIN_WIDTH)
        # one bin more: a value on the top edge (or rounding up to it) counts in the last
        # bin, folded in when read, which spares clamping every index
        self.histogram = np.zeros(self.bins + 1, np.int64)
        self.count = 0
        self.pixels = 0  # every pixel shown, valid or not (the COG's, for VALID_PERCENT)
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean
        self.minimum, self.maximum = math.inf, -math.inf
        self.outside: list[np.ndarray] = []  # exact values beyond the histogram's range

    def add(self, values: np.ndarray) -> None:
        """Take a block of the index, (rows, cols) or (1, rows, cols): its valid pixels are
        those that are not NaN (masked, no data, outside the AOI). One pass (kernels.py):
        count, extremes and sums of deviations from a shift (the mean so far, or the
        block's first value) merged with Chan's formula, and the histogram."""
        self.pixels += values.size
        shift = self.mean if self.count else math.nan  # NaN: the kernel takes the first value
        n, low, high, shift, first, second, outside = kernels.index_sums(
            values, shift, self.low, self.high, 1.0 / BIN_WIDTH, self.histogram)
        if not n:
            return
        if outside:  # beyond the histogram's range (an unbounded index): kept exactly
            valid = values[~np.isnan(values)].astype(np.float64)
            self.outside.append(valid[(valid < self.low) | (valid > self.high)])
        self.minimum, self.maximum = min(self.minimum, low), max(self.maximum, high)
        mean = shift + first / n
        m2 = max(second - first * first / n, 0.0)  # Σ(x − mean)² of the block
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    def tags(self, band: int = 0) -> dict[str, str]:
        """The COG's band statistics (GDAL's STATISTICS_* metadata) of these pixels."""
        if not self.count:
            return {"STATISTICS_VALID_PERCENT": "0"}
        return {
            "STATISTICS_MINIMUM": repr(self.minimum),
            "STATISTICS_MAXIMUM": repr(self.maximum),
            "STATISTICS_MEAN": repr(self.mean),
            "STATISTICS_STDDEV": repr(math.sqrt(self.m2 / self.count)),
            "STATISTICS_VALID_PERCENT": f"{100.0 * self.count / max(self.pixels, 1):.4f}",
        }

    def valid_fraction(self) -> float:
        return self.count / max(self.pixels, 1)

    def _order_statistic(self, k: int, below: np.ndarray, above: np.ndarray,
                         cumulative: np.ndarray) -> float:
        """The k-th smallest valid value (0-based): exact beyond the range, else its bin's
        centre."""
        if k < below.size:
            return float(below[k])
        k -= below.size
        if k < cumulative[-1]:
            bin_ = int(np.searchsorted(cumulative, k, side="right"))
            return self.low + (bin_ + 0.5) * BIN_WIDTH
        return float(above[k - int(cumulative[-1])])

    def result(self, aoi_pixels: int) -> dict[str, Any]:
        """valid_pixels, aoi_pixels, valid_fraction, mean, median, std, p10, p90 (None
        without a valid pixel); plain floats and ints, ready for JSON and the task log."""
        stats: dict[str, Any] = {
            "valid_pixels": self.count, "aoi_pixels": int(aoi_pixels),
            "valid_fraction": self.count / aoi_pixels if aoi_pixels else 0.0,
            "mean": None, "median": None, "std": None, "p10": None, "p90": None,
        }
        if not self.count:
            return stats
        stats["mean"] = self.mean
        stats["std"] = math.sqrt(self.m2 / self.count)
        extra = np.sort(np.concatenate(self.outside)) if self.outside else np.empty(0)
        below, above = extra[extra < self.low], extra[extra >= self.low]
        folded = self.histogram[:-1].copy()
        folded[-1] += self.histogram[-1]  # the top edge's own bin (see __init__)
        cumulative = np.cumsum(folded)
        for name, q in PERCENTILES.items():
            h = (self.count - 1) * q / 100.0
            k = math.floor(h)
            low = self._order_statistic(k, below, above, cumulative)
            high = self._order_statistic(min(k + 1, self.count - 1), below, above, cumulative)
            stats[name] = low + (h - k) * (high - low)
        return stats
