"""Log-spaced time histograms and percentile estimates from them (sans-IO).

Owns the bucket rule that fleetd/backend/lua/_analytics.lua applies when it records a
run or wait time: bucket 0 holds [0, 1) ms and bucket k >= 1 holds
[2^((k-1)/4), 2^(k/4)) ms, so neighbouring bounds differ by 2^(1/4) ≈ 1.19. A
percentile is estimated by the nearest-rank rule (the ceil(p·n)-th smallest sample)
and answered as the geometric middle of the bucket that holds that sample: the answer
is within ERROR_BOUND (2^(1/8) - 1 ≈ 9.05 %) of the true nearest-rank value, or within
0.5 ms of it below 1 ms. Histograms of minutes and hours add up bucket by bucket, so a
window's percentile is as exact as a minute's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

__all__ = [
    "ERROR_BOUND",
    "MAX_BUCKET",
    "PER_OCTAVE",
    "bucket_bounds",
    "bucket_of",
    "estimate",
    "merge",
    "percentile",
    "percentiles",
]

# Mirrors AN_PER_OCTAVE and AN_MAX_BUCKET of _analytics.lua (tests/analytics pins them
# through the scripts).
PER_OCTAVE = 4
MAX_BUCKET = 160
# Relative error of an estimate: the geometric middle of [a, a·r) is a·√r, within a
# factor √r = 2^(1/8) of any value in the bucket.
ERROR_BOUND = 2 ** (1 / (2 * PER_OCTAVE)) - 1
# Below 1 ms (bucket 0) the estimate is 0.5 ms: within this many ms of the value.
ABSOLUTE_BOUND_MS = 0.5


def bucket_of(ms: float) -> int:
    """The bucket of a time in ms, as _analytics.lua computes it."""
    if ms < 1:
        return 0
    return min(math.floor(PER_OCTAVE * math.log(ms) / math.log(2)) + 1, MAX_BUCKET)


def bucket_bounds(k: int) -> tuple[float, float]:
    """[low, high) of bucket k in ms."""
    if k <= 0:
        return 0.0, 1.0
    return 2 ** ((k - 1) / PER_OCTAVE), 2 ** (k / PER_OCTAVE)


def estimate(k: int) -> float:
    """The value a bucket stands for: its geometric middle (0.5 ms for bucket 0)."""
    if k <= 0:
        return ABSOLUTE_BOUND_MS
    return 2 ** ((k - 0.5) / PER_OCTAVE)


def merge(histograms: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """Bucket-wise sum."""
    out: dict[int, int] = {}
    for h in histograms:
        for k, n in h.items():
            out[k] = out.get(k, 0) + n
    return out


def percentile(hist: Mapping[int, int], p: float) -> float | None:
    """The estimated nearest-rank p-th percentile (0 < p <= 100) in ms; None for an
    empty histogram."""
    total = sum(hist.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(p / 100 * total))
    seen = 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= rank:
            return estimate(k)
    return estimate(max(hist))  # pragma: no cover - seen always reaches total


def percentiles(hist: Mapping[int, int], ps: Iterable[float]) -> list[float | None]:
    """percentile() of each of `ps` (ascending), sorting the buckets once: the charts
    ask three of every bucket of a window."""
    total = sum(hist.values())
    if total <= 0:
        return [None for _ in ps]
    out: list[float | None] = []
    ranks = iter(sorted(hist))
    k, seen = -1, 0
    for p in ps:
        rank = max(1, math.ceil(p / 100 * total))
        while seen < rank:
            k = next(ranks)
            seen += hist[k]
        out.append(estimate(k))
    return out
