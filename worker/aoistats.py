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

from .compute import row_chunks

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

    def add(self, values: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Take a block of the index, (rows, cols) or (1, rows, cols): its valid pixels are
        where `valid` is True, or where it is not NaN (masked, no data, outside the AOI).
        CogWriter passes its valid mask, so the pixels are told apart only once."""
        flat = values.reshape(-1, values.shape[-1])
        keep = ~np.isnan(flat) if valid is None else valid.reshape(flat.shape)
        self.pixels += keep.size
        for rows in row_chunks(flat.shape):  # a cache-sized chunk of pixels at a time
            picked = flat[rows][keep[rows]]
            if picked.size:
                self._merge(picked)

    def _merge(self, picked: np.ndarray) -> None:
        n = int(picked.size)
        low, high = float(picked.min()), float(picked.max())
        self.minimum, self.maximum = min(self.minimum, low), max(self.maximum, high)
        valid = picked.astype(np.float64)
        mean = float(np.add.reduce(valid)) / n
        deviations = valid - mean
        m2 = float(np.einsum("i,i->", deviations, deviations))  # not BLAS: no idle threads
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        scaled = np.subtract(valid, self.low, out=deviations)
        scaled *= 1.0 / BIN_WIDTH
        if low >= self.low and high <= self.high:
            # the usual case, every value in range: truncation is the floor of a value ≥ 0,
            # and only the top edge (or a value rounding up to it) reaches index `bins`
            self.histogram += np.bincount(scaled.astype(np.intp), minlength=self.bins + 1)
            return
        index = np.floor(scaled).astype(np.int64)
        index[valid == self.high] = self.bins - 1  # the top edge belongs to the last bin
        inside = (index >= 0) & (index < self.bins)
        self.histogram += np.bincount(index[inside], minlength=self.bins + 1)
        self.outside.append(valid[~inside])

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
