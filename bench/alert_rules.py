"""What evaluating alert rules costs, against a private, real redis-server.

Owns one measurement (docs: bench/README.md, "Alert rules"): the time of one
`Alerts.evaluate()` (the built-ins' read, the rules' read and the readings) on the
minute buckets of 20 busy job types (bench/analytics.write_week's layout: ~40 run and
~40 wait buckets per type and minute), for
- no rules (today's five built-ins only),
- one rule of each of the eight metrics with the default 5-minute window,
- the same eight with a 1-hour window (60 minute hashes read),
- a company-scoped backlog rule over 10,000 waiting jobs (their type and company read).
Sequential evaluations, p50 and p95, in-process (the daemon's own path); the first
evaluation of a rule set reads and parses every minute of its window, later ones the
current minute only (closed minutes are kept), so the first is printed apart.

Run: `.venv/bin/python bench/alert_rules.py`. Prints `name: value unit` lines and the
load average before and after.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from analytics import LOOPBACK, config, emit, loadavg, write_week
from redis_server import RedisServer

from fleetd.backend.keys import Keys
from fleetd.config import AlertRuleConfig, AlertsConfig
from fleetd.config.alert_rules import METRICS
from fleetd.engine import Engine
from fleetd.runtime.alerts import Alerts

ROUNDS = 30
WAITING = 10_000


def rules(window: float) -> tuple[AlertRuleConfig, ...]:
    scoped = [
        AlertRuleConfig(name=f"r_{m}", metric=m, threshold=1.0, window=window,
                        type="type_03" if spec.scoped else "")
        for m, spec in METRICS.items()
        if m != "backlog"
    ]  # fmt: skip
    return (*scoped, AlertRuleConfig(name="r_backlog", metric="backlog", threshold=1.0))


async def timed(engine: Engine, settings: AlertsConfig) -> list[float]:
    alerts = Alerts(engine, "bench", settings)
    t = time.perf_counter()
    await alerts.evaluate()
    emit("  first evaluation", (time.perf_counter() - t) * 1000, "ms")
    out = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        await alerts.evaluate()
        out.append((time.perf_counter() - t) * 1000)
    return out


def report(name: str, ms: list[float], note: str) -> None:
    p95 = sorted(ms)[int(0.95 * len(ms)) - 1]
    emit(f"{name}_p50", statistics.median(ms), "ms", note)
    emit(f"{name}_p95", p95, "ms")


async def bench(url: str, state: Path) -> None:
    engine = Engine.build(config(url, "bench", state), daemon=True)
    await engine.link.connect(engine.scripts.all())
    base = AlertsConfig(interval=600.0)
    try:
        report("builtins_only", await timed(engine, base), "the five built-in alerts")
        five = dataclasses.replace(base, rules=rules(300.0))
        report("eight_rules_5m", await timed(engine, five), "8 rules, 5-minute window")
        hour = dataclasses.replace(base, rules=rules(3600.0))
        report("eight_rules_1h", await timed(engine, hour), "8 rules, 1-hour window")
        plan = [{"type": "noop", "company_id": f"c{i % 20}"} for i in range(WAITING)]
        rows = engine.ops.prepare_many(plan)
        engine.link.run_sync(engine.ops.enqueue_rows, rows)
        scoped = dataclasses.replace(base, rules=(AlertRuleConfig(
            name="b", metric="backlog", threshold=1.0, company="c3"),))  # fmt: skip
        report("scoped_backlog", await timed(engine, scoped), f"{WAITING} jobs waiting")
    finally:
        engine.close()


def main() -> int:
    print(f"# fleetd alert rules bench; loadavg before {loadavg()}")
    with tempfile.TemporaryDirectory(prefix="fleetd-bench-") as tmp:
        work = Path(tmp)
        with RedisServer(work / "redis", aof=False) as server:
            if not server.url.startswith(f"redis://{LOOPBACK}:"):
                raise SystemExit(f"refusing to benchmark a non-loopback Redis: {server.url}")
            write_week(server.url, Keys("bench"))
            trio.run(bench, server.url, work / "state")
    print(f"# loadavg after {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
