"""Which daemons serve a named queue, and each queue's figures, end to end: real `fleetd
run` daemons against a real redis-server.

- Two daemons serve different queues (`mail`, `default`); their heartbeats list them.
  A job for a third queue no daemon serves waits, says why (`fleetd jobs show`), the
  `unserved_queue` alert names the queue, and `fleetd queues list` shows it with no
  daemon; once a daemon serving it starts, the job runs and the alert resolves.
- A workload over two queues (completions, failures for good, a retry that then
  completes): `fleetd queues list` counts each queue's completed and failed jobs and
  its throughput, while `stats` stays the totals.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import fleetd_env
from daemons import Fleet, cli_json, run_cli, settings, wait_for
from engine_jobs import alert_events, enqueue, jobs_of

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus

FAST = settings(
    worker_poll_interval="100ms",
    daemon_heartbeat_interval="200ms",
    maintenance_interval="100ms",
    alerts_interval="100ms",
    alerts_raise_after="0s",
    alerts_clear_after="0s",
)


def queues(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {q["name"]: q for q in cli_json(env, "queues", "list", "--json")["queues"]}


def mail_and_default(config: Config, fleet: Fleet) -> dict[str, str]:
    """Two daemons: `m` serves the queue `mail`, `d` serves `default`. Their env."""
    env = fleetd_env(config) | FAST
    fleet.start(env | settings(worker_queues="mail", daemon_name="m"), name="m")
    fleet.start(env | settings(daemon_name="d"), name="d")
    return env


@pytest.mark.slow
def test_a_job_of_an_unserved_queue_is_named_until_a_daemon_serves_it(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    env = mail_and_default(config, fleet)

    def both_beating() -> list[dict[str, Any]]:
        # Both evaluate alerts by now (a list in the heartbeat): `d` leads, alone.
        live = engine.link.run_sync(engine.ops.daemons)
        return live if sum(isinstance(d.get("alerts"), list) for d in live) == 2 else []

    live = wait_for(both_beating, 15, "two heartbeats", fleet.tails)
    served = {d["daemon_id"].split(":")[0]: d["queues"] for d in live}
    assert served == {"m": ["mail"], "d": ["default"]}
    ids = {d["daemon_id"].split(":")[0]: d["daemon_id"] for d in live}

    [bulk] = enqueue(engine, [{"type": "noop", "queue": "bulk"}])
    wait_for(lambda: alert_events(engine, "unserved_queue"), 15, "the alert", fleet.tails)
    raised = alert_events(engine, "unserved_queue")[0]
    assert raised["type"] == "alert.raised"
    assert raised["message"] == "jobs waiting in queue(s) no live daemon serves: bulk"
    assert raised["value"] == 1
    # The job says why it waits; the handler's reason does not mask it (noop is handled).
    shown = cli_json(env, "jobs", "show", bulk, "--json")
    assert shown["waiting"] == "no running daemon serves queue 'bulk'", shown
    assert shown["job"]["status"] == "pending"
    listed = queues(env)
    assert listed["bulk"]["daemons"] == [] and listed["bulk"]["ready"] == 1
    assert listed["mail"]["daemons"] == [ids["m"]]
    assert listed["default"]["daemons"] == [ids["d"]]
    assert not alert_events(engine, "unhandled_type")  # the type has a handler
    text = run_cli(env, "queues", "list")
    assert text.returncode == 0, text.stderr
    lines = {line.split()[0]: line for line in text.stdout.splitlines()}
    assert "NO DAEMON" in lines["bulk"] and "ready 1 " in lines["bulk"], text.stdout
    assert "1 daemon(s)" in lines["mail"], text.stdout
    assert "limit" not in lines["bulk"]
    limited = run_cli(env | settings(limits_queues="bulk=2"), "queues", "list").stdout
    [line] = [ln for ln in limited.splitlines() if ln.startswith("bulk ")]
    assert line.endswith("  limit 2 running"), limited

    # Named to sort after `d`, which stays the alerts' leader (the smallest live id)
    # and so writes the resolve of the raise it wrote.
    fleet.start(env | settings(worker_queues="bulk", daemon_name="z"), name="z")

    def ran() -> bool:
        return jobs_of(engine, [bulk])[0].status is JobStatus.COMPLETED

    wait_for(ran, 30, "the bulk job to run", fleet.tails)
    assert (jobs_of(engine, [bulk])[0].worker or "").startswith("z:")

    def resolved() -> bool:
        return [e["type"] for e in alert_events(engine, "unserved_queue")] == [
            "alert.raised", "alert.resolved"
        ]  # fmt: skip

    wait_for(resolved, 15, "the alert to resolve", fleet.tails)
    after = queues(env)["bulk"]
    assert after["daemons"] == [d for d in after["daemons"] if d.startswith("z:")] != []
    assert after["completed"] == 1 and after["ready"] == 0


@pytest.mark.slow
def test_queues_list_counts_each_queues_completed_and_failed_jobs(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    env = mail_and_default(config, fleet)
    ok = {"type": "noop", "data": {"sleep_ms": 5}}
    fails = {"type": "noop", "data": {"fail_attempts": 5}, "max_retries": 0}
    # Fails its first attempt, retries after 1 s and completes: completed once, never failed.
    retried = {"type": "noop", "data": {"fail_attempts": 1}, "max_retries": 2}
    mail = enqueue(engine, [ok | {"queue": "mail"}] * 9 + [fails | {"queue": "mail"}] * 3
                   + [retried | {"queue": "mail"}])  # fmt: skip
    plain = enqueue(engine, [ok] * 6 + [fails] * 2)

    def finished() -> bool:
        done = {JobStatus.COMPLETED, JobStatus.FAILED}
        return all(j.status in done for j in jobs_of(engine, mail + plain))

    wait_for(finished, 30, "every job to finish", fleet.tails)
    listed = queues(env)
    assert (listed["mail"]["completed"], listed["mail"]["failed"]) == (10, 3)
    assert (listed["default"]["completed"], listed["default"]["failed"]) == (6, 2)
    # Jobs finished per minute over the last 5 minutes: the current one counts for what
    # has gone of it, so the span is 4 to 5 minutes.
    assert 13 / 5 <= listed["mail"]["throughput"] <= 13 / 4
    assert 8 / 5 <= listed["default"]["throughput"] <= 8 / 4
    stats = cli_json(env, "stats", "--json")["stats"]  # the spec's shape: totals only
    assert set(stats) == {
        "pending", "processing", "completed", "failed", "retrying", "cancelled", "total"
    }  # fmt: skip
    assert (stats["completed"], stats["failed"]) == (16, 5), stats


def test_queues_list_says_its_figures_are_estimated_past_the_sample(
    config: Config, engine: Engine
) -> None:
    """More than 10,000 delayed jobs: the CLI marks the sampled figures `~`, its JSON
    says `estimated` (the API's answer is the same dict)."""
    later = {"type": "noop", "run_at": "2099-01-01T00:00:00Z"}
    enqueue(engine, [later | {"queue": "bulk"}] * 6000 + [later] * 4001)
    env = fleetd_env(config)
    listed = queues(env)
    assert listed["bulk"]["estimated"] and listed["default"]["estimated"]
    assert abs(listed["bulk"]["waiting"] + listed["default"]["waiting"] - 10_001) <= 2
    text = run_cli(env, "queues", "list")
    assert text.returncode == 0, text.stderr
    bulk = next(ln for ln in text.stdout.splitlines() if ln.startswith("bulk "))
    assert "waiting ~" in bulk and "processing ~0" in bulk, text.stdout
