"""Statistics of an index over the AOI's valid pixels, gathered as the strips go by.

One pass, no second read, bounded memory, whatever the tile size:
* count, mean and standard deviation (population, as numpy's default) from running sums:
  each strip's count, mean and sum of squared deviations in float64, merged with Chan's
  formula, so they are exact to float64 rounding;
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

#: histogram bin width: order statistics within half of it (1e-5) of the exact value
BIN_WIDTH = 2e-5
#: the percentiles recorded (the median is the 50th)
PERCENTILES = {"p10": 10.0, "median": 50.0, "p90": 90.0}
#: rows of a strip binned at once (bounds the float64 temporaries)
_ROWS = 256


class IndexStats:
    """Running statistics of one index product over the valid pixels it is shown."""

    def __init__(self, product: str) -> None:
        spec = products.get(product)
        self.low, self.high = spec.valid_range or (-1.0, 1.0)
        self.bins = math.ceil((self.high - self.low) / BIN_WIDTH)
        self.histogram = np.zeros(self.bins, np.int64)
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean
        self.outside: list[np.ndarray] = []  # exact values beyond the histogram's range

    def add(self, values: np.ndarray) -> None:
        """Take a block of the index (NaN = not valid: masked, no data or outside the AOI)."""
        flat = values.reshape(-1, values.shape[-1]) if values.ndim > 1 else values[None]
        for row in range(0, flat.shape[0], _ROWS):
            block = flat[row:row + _ROWS]
            valid = block[~np.isnan(block)].astype(np.float64)
            if valid.size:
                self._merge(valid)

    def _merge(self, valid: np.ndarray) -> None:
        n = int(valid.size)
        mean = float(valid.mean())
        deviations = valid - mean
        m2 = float(np.dot(deviations, deviations))  # BLAS: no squared temporary
        del deviations
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        scaled = valid - self.low
        scaled *= 1.0 / BIN_WIDTH
        if valid.min() >= self.low and valid.max() <= self.high:
            # the usual case, every value in range: truncation is the floor of a value ≥ 0,
            # and only the top edge (or a value rounding up to it) can reach index `bins`
            index = scaled.astype(np.int64)
            np.minimum(index, self.bins - 1, out=index)
            self.histogram += np.bincount(index, minlength=self.bins)
            return
        index = np.floor(scaled).astype(np.int64)
        index[valid == self.high] = self.bins - 1  # the top edge belongs to the last bin
        inside = (index >= 0) & (index < self.bins)
        self.histogram += np.bincount(index[inside], minlength=self.bins)
        self.outside.append(valid[~inside])

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
        cumulative = np.cumsum(self.histogram)
        for name, q in PERCENTILES.items():
            h = (self.count - 1) * q / 100.0
            k = math.floor(h)
            low = self._order_statistic(k, below, above, cumulative)
            high = self._order_statistic(min(k + 1, self.count - 1), below, above, cumulative)
            stats[name] = low + (h - k) * (high - low)
        return stats
