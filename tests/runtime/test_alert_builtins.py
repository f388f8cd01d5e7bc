"""The five built-in alerts are rules (fleetd.runtime.alert_rules.rules_of): listed with
the user's rules with the `[alerts]` keys' thresholds, overridden by a rule of their
name, turned off by `enabled = false`, and raised and resolved by the rule engine from
real failing, slow and waiting jobs run by a real worker pool — with the event shape
they always had. The sans-IO clock is a number the test moves; hold times are 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import trio
from alert_clock import NOW, Clock
from engine_jobs import alert_events as events
from pool import registry_with, running_pool, wait_status
from prometheus_client import CollectorRegistry, generate_latest

from fleetd.config import AlertRuleConfig, AlertsConfig, Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus
from fleetd.runtime.alert_rules import rules_of
from fleetd.runtime.alerts import Alerts
from fleetd.schedules.service import Scheduler, SchedulerSettings
from fleetd.schedules.store import ScheduleOps

BUILT_IN = ["failure_rate", "backlog", "no_worker", "redis_unreachable", "scheduler_missed"]
# What a built-in's event said before it was a rule, and still says.
SHAPE = {"type", "alert", "value", "message", "daemon_id", "ts"}


def make_alerts(engine: Engine, settings: AlertsConfig = NOW, *rules: AlertRuleConfig) -> Alerts:
    return Alerts(engine, "a", dataclasses.replace(settings, rules=rules), clock=Clock())


async def run_jobs(engine: Engine, plan: list[dict[str, Any]]) -> None:
    for r in await engine.queue.enqueue_many(plan):
        await wait_status(engine, r.job_id, JobStatus.COMPLETED, JobStatus.FAILED, limit=30)


def failing(n: int, company: str | None = None) -> list[dict[str, Any]]:
    job = {"type": "noop", "data": {"fail_attempts": 1}, "max_retries": 0}
    return [job | ({"company_id": company} if company else {})] * n


def fine(n: int, sleep_ms: int = 0, company: str | None = None) -> list[dict[str, Any]]:
    job = {"type": "noop", "data": {"sleep_ms": sleep_ms}}
    return [job | ({"company_id": company} if company else {})] * n


def test_built_ins_are_listed_with_the_rules() -> None:
    settings = dataclasses.replace(
        NOW, failure_rate=35, backlog=7, raise_after=12.0, clear_after=34.0, rules=(
            AlertRuleConfig(name="mine", metric="daemon_memory", threshold=512),
            AlertRuleConfig(name="backlog", threshold=500, company="acme"),
            AlertRuleConfig(name="scheduler_missed", enabled=False),
        ),
    )  # fmt: skip
    rules = rules_of(settings)
    assert [r.name for r in rules] == [
        "failure_rate", "backlog", "no_worker", "redis_unreachable", "mine"]  # fmt: skip
    failure, backlog, no_worker, redis_down, _mine = rules
    # The [alerts] keys set the built-ins: threshold, window, hold times, 80% to clear.
    assert (failure.metric, failure.threshold, failure.window, failure.min_jobs) == (
        "failure_rate", 35, 60.0, 10)  # fmt: skip
    assert (failure.for_, failure.resolve_for, failure.resolve_at) == (12.0, 34.0, 28.0)
    # The override took the built-in's place and metric; the rest is its own.
    assert (backlog.metric, backlog.threshold, backlog.company, backlog.for_) == (
        "backlog", 500, "acme", 30.0)  # fmt: skip
    assert (no_worker.metric, no_worker.threshold, no_worker.resolve_at) == ("workers", 1, 1)
    assert redis_down.metric == "redis_down" and redis_down.local


async def test_failure_rate_from_real_failing_jobs(config: Config) -> None:
    async with running_pool(config, registry_with(), concurrency=5) as (engine, _pool):
        alerts = make_alerts(engine)
        assert [r.name for r in alerts.custom.rules] == BUILT_IN
        await run_jobs(engine, failing(4) + fine(5))
        await alerts.evaluate()
        assert "failure_rate" not in alerts.active  # 9 finished: too few to judge
        await run_jobs(engine, failing(4))
        await alerts.evaluate()
        assert "failure_rate" in alerts.active  # 8 of 13 = 62% > 20%
        assert alerts.values["failure_rate"].text == "62% of 13 jobs failed in the last 60s"
        # 8 of 45 = 17.8%: under the threshold, over the clear level (16%): held…
        await run_jobs(engine, fine(32))
        await alerts.evaluate()
        assert "failure_rate" in alerts.active
        # …8 of 50 = 16% is at it.
        await run_jobs(engine, fine(5))
        await alerts.evaluate()
        assert "failure_rate" not in alerts.active
        sent = events(engine, "failure_rate")
    assert [e["type"] for e in sent] == ["alert.raised", "alert.resolved"]
    assert all(set(e) == SHAPE for e in sent)  # the built-in's shape, unchanged
    assert sent[0]["value"] == round(100 * 8 / 13, 6)


async def test_backlog_honours_the_alerts_key(config: Config, engine: Engine) -> None:
    alerts = make_alerts(engine, dataclasses.replace(NOW, backlog=5))
    await engine.queue.enqueue_many(fine(6))
    await alerts.evaluate()
    assert "backlog" in alerts.active and alerts.values["backlog"].text == "6 jobs waiting"
    async with running_pool(config, registry_with(), concurrency=5) as (pooled, _pool):
        with trio.fail_after(20):
            while pooled.link.client.zcard(pooled.keys.queue):
                await trio.sleep(0.05)
    await alerts.evaluate()
    assert "backlog" not in alerts.active
    sent = events(engine, "backlog")
    assert [e["type"] for e in sent] == ["alert.raised", "alert.resolved"]
    assert all(set(e) == SHAPE for e in sent)


async def test_a_rule_of_its_name_overrides_a_built_in(config: Config) -> None:
    """`failure_rate` overridden: only company acme's failures, at 50%; its events say
    so (a rule's shape), and the [alerts] threshold of 20% no longer applies."""
    override = AlertRuleConfig(name="failure_rate", metric="failure_rate", company="acme",
                               threshold=50, for_=0.0, resolve_for=0.0, min_jobs=4)  # fmt: skip
    async with running_pool(config, registry_with(), concurrency=5) as (engine, _pool):
        alerts = make_alerts(engine, NOW, override)
        await run_jobs(engine, failing(10, "beta") + fine(10, company="beta"))
        await alerts.evaluate()
        assert "failure_rate" not in alerts.active  # 50% of all, but none of acme's
        await run_jobs(engine, failing(3, "acme") + fine(1, company="acme"))
        await alerts.evaluate()
        assert "failure_rate" in alerts.active
        assert alerts.values["failure_rate"].value == 75
        await run_jobs(engine, fine(4, company="acme"))
        await alerts.evaluate()
        assert "failure_rate" not in alerts.active  # 3 of 8 = 37.5% <= 40%
        sent = events(engine, "failure_rate")
    assert [e["type"] for e in sent] == ["alert.raised", "alert.resolved"]
    assert sent[0]["metric"] == "failure_rate" and sent[0]["company_scope"] == "acme"
    assert sent[0]["threshold"] == 50 and sent[0]["resolve"] == 40


async def test_a_slow_job_rule_replaces_the_backlog_built_in(config: Config) -> None:
    """A built-in's name may take another metric: `backlog` becomes "run p95 over
    0.3 s" for slow real jobs, raised and resolved like any rule."""
    slow = AlertRuleConfig(name="backlog", metric="run_p95", threshold=0.3, for_=0.0,
                           resolve_for=0.0, company="s")  # fmt: skip
    async with running_pool(config, registry_with(), concurrency=10) as (engine, _pool):
        alerts = make_alerts(engine, dataclasses.replace(NOW, backlog=1), slow)
        await run_jobs(engine, fine(10, sleep_ms=600, company="s"))
        await alerts.evaluate()
        assert "backlog" in alerts.active and alerts.values["backlog"].value > 0.54
        await run_jobs(engine, fine(190, company="s"))
        await alerts.evaluate()
        assert "backlog" not in alerts.active
        assert [e["type"] for e in events(engine, "backlog")] == [
            "alert.raised", "alert.resolved"]  # fmt: skip


async def test_a_disabled_built_in_is_not_evaluated(engine: Engine) -> None:
    off = AlertRuleConfig(name="no_worker", enabled=False)
    alerts = make_alerts(engine, NOW, off)
    await alerts.evaluate()  # no worker alive: the built-in would raise
    assert alerts.active == [] and "no_worker" not in alerts.values
    registry = CollectorRegistry(auto_describe=False)
    registry.register(alerts.collector())
    text = generate_latest(registry).decode()
    assert 'alert="no_worker"' not in text and 'fleetd_alert_active{alert="backlog"} 0.0' in text
    assert events(engine, "no_worker") == []
    # The same daemon without the override raises it.
    plain = make_alerts(engine)
    await plain.evaluate()
    assert plain.active == ["no_worker"]


async def test_scheduler_missed_from_a_real_scheduler_outage(engine: Engine) -> None:
    """A schedule firing every second, `skip` on misfire: a real scheduler down for 2.5 s
    past its 0.5 s grace misses occurrences, and the built-in rule sees the counter grow."""
    ops = ScheduleOps.from_engine(engine)
    body = {"name": "tick", "job_type": "noop", "schedule": "1s", "misfire_policy": "skip"}
    schedule_id = engine.link.run_sync(lambda c: ops.add(c, body)).id
    alerts = make_alerts(engine)
    clock = alerts.clock
    assert isinstance(clock, Clock)
    settings = SchedulerSettings(misfire_grace=0.5, create_defaults=False,
                                 reconnect_max_backoff=0.5)  # fmt: skip

    def record() -> Any:
        return engine.link.run_sync(ops.require, schedule_id)

    async def scheduler_until(done: Any) -> None:
        s = Scheduler(engine.link, ops, "d0", settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(s.run)
            with trio.fail_after(10):
                while not done(record()):
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()

    await scheduler_until(lambda r: r.runs >= 2)
    await alerts.evaluate()  # the baseline: on time, nothing missed
    assert "scheduler_missed" not in alerts.active
    await trio.sleep(2.5)  # the outage
    await scheduler_until(lambda r: r.missed >= 1)
    missed = record().missed
    clock.t += 10
    await alerts.evaluate()
    assert "scheduler_missed" in alerts.active
    assert alerts.values["scheduler_missed"].value == missed
    assert alerts.values["scheduler_missed"].text == (
        f"{missed} scheduled executions missed in the last 60s")  # fmt: skip
    clock.t += 70  # past the [alerts] window: nothing missed since
    await alerts.evaluate()
    assert "scheduler_missed" not in alerts.active
    sent = events(engine, "scheduler_missed")
    assert [e["type"] for e in sent] == ["alert.raised", "alert.resolved"]
    assert all(set(e) == SHAPE for e in sent)
