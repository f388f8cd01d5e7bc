"""`fleetd analytics`: run and wait time percentiles, throughput, failure rate and the
slowest attempts per job type, read straight from Redis (fleetd.analytics); and
`fleetd capacity`, the capacity planner (fleetd.analytics.capacity).

`--json` prints the body of `GET /api/v1/admin/jobs/analytics` (or `/capacity`) with
the same options; the table shows one line per group and, with `--slowest`, its
slowest attempts.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from fleetd.cli.common import print_json

if TYPE_CHECKING:
    from fleetd.engine import Engine

__all__ = ["add_parser", "capacity", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("analytics", help="run/wait percentiles and failure rate per job type")
    p.add_argument("--window", choices=["hour", "day", "week"], default="hour")
    p.add_argument("--by", choices=["type", "company", "type_company"], default="type")
    p.add_argument("--type", help="only this job type")
    p.add_argument("--company", help="only this company ('' = jobs of no company)")
    p.add_argument("--slowest", action="store_true", help="list each group's slowest attempts")
    p.add_argument("--json", action="store_true", help="print the API's JSON body")
    cap = sub.add_parser("capacity", help="utilisation, predicted wait, concurrency needed")
    cap.add_argument("--target", help="wait p95 target, e.g. 2s (default [capacity])")
    cap.add_argument("--json", action="store_true", help="print the API's JSON body")


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}ms" if v < 10_000 else f"{v / 1000:.1f}s"


def run(engine: Engine, a: argparse.Namespace) -> int:
    # The analytics package imports nothing the other commands need at start-up.
    from fleetd.analytics import answer, store

    window = store.WINDOWS[a.window]
    data = engine.link.run_sync(
        lambda c: store.read(c, engine.spaces.all_keys(c), window, a.company)
    )
    body = answer.build(data, a.by, a.type)
    if a.json:
        print_json(body.jsonable())
        return 0
    w = body.analytics
    print(f"last {w.window} ({w.step} buckets), percentiles within ±{w.error_bound:.1%}")
    head = ("GROUP", "DONE", "FAILED", "RETRIED", "FAIL%", "PER MIN", "RUN p50", "p95",
            "p99", "WAIT p50", "p95", "p99")  # fmt: skip
    rows = [head]
    for g in w.groups:
        name = "/".join(x if x else "(none)" for x in (g.type, g.company_id) if x is not None)
        rows.append((
            name, str(g.completed), str(g.failed), str(g.retried), f"{g.failure_rate:.1%}",
            f"{g.throughput_per_min:.1f}", _ms(g.run.p50), _ms(g.run.p95), _ms(g.run.p99),
            _ms(g.wait.p50), _ms(g.wait.p95), _ms(g.wait.p99),
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    if not w.groups:
        print("(no jobs in this window)")
    if a.slowest:
        for g in w.groups:
            name = "/".join(x if x else "(none)" for x in (g.type, g.company_id) if x is not None)
            slow = ", ".join(f"{s.job_id} {_ms(s.run_ms)}" for s in g.slowest) or "-"
            print(f"slowest {name}: {slow}")
    return 0


def _s(v: float | None) -> str:
    return "unbounded" if v is None else f"{v:.3g}s"


def capacity(engine: Engine, a: argparse.Namespace) -> int:
    from fleetd.analytics import capacity_read
    from fleetd.cli.common import duration

    c = engine.config.capacity
    target = duration("--target", a.target) if a.target else c.wait_p95_target
    if target <= 0:
        from fleetd.cli.common import fail

        fail("--target: must be more than 0s")
    body = engine.link.run_sync(
        lambda cl: capacity_read.read(cl, engine.spaces.all_keys(cl), c.window, target)
    )
    if a.json:
        print_json(body.jsonable())
        return 0
    p = body.capacity
    util = "-" if p.utilisation is None else f"{p.utilisation:.0%}"
    print(f"load over the last {p.window_s:.0f}s: {p.arrival_rate:.3g} jobs/s x "
          f"{p.service_time:.3g}s = {p.arrival_rate * p.service_time:.3g} busy slots")  # fmt: skip
    print(f"concurrency {p.concurrency}, utilisation {util}, "
          f"{p.wait_probability:.0%} of jobs wait")  # fmt: skip
    print(f"predicted wait: mean {_s(p.wait_mean)}, p95 {_s(p.wait_p95)} "
          f"(target {p.wait_p95_target:g}s)")  # fmt: skip
    print(f"concurrency needed for the target: {p.concurrency_needed}")
    eta = "never at this load" if p.drain_eta is None else f"{p.drain_eta:.0f}s"
    print(f"backlog {p.backlog}, drained in {eta}")
    full = "" if p.full_in_days is None else f", full in {p.full_in_days:.1f} days"
    print(f"trend: {p.trend_per_day:+.3g} jobs/s per day{full}")
    for t in p.types:
        st = "-" if t.service_time is None else f"{t.service_time:.3g}s"
        print(f"  {t.type}: {t.arrival_rate:.3g} jobs/s x {st} = {t.load:.3g} slots")
    return 0
