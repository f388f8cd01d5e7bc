"""The capacity planner: what a measured load needs, by the M/M/c queue (sans-IO).

Owns `plan()`. Jobs arrive at rate λ (per second) and take S seconds each on average;
c slots (the live workers' concurrency, summed) serve them. Treated as an M/M/c queue
(Poisson arrivals, exponential service times, one shared FIFO queue):

- offered load a = λ·S (busy slots on average); utilisation ρ = a / c;
- the chance a job waits at all is Erlang C, C(c, a) = c·B / (c − a·(1 − B)), with B
  Erlang B from its recursion B(0) = 1, B(k) = a·B(k−1) / (k + a·B(k−1));
- the wait W: mean C / (c/S − λ); P(W > t) = C·e^(−(c/S − λ)·t), so its p95 is
  ln(C / 0.05) / (c/S − λ) (0 when C ≤ 5 %);
- the concurrency needed: the smallest c whose wait p95 stays under the target;
- the backlog's drain time: backlog / (c/S − λ), the spare service rate;
- the trend: a least-squares line through hourly arrivals, and the day the offered
  load would reach c (ρ = 1) at that trend.

With ρ ≥ 1 the queue grows without bound: wait and drain time are None (infinite).
Real loads are burstier or steadier than Poisson and service times are rarely
exponential, so read the figures as a sizing guide (docs/OPERATIONS.md, "Capacity").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Plan", "erlang_c", "plan", "trend_now", "trend_per_hour"]

# The largest concurrency the planner will suggest: beyond it the answer is "more
# daemons than a plan can describe".
MAX_CONCURRENCY = 100_000
WAIT_QUANTILE = 0.95


def erlang_c(c: int, a: float) -> float:
    """The chance an arrival waits, for c servers and offered load a (< c); 1 at a ≥ c."""
    if a <= 0:
        return 0.0
    if a >= c:
        return 1.0
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return c * b / (c - a * (1 - b))


def _wait_p95(c: int, arrival: float, service: float) -> float | None:
    spare = c / service - arrival
    if spare <= 0:
        return None
    p_wait = erlang_c(c, arrival * service)
    if p_wait <= 1 - WAIT_QUANTILE:
        return 0.0
    return math.log(p_wait / (1 - WAIT_QUANTILE)) / spare


def trend_per_hour(hourly: Sequence[float]) -> float:
    """Least-squares slope of a series of hourly arrival rates (per s), per hour."""
    n = len(hourly)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(hourly) / n
    sxx = sum((x - mean_x) ** 2 for x in range(n))
    return sum((x - mean_x) * (y - mean_y) for x, y in enumerate(hourly)) / sxx


def trend_now(hourly: Sequence[float]) -> float:
    """The least-squares line's value at the last hour (the trend chart's anchor)."""
    n = len(hourly)
    if n == 0:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(hourly) / n
    return mean_y + trend_per_hour(hourly) * (n - 1 - mean_x)


@dataclass(frozen=True)
class Plan:
    arrival_rate: float
    """λ, jobs per second"""
    service_time: float
    """S, mean seconds per job"""
    concurrency: int
    """c, slots serving"""
    utilisation: float
    """ρ = λ·S / c"""
    wait_probability: float
    wait_mean: float | None
    """seconds; None = unbounded (ρ ≥ 1)"""
    wait_p95: float | None
    target_p95: float
    concurrency_needed: int
    backlog: int
    drain_eta: float | None
    """seconds to clear the backlog at the spare rate; None = never at this load"""
    trend_per_day: float
    """change of λ per day (jobs/s), from the hourly arrivals"""
    full_in_days: float | None
    """days until ρ reaches 1 at that trend; None = not growing (or already full)"""


def plan(
    arrival_rate: float,
    service_time: float,
    concurrency: int,
    target_p95: float,
    backlog: int = 0,
    hourly_arrivals: Sequence[float] = (),
) -> Plan:
    """The plan for a load of `arrival_rate` jobs/s of `service_time` s on
    `concurrency` slots, sized for a wait p95 of `target_p95` s."""
    lam, s, c = max(arrival_rate, 0.0), max(service_time, 1e-6), max(concurrency, 0)
    a = lam * s
    spare = c / s - lam
    stable = c > 0 and spare > 0
    p_wait = erlang_c(c, a) if c > 0 else 1.0
    needed = max(1, math.ceil(a))
    while needed < MAX_CONCURRENCY:
        p95 = _wait_p95(needed, lam, s)
        if p95 is not None and p95 <= target_p95:
            break
        needed += 1
    slope = trend_per_hour(hourly_arrivals) * 24
    full = None
    if slope > 0 and c > 0 and lam < c / s:
        full = (c / s - lam) / slope
    return Plan(
        arrival_rate=lam,
        service_time=s,
        concurrency=c,
        utilisation=a / c if c else math.inf,
        wait_probability=p_wait,
        wait_mean=p_wait / spare if stable else None,
        wait_p95=_wait_p95(c, lam, s) if stable else None,
        target_p95=target_p95,
        concurrency_needed=needed,
        backlog=backlog,
        drain_eta=backlog / spare if stable else None,
        trend_per_day=slope,
        full_in_days=full,
    )
