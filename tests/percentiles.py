"""Helpers of the tests that check estimated percentiles (analytics buckets, schedule
lateness) against the exact ones of the raw values, within the histograms' stated
bound."""

from __future__ import annotations

import math

from fleetd.analytics import histogram


def nearest_rank(values: list[int], p: float) -> int:
    """The exact p-th percentile of `values` by the nearest-rank method."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def within_bound(estimate: float | None, exact: int) -> bool:
    """Whether `estimate` is within the histograms' stated error of `exact` (0.01 ms:
    the answers' rounding)."""
    assert estimate is not None
    slack = histogram.ABSOLUTE_BOUND_MS if exact < 1 else exact * histogram.ERROR_BOUND
    return abs(estimate - exact) <= slack + 0.01
