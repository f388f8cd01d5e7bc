"""The analytics answer, declared once (pydantic), and how a read window becomes it.

Owns the body of `GET /api/v1/admin/jobs/analytics` and of `fleetd analytics --json`
(`Analytics`), the grouping of the stored (type, company) figures by type, company or
both (`GROUPINGS`), and `build()`: per group the run and wait percentiles (p50, p95,
p99, mean), throughput, failure rate, counts, the slowest attempts and one point per
bucket for the charts.
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge

from fleetd.analytics.histogram import ERROR_BOUND, percentile, percentiles
from fleetd.analytics.store import MARKS, Figures, Group, WindowData, total
from fleetd.jobs.answer import Body, Timestamp, format_ts

__all__ = ["GROUPINGS", "Analytics", "build"]

GROUPINGS = ("type", "company", "type_company")

Count = Annotated[int, Ge(0)]
Ms = Annotated[float, Ge(0)]


class Times(Body):
    """Percentiles of one kind of time in ms (estimates: see `error_bound`); null
    when nothing was measured."""

    count: Count
    p50: Ms | None
    p95: Ms | None
    p99: Ms | None
    mean: Ms | None


class Slow(Body):
    job_id: str
    run_ms: Count


class Point(Body):
    """One bucket of the window: [t, t + step), with its own run and wait percentiles
    in ms (null when nothing was measured in it)."""

    t: Timestamp
    completed: Count
    failed: Count
    retried: Count
    enqueued: Count
    run_p50: Ms | None
    run_p95: Ms | None
    run_p99: Ms | None
    wait_p50: Ms | None
    wait_p95: Ms | None
    wait_p99: Ms | None


class GroupFigures(Body):
    type: str | None
    """the job type (null when grouped by company only)"""
    company_id: str | None
    """the company ('' = jobs of no company; null when grouped by type only)"""
    enqueued: Count
    completed: Count
    retried: Count
    """attempts that failed and will be retried"""
    failed: Count
    """jobs that failed for good"""
    throughput_per_min: Ms
    """jobs completed or failed for good per minute over the window"""
    failure_rate: Annotated[float, Ge(0)]
    """failed / (completed + failed), 0 to 1"""
    run: Times
    """run time: start of an attempt to its end"""
    wait: Times
    """wait time: due (enqueue, run_at, retry promotion, requeue) to start"""
    slowest: list[Slow]
    """the slowest attempts that ended in the window's hours, slowest first"""
    series: list[Point]


class AnalyticsWindow(Body):
    window: str
    step: str
    since: Timestamp
    until: Timestamp
    by: str
    error_bound: float
    """relative error of every percentile against the exact nearest-rank value (below
    1 ms: within 0.5 ms)"""
    groups: list[GroupFigures]


class Analytics(Body):
    analytics: AnalyticsWindow


def _times(hist: dict[int, int], total_ms: int) -> Times:
    n = sum(hist.values())

    def p(q: float) -> float | None:
        v = percentile(hist, q)
        return None if v is None else round(v, 2)

    mean = round(total_ms / n, 2) if n else None
    return Times(count=n, p50=p(50), p95=p(95), p99=p(99), mean=mean)


def _key(group: Group, by: str) -> tuple[str | None, str | None]:
    jtype, company = group
    if by == "type":
        return jtype, None
    if by == "company":
        return None, company
    return jtype, company


def build(data: WindowData, by: str, job_type: str | None = None) -> Analytics:
    """The answer for `data` grouped `by` (one of GROUPINGS), only `job_type` if given."""
    keyed: dict[tuple[str | None, str | None], list[Group]] = {}
    for g in sorted(data.groups()):
        if job_type is None or g[0] == job_type:
            keyed.setdefault(_key(g, by), []).append(g)
    since = data.starts[0]
    minutes = max((data.now - since) / 60_000, 1 / 60)
    out = []
    for (jtype, company), members in sorted(keyed.items(), key=lambda kv: str(kv[0])):
        if len(members) == 1:  # by type with one company: the bucket's own figures
            [one] = members
            points = [b.get(one) or Figures() for b in data.buckets]
        else:
            points = [total(b[g] for g in members if g in b) for b in data.buckets]
        whole = total(points)
        slow = sorted((s for g in members for s in data.slowest.get(g, [])), key=lambda s: -s[1])[
            :5
        ]
        out.append(_group(jtype, company, whole, points, data.starts, slow, minutes))
    window = AnalyticsWindow(
        window=data.window.name,
        step=data.window.step,
        since=_ts(since),
        until=_ts(data.now),
        by=by,
        error_bound=round(ERROR_BOUND, 4),
        groups=out,
    )
    return Analytics(analytics=window)


def _group(
    jtype: str | None,
    company: str | None,
    f: Figures,
    points: list[Figures],
    starts: list[int],
    slow: list[tuple[str, int]],
    minutes: float,
) -> GroupFigures:
    ended = f.completed + f.failed
    series = []
    for t, p in zip(starts, points, strict=True):
        # A sealed bucket of one group brings its own; a sum of groups is computed.
        marks = p.marks or (*percentiles(p.run, MARKS), *percentiles(p.wait, MARKS))
        r50, r95, r99, w50, w95, w99 = (_round(v) for v in marks)
        series.append(
            Point(
                t=_ts(t),
                completed=p.completed,
                failed=p.failed,
                retried=p.retried,
                enqueued=p.enqueued,
                run_p50=r50,
                run_p95=r95,
                run_p99=r99,
                wait_p50=w50,
                wait_p95=w95,
                wait_p99=w99,
            )
        )
    return GroupFigures(
        type=jtype,
        company_id=company,
        enqueued=f.enqueued,
        completed=f.completed,
        retried=f.retried,
        failed=f.failed,
        throughput_per_min=round(ended / minutes, 3),
        failure_rate=round(f.failed / ended, 4) if ended else 0.0,
        run=_times(f.run, f.run_ms),
        wait=_times(f.wait, f.wait_ms),
        slowest=[Slow(job_id=i, run_ms=ms) for i, ms in slow],
        series=series,
    )


def _ts(ms: int) -> str:
    return format_ts(ms) or ""


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)
