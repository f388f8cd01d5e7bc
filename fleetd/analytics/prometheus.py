"""Schedule accuracy on `/metrics`: the lateness of scheduled firings as Prometheus
families, from what schedule_fire.lua keeps (fleetd/backend/lua/_analytics.lua).

Owns `schedule_families(client, keys)`, read in the scrape's Redis hop:
- `fleetd_schedule_lateness_seconds`, a histogram over every firing of every schedule
  (the scheduler stats hash), its `le` bounds the analytics buckets' upper bounds,
  coarsened to one per doubling (1 ms to ~1 h) so a scrape stays small;
- `fleetd_schedule_lateness_p50_seconds` / `_p99_seconds` and
  `fleetd_schedule_missed{schedule}` per schedule (its name), for the first
  MAX_SCHEDULES schedules by creation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from fleetd.analytics.histogram import PER_OCTAVE, bucket_bounds, estimate, percentile
from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient

__all__ = ["MAX_SCHEDULES", "schedule_families"]

# Per-schedule series are for a dashboard of tens or hundreds of schedules; beyond this
# many a scrape would read every schedule hash each time.
MAX_SCHEDULES = 1_000
# Histogram `le` bounds: every PER_OCTAVE-th bucket's upper bound, 1 ms .. 2^22 ms (~70 min).
_LE_BUCKETS = range(0, 22 * PER_OCTAVE + 1, PER_OCTAVE)


def _hist(fields: Mapping[str, str]) -> dict[int, int]:
    return {int(k[5:]): int(v) for k, v in fields.items() if k.startswith("late:")}


def lateness_histogram(stats: Mapping[str, str]) -> HistogramMetricFamily:
    hist = _hist(stats)
    total = sum(hist.values())
    buckets: list[tuple[str, float]] = []
    for k in _LE_BUCKETS:
        high = bucket_bounds(k)[1]
        below = sum(n for b, n in hist.items() if b <= k)
        buckets.append((f"{high / 1000:g}", below))
    buckets.append(("+Inf", total))
    family = HistogramMetricFamily(
        "fleetd_schedule_lateness_seconds",
        "How late scheduled occurrences fired (fire time - due time), all schedules",
    )
    # The sum is not kept across schedules: each bucket's geometric middle stands in.
    family.add_metric([], buckets, sum_value=_estimated_sum(hist))
    return family


def _estimated_sum(hist: Mapping[int, int]) -> float:
    return sum(estimate(k) * n for k, n in hist.items()) / 1000


def per_schedule(rows: Iterable[Mapping[str, str]]) -> list[Metric]:
    p50 = GaugeMetricFamily(
        "fleetd_schedule_lateness_p50_seconds",
        "Median lateness of a schedule's firings (estimate, ±9.05 %)",
        labels=["schedule"],
    )
    p99 = GaugeMetricFamily(
        "fleetd_schedule_lateness_p99_seconds",
        "99th percentile lateness of a schedule's firings (estimate, ±9.05 %)",
        labels=["schedule"],
    )
    missed = GaugeMetricFamily(
        "fleetd_schedule_missed", "Occurrences a schedule missed (misfires)", labels=["schedule"]
    )
    for h in rows:
        name = h.get("name") or h.get("id") or "?"
        missed.add_metric([name], int(h.get("missed") or 0))
        hist = _hist(h)
        if hist:
            p50.add_metric([name], (percentile(hist, 50) or 0) / 1000)
            p99.add_metric([name], (percentile(hist, 99) or 0) / 1000)
    return [p50, p99, missed]


def schedule_families(client: SyncClient, keys: Keys, stats: Mapping[str, str]) -> list[Metric]:
    """The families above; `stats` is the scheduler stats hash the scrape already read."""
    ids = client.zrange(keys.schedules_all, 0, MAX_SCHEDULES - 1)
    pipe = client.pipeline(transaction=False)
    for schedule_id in ids:
        pipe.hgetall(keys.schedule(schedule_id))
    rows = [h for h in pipe.execute() if h]
    return [lateness_histogram(stats), *per_schedule(rows)]
