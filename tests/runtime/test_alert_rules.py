"""User-defined alert rules ([[alerts.rules]]) against the real test redis-server: every
metric raised and resolved from what real work left behind — jobs run by a real worker
pool (failing, slow, waiting, absent), a real scheduler's late firings and a real
daemon's heartbeat — never from keys the test writes. The sans-IO clock is a number the
test moves; `for`/`resolve_for` are 0 so one evaluation decides.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import trio
from alert_clock import NOW, Clock
from conftest import fleetd_env
from daemons import Fleet
from engine_jobs import alert_events as rule_events
from pool import registry_with, running_pool, wait_status
from prometheus_client import CollectorRegistry, generate_latest

from fleetd.config import AlertRuleConfig, Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus
from fleetd.runtime.alert_rules import RuleSet
from fleetd.runtime.alerts import Alerts
from fleetd.schedules.service import Scheduler, SchedulerSettings
from fleetd.schedules.store import ScheduleOps


def rule(name: str, metric: str, threshold: float = 0.0, **keys: Any) -> AlertRuleConfig:
    return AlertRuleConfig(name=name, metric=metric, threshold=threshold, for_=0.0,
                           resolve_for=0.0, **keys)  # fmt: skip


def make_alerts(engine: Engine, *rules: AlertRuleConfig) -> Alerts:
    return Alerts(engine, "a", dataclasses.replace(NOW, rules=rules), clock=Clock())


async def run_jobs(engine: Engine, plan: list[dict[str, Any]]) -> None:
    for r in await engine.queue.enqueue_many(plan):
        await wait_status(engine, r.job_id, JobStatus.COMPLETED, JobStatus.FAILED, limit=30)


def failing(company: str, n: int) -> list[dict[str, Any]]:
    return [{"type": "noop", "data": {"fail_attempts": 1}, "max_retries": 0,
             "company_id": company}] * n  # fmt: skip


def fine(company: str, n: int, sleep_ms: int = 0) -> list[dict[str, Any]]:
    return [{"type": "noop", "data": {"sleep_ms": sleep_ms}, "company_id": company}] * n


async def test_failure_rate_of_a_company(config: Config) -> None:
    async with running_pool(config, registry_with(), concurrency=5) as (engine, _pool):
        alerts = make_alerts(engine, rule("acme_failing", "failure_rate", 50, company="acme"))
        await run_jobs(engine, failing("acme", 6) + fine("acme", 4) + fine("other", 30))
        await alerts.evaluate()
        assert alerts.active == ["no_worker", "acme_failing"]  # no_worker: no heartbeats
        assert alerts.values["acme_failing"].value == 60
        # 6 of 14 = 43%: below the threshold, above the resolve level (80%: 40) — held…
        await run_jobs(engine, fine("acme", 4))
        await alerts.evaluate()
        assert "acme_failing" in alerts.active
        # …6 of 15 = 40% is at it.
        await run_jobs(engine, fine("acme", 1))
        await alerts.evaluate()
        assert "acme_failing" not in alerts.active
        events = rule_events(engine, "acme_failing")
    assert [e["type"] for e in events] == ["alert.raised", "alert.resolved"]
    raised = events[0]
    assert raised["metric"] == "failure_rate" and raised["company_scope"] == "acme"
    assert raised["threshold"] == 50 and raised["resolve"] == 40
    assert raised["message"] == "60% of 10 jobs failed in the last 300s (company acme)"


async def test_too_few_jobs_do_not_judge_a_failure_rate(config: Config) -> None:
    async with running_pool(config, registry_with(), concurrency=5) as (engine, _pool):
        alerts = make_alerts(engine, rule("f", "failure_rate", 10, company="c", min_jobs=5))
        await run_jobs(engine, failing("c", 4))
        await alerts.evaluate()
        assert "f" not in alerts.active  # 4 of 4 failed, but 4 < min_jobs
        await run_jobs(engine, failing("c", 1))
        await alerts.evaluate()
        assert "f" in alerts.active


async def test_run_p95_of_slow_jobs(config: Config) -> None:
    async with running_pool(config, registry_with(), concurrency=10) as (engine, _pool):
        alerts = make_alerts(engine, rule("slow", "run_p95", 0.3, type="noop", company="s"))
        await run_jobs(engine, fine("s", 10, sleep_ms=600) + fine("quick", 20))
        await alerts.evaluate()
        assert "slow" in alerts.active
        # Runs of ≥ 600 ms: an estimate within -9.05 % of one (and not below the threshold).
        assert alerts.values["slow"].value > 0.54
        # 190 quick ones: the 200th fastest of 200 (nearest rank of p95) is quick.
        await run_jobs(engine, fine("s", 190))
        await alerts.evaluate()
        assert "slow" not in alerts.active  # at or below 0.24 s (80%)


async def test_wait_p95_of_jobs_waiting_for_a_slot(config: Config) -> None:
    async with running_pool(config, registry_with(), concurrency=1) as (engine, _pool):
        alerts = make_alerts(engine, rule("queued", "wait_p95", 1.0, company="w", min_jobs=4))
        # One slot, four 800 ms jobs at once: the last waits ~2.4 s.
        await run_jobs(engine, fine("w", 4, sleep_ms=800))
        await alerts.evaluate()
        assert "queued" in alerts.active
        assert alerts.values["queued"].value > 2.0
        # One at a time, none waits for the slot: p95 of 84 is the 80th shortest wait.
        for _ in range(80):
            await run_jobs(engine, fine("w", 1))
        await alerts.evaluate()
        assert "queued" not in alerts.active


async def test_throughput_below_a_floor(config: Config) -> None:
    async with running_pool(config, registry_with(), concurrency=5) as (engine, _pool):
        alerts = make_alerts(engine, rule("idle", "throughput", 2, company="t"))
        await run_jobs(engine, fine("other", 20))
        await alerts.evaluate()
        assert "idle" in alerts.active and alerts.values["idle"].value == 0
        # 20 finished (failed ones count) within the 5-minute window: ≥ 4 a minute.
        await run_jobs(engine, fine("t", 15) + failing("t", 5))
        await alerts.evaluate()
        assert "idle" not in alerts.active
        assert alerts.values["idle"].value >= 4
        assert [e["type"] for e in rule_events(engine, "idle")] == [
            "alert.raised",
            "alert.resolved",
        ]


async def test_no_completions_while_work_arrives(config: Config) -> None:
    async with running_pool(config, registry_with(), concurrency=5) as (engine, _pool):
        alerts = make_alerts(engine, rule("stuck", "no_completions", company="n"))
        await alerts.evaluate()
        assert "stuck" not in alerts.active  # nothing pending: nothing to complete
        await run_jobs(engine, failing("n", 3) + fine("other", 3))
        await alerts.evaluate()
        assert "stuck" in alerts.active
        assert alerts.values["stuck"].text.startswith("0 jobs completed, 3 enqueued")
        await run_jobs(engine, fine("n", 1))
        await alerts.evaluate()
        assert "stuck" not in alerts.active


async def test_backlog_of_one_company_drained_by_a_pool(config: Config, engine: Engine) -> None:
    alerts = make_alerts(engine, rule("b_backlog", "backlog", 5, company="b"),
                         rule("all_backlog", "backlog", 30))  # fmt: skip
    await engine.queue.enqueue_many(fine("b", 6) + fine("other", 20))
    await alerts.evaluate()
    assert "b_backlog" in alerts.active and "all_backlog" not in alerts.active
    assert alerts.values["b_backlog"].text == "6 jobs waiting (company b)"
    assert alerts.values["all_backlog"].value == 26
    async with running_pool(config, registry_with(), concurrency=5) as (pooled, _pool):
        with trio.fail_after(20):
            while pooled.link.client.zcard(pooled.keys.queue):
                await trio.sleep(0.05)
    await alerts.evaluate()
    assert "b_backlog" not in alerts.active
    assert alerts.values["b_backlog"].value == 0


async def test_schedule_lateness_after_a_scheduler_outage(engine: Engine) -> None:
    ops = ScheduleOps.from_engine(engine)
    body = {"name": "tick", "job_type": "noop", "schedule": "1s", "misfire_policy": "run_once"}
    schedule_id = engine.link.run_sync(lambda c: ops.add(c, body)).id
    alerts = make_alerts(engine, rule("late", "schedule_lateness", 0.5, window=60.0))
    clock = alerts.clock
    assert isinstance(clock, Clock)
    settings = SchedulerSettings(misfire_grace=30.0, create_defaults=False,
                                 reconnect_max_backoff=0.5)  # fmt: skip

    async def schedule_runs() -> int:
        return int(engine.link.run_sync(ops.require, schedule_id).runs)

    async def scheduler_until(runs: int) -> None:
        s = Scheduler(engine.link, ops, "d0", settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(s.run)
            with trio.fail_after(10):
                while await schedule_runs() < runs:
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()

    await scheduler_until(2)
    await alerts.evaluate()  # the baseline: on-time firings
    assert "late" not in alerts.active
    await trio.sleep(2.5)  # an outage: run_once fires the missed occurrence late
    await scheduler_until(await schedule_runs() + 1)
    clock.t += 10
    await alerts.evaluate()
    assert "late" in alerts.active
    assert alerts.values["late"].value >= 1.0
    clock.t += 61  # the late firing is out of the window
    await alerts.evaluate()
    assert "late" not in alerts.active


async def test_daemon_memory_from_a_real_heartbeat(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    alerts = make_alerts(engine, rule("fat", "daemon_memory", 5))  # MiB: any Python
    env = fleetd_env(config) | {"FLEETD_ALERTS_ENABLED": "false"}
    daemon = fleet.start(env, "--roles", "worker")
    with trio.fail_after(20):
        while not await engine.queue.daemons():
            await trio.sleep(0.05)
    await alerts.evaluate()
    assert "fat" in alerts.active
    assert alerts.values["fat"].value > 5
    registry = CollectorRegistry(auto_describe=False)
    registry.register(alerts.collector())
    assert 'fleetd_alert_active{alert="fat"} 1.0' in generate_latest(registry).decode()
    daemon.stop()
    with trio.fail_after(30):
        while "fat" in alerts.active:
            await trio.sleep(0.2)
            await alerts.evaluate()
    assert alerts.values["fat"].value == 0
    assert 'fleetd_alert_active{alert="fat"} 0.0' in generate_latest(registry).decode()


async def test_a_daemon_runs_the_rules_of_its_config_file(
    config: Config, engine: Engine, fleet: Fleet, tmp_path: Path
) -> None:
    path = tmp_path / "fleetd.toml"
    path.write_text(
        '[alerts]\ninterval = "200ms"\n\n[[alerts.rules]]\nname = "fat"\n'
        'metric = "daemon_memory"\nthreshold = 5\nfor = "0s"\n'
    )
    env = fleetd_env(config) | {"FLEETD_CONFIG": str(path)}
    fleet.start(env, "--roles", "worker")
    with trio.fail_after(20):
        while not rule_events(engine, "fat"):
            await trio.sleep(0.1)
    [raised] = rule_events(engine, "fat")
    assert raised["type"] == "alert.raised" and raised["metric"] == "daemon_memory"
    assert raised["value"] > 5


def test_closed_minutes_are_read_once(engine: Engine) -> None:
    # The scripts write a minute's bucket only during that minute (Redis's clock, inside
    # the script), so a closed one is kept parsed. The test's write into a closed minute
    # is what no script does: it shows the kept copy is used, and the open minute is not.
    rules = RuleSet((rule("r", "throughput", 1, window=300.0),))
    c = engine.link.client
    for _ in range(3):  # a minute boundary between the reads would change "closed"
        first = rules.read(c, engine.keys)
        minute = first["now"] // 60_000
        for m in (minute - 2, minute):
            c.hincrby(engine.keys.analytics_minute(m), "ok\nnoop\n", 7)
        second = rules.read(c, engine.keys)
        if second["now"] // 60_000 == minute:
            break
    assert len(second["buckets"]) == 5
    assert second["buckets"][2] == {}  # minute - 2: kept from the first read
    assert second["buckets"][4][("noop", "")].completed == 7  # the open minute: read again
