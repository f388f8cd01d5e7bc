"""The capacity planner's inputs, measured, and its answer.

Owns `read()`: in one hop, the arrivals (jobs enqueued) and run times of the last
`[capacity] window` from the minute buckets, the hourly arrivals of the last week from
the hour buckets (the trend), the live worker daemons' concurrency from their
heartbeats and the backlog (jobs ready and waiting); and `Capacity`, the body of
`GET /api/v1/admin/jobs/capacity` and `fleetd capacity --json`: the whole queue's plan
(fleetd.analytics.capacity) and each job type's share of the load.
"""

from __future__ import annotations

import json
import math

from fleetd.analytics.capacity import Plan, plan
from fleetd.analytics.store import HOUR_MS, MINUTE_MS, Figures, total
from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.jobs.answer import Body
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
    types: list[TypeLoad]


class Capacity(Body):
    capacity: CapacityPlan


def _now(client: SyncClient) -> int:
    sec, usec = client.time()
    return int(sec) * 1000 + int(usec) // 1000


def _figures(raws: list[dict[str, str]]) -> dict[str, Figures]:
    """Per type (companies summed), over the given bucket hashes."""
    by_type: dict[str, list[Figures]] = {}
    for raw in raws:
        groups: dict[str, dict[str, int]] = {}
        for f, v in raw.items():
            kind, _, tail = f.partition("\n")
            jtype = tail.partition("\n")[0]
            counts = groups.setdefault(jtype, {})
            counts[kind] = counts.get(kind, 0) + int(v)
        for jtype, counts in groups.items():
            by_type.setdefault(jtype, []).append(Figures.of(counts))
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


def read(client: SyncClient, keys: Keys, window_s: float, target_p95: float) -> Capacity:
    now = _now(client)
    minutes = max(1, math.ceil(window_s * 1000 / MINUTE_MS))
    last_m, last_h = now // MINUTE_MS, now // HOUR_MS
    pipe = client.pipeline(transaction=False)
    for m in range(last_m - minutes + 1, last_m + 1):
        pipe.hgetall(keys.analytics_minute(m))
    for h in range(last_h - WEEK_HOURS + 1, last_h + 1):
        pipe.hgetall(keys.analytics_hour(h))
    replies = pipe.execute()
    recent = _figures(replies[:minutes])
    hours = replies[minutes : minutes + WEEK_HOURS]
    backlog = ready_depth(client, keys)  # ready jobs of every part of every queue
    span = max((now - (last_m - minutes + 1) * MINUTE_MS) / 1000, 1.0)
    whole = total(recent.values())
    ran = sum(whole.run.values())
    service = whole.run_ms / ran / 1000 if ran else 0.0
    hourly = [total(_figures([h]).values()).enqueued / 3600 for h in hours]
    # The current hour is partial: its rate is over the part gone by.
    hourly[-1] = hourly[-1] * 3600 / max((now - last_h * HOUR_MS) / 1000, 1.0)
    p: Plan = plan(whole.enqueued / span, service, _concurrency(client, keys, now), target_p95,
                   backlog, hourly)  # fmt: skip
    types = []
    for jtype, f in sorted(recent.items()):
        n = sum(f.run.values())
        s = f.run_ms / n / 1000 if n else None
        rate = f.enqueued / span
        types.append(TypeLoad(type=jtype, arrival_rate=round(rate, 4),
                              service_time=None if s is None else round(s, 4),
                              load=round(rate * (s or 0.0), 4)))  # fmt: skip
    return Capacity(capacity=_body(p, span, types))


def _r(v: float | None, digits: int = 4) -> float | None:
    return None if v is None or math.isinf(v) else round(v, digits)


def _body(p: Plan, span: float, types: list[TypeLoad]) -> CapacityPlan:
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
        types=types,
    )
