"""The capacity planner's inputs, measured, and its answer.

Owns `read()`: the arrivals (jobs enqueued) and run times of the last `[capacity]
window` from the minute buckets, the hourly arrivals of the last week from the hour
buckets (the trend; closed buckets through their seals, fleetd.analytics.sealed), the
live worker daemons' concurrency from their heartbeats and the backlog (jobs ready
and waiting); and `Capacity`, the body of `GET /api/v1/admin/jobs/capacity` and
`fleetd capacity --json`: the whole queue's plan (fleetd.analytics.capacity), each job
type's share of the load, and the week's hourly arrivals with the trend line's anchor
and the rate at full utilisation (the Capacity page's trend chart).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from fleetd.analytics.capacity import Plan, plan, trend_now
from fleetd.analytics.store import HOUR_MS, MINUTE_MS, Figures, Group, buckets, total
from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.jobs.answer import Body, Timestamp, format_ts
from fleetd.jobs.parts import ready_depth

__all__ = ["Capacity", "read"]

WEEK_HOURS = 168


class TypeLoad(Body):
    type: str
    arrival_rate: float
    """jobs enqueued per second over the window"""
    service_time: float | None
    """mean run time in seconds (null: none ran)"""
    load: float
    """busy slots on average (arrival_rate × service_time)"""


class HourRate(Body):
    t: Timestamp
    """the hour's start"""
    arrival_rate: float
    """jobs enqueued per second in that hour (the current one: so far)"""


class CapacityPlan(Body):
    window_s: float
    arrival_rate: float
    """λ: jobs enqueued per second over the window"""
    service_time: float
    """S: mean run time of the attempts that ended in the window, seconds"""
    concurrency: int
    """c: slots of the live worker daemons"""
    utilisation: float | None
    """ρ = λ·S / c (null without workers)"""
    wait_probability: float
    wait_mean: float | None
    """predicted mean wait, seconds (null: unbounded, ρ ≥ 1)"""
    wait_p95: float | None
    wait_p95_target: float
    concurrency_needed: int
    """the fewest slots keeping the predicted wait p95 under the target"""
    backlog: int
    drain_eta: float | None
    """seconds to clear the backlog at the spare rate (null: never at this load)"""
    trend_per_day: float
    """change of λ per day, from the week's hourly arrivals"""
    full_in_days: float | None
    """days until ρ reaches 1 at that trend (null: not growing)"""
    capacity_rate: float | None
    """c / S: the arrival rate at ρ = 1, jobs per second (null without workers or jobs)"""
    trend_now: float
    """the trend line's arrival rate at the current hour (jobs/s)"""
    hourly: list[HourRate]
    """the last week's arrivals per hour, oldest first"""
    types: list[TypeLoad]


class Capacity(Body):
    capacity: CapacityPlan


def _now(client: SyncClient) -> int:
    sec, usec = client.time()
    return int(sec) * 1000 + int(usec) // 1000


def _figures(read: list[dict[Group, Figures]]) -> dict[str, Figures]:
    """Per type (companies summed), over the given buckets."""
    by_type: dict[str, list[Figures]] = {}
    for bucket in read:
        for (jtype, _company), f in bucket.items():
            by_type.setdefault(jtype, []).append(f)
    return {t: total(fs) for t, fs in by_type.items()}


def _concurrency(client: SyncClient, keys: Keys, now: int) -> int:
    alive = client.zrangebyscore(keys.heartbeats, now, "+inf")
    slots = 0
    for raw in client.hmget(keys.daemons, alive) if alive else []:
        if raw:
            d = json.loads(raw)
            if "worker" in d.get("roles", ()):
                slots += int(d.get("concurrency") or 0)
    return slots


def read(
    client: SyncClient, keys: Keys | Sequence[Keys], window_s: float, target_p95: float
) -> Capacity:
    """The plan from what `keys` recorded: the namespace's key spaces, its own first
    (fleetd.backend.spaces; one Keys: that space alone), their arrivals, run times and
    backlogs summed; the workers' heartbeats are the namespace's."""
    spaces = [keys] if isinstance(keys, Keys) else list(keys)
    now = _now(client)
    minutes = max(1, math.ceil(window_s * 1000 / MINUTE_MS))
    last_m, last_h = now // MINUTE_MS, now // HOUR_MS
    minute_indexes = list(range(last_m - minutes + 1, last_m + 1))
    recent = _figures(buckets(client, spaces, MINUTE_MS, minute_indexes, now))
    hour_indexes = list(range(last_h - WEEK_HOURS + 1, last_h + 1))
    hours = buckets(client, spaces, HOUR_MS, hour_indexes, now)
    # Ready jobs of every part of every queue, in each space.
    backlog = sum(ready_depth(client, space) for space in spaces)
    span = max((now - (last_m - minutes + 1) * MINUTE_MS) / 1000, 1.0)
    whole = total(recent.values())
    ran = sum(whole.run.values())
    service = whole.run_ms / ran / 1000 if ran else 0.0
    hourly = [sum(f.enqueued for f in h.values()) / 3600 for h in hours]
    # The current hour is partial: its rate is over the part gone by.
    hourly[-1] = hourly[-1] * 3600 / max((now - last_h * HOUR_MS) / 1000, 1.0)
    p: Plan = plan(whole.enqueued / span, service, _concurrency(client, spaces[0], now), target_p95,
                   backlog, hourly)  # fmt: skip
    types = []
    for jtype, f in sorted(recent.items()):
        n = sum(f.run.values())
        s = f.run_ms / n / 1000 if n else None
        rate = f.enqueued / span
        types.append(TypeLoad(type=jtype, arrival_rate=round(rate, 4),
                              service_time=None if s is None else round(s, 4),
                              load=round(rate * (s or 0.0), 4)))  # fmt: skip
    points = [HourRate(t=format_ts(i * HOUR_MS) or "", arrival_rate=round(r, 6))
              for i, r in zip(hour_indexes, hourly, strict=True)]  # fmt: skip
    full = p.concurrency / p.service_time if p.concurrency and ran else None
    return Capacity(capacity=_body(p, span, types, full, trend_now(hourly), points))


def _r(v: float | None, digits: int = 4) -> float | None:
    return None if v is None or math.isinf(v) else round(v, digits)


def _body(
    p: Plan, span: float, types: list[TypeLoad], full: float | None, anchor: float,
    hourly: list[HourRate],
) -> CapacityPlan:  # fmt: skip
    return CapacityPlan(
        window_s=round(span, 1),
        arrival_rate=round(p.arrival_rate, 4),
        service_time=round(p.service_time, 4),
        concurrency=p.concurrency,
        utilisation=_r(p.utilisation),
        wait_probability=round(p.wait_probability, 4),
        wait_mean=_r(p.wait_mean),
        wait_p95=_r(p.wait_p95),
        wait_p95_target=p.target_p95,
        concurrency_needed=p.concurrency_needed,
        backlog=p.backlog,
        drain_eta=_r(p.drain_eta, 1),
        trend_per_day=round(p.trend_per_day, 6),
        full_in_days=_r(p.full_in_days, 2),
        capacity_rate=_r(full, 6),
        trend_now=round(anchor, 6),
        hourly=hourly,
        types=types,
    )
