"""Alerts against the real test redis-server: each of the spec's five alerts is raised
and resolved with hysteresis, lands on the events stream, and a real local HTTP server
receives the webhook POSTs. The clock of the sans-IO parts is a list the test moves.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trio
from alert_clock import NOW, Clock
from conftest import make_config
from prometheus_client import CollectorRegistry, generate_latest
from redis_server import RedisServerFactory

from fleetd.config import AlertsConfig
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus
from fleetd.jobs.parts import part_name
from fleetd.runtime.alerts import Alerts, Hysteresis

# Evaluated only when the test says so; raised and resolved at the first reading.


def make_alerts(engine: Engine, settings: AlertsConfig = NOW, daemon_id: str = "a") -> Alerts:
    return Alerts(engine, daemon_id, settings, clock=Clock())


def alert_events(engine: Engine) -> list[tuple[str, str]]:
    out = []
    for _id, fields in engine.link.client.xrange(engine.keys.events):
        if fields["type"].startswith("alert."):
            data = json.loads(fields["data"])
            out.append((fields["type"], data["alert"]))
    return out


EMAIL = {"to": "a@example.com", "subject": "s", "body": "b"}


def add_worker(
    engine: Engine,
    daemon_id: str = "w1",
    job_types: tuple[str, ...] = ("noop",),
    queues: tuple[str, ...] | None = None,
) -> None:
    """A live worker daemon's heartbeat; `queues` None: one from before named queues
    (it lists none, and served `default`)."""
    body = {"daemon_id": daemon_id, "roles": ["worker"], "alerts": [], "job_types": job_types}
    payload = json.dumps(body if queues is None else body | {"queues": queues})
    engine.scripts.heartbeat(engine.link.client, daemon_id, payload, 60_000)


def redis_ms(engine: Engine) -> int:
    sec, usec = engine.link.client.time()
    return int(sec) * 1000 + int(usec) // 1000


# -- hysteresis (sans-IO) ---------------------------------------------------------------


def test_hysteresis_needs_the_condition_to_hold() -> None:
    h = Hysteresis(raise_after=30, clear_after=60)
    # A flapping value never raises: each dip restarts the count.
    for t in range(0, 300, 20):
        assert h.update(over=t % 40 == 0, clear=t % 40 != 0, now=t) is None
    assert h.update(False, True, 290) is None
    assert h.update(True, False, 300) is None
    assert h.update(True, False, 329) is None
    assert h.update(True, False, 330) == "raised" and h.active
    assert h.update(False, True, 340) is None
    assert h.update(False, False, 350) is None  # between the thresholds: still raised
    assert h.update(False, True, 360) is None
    assert h.update(False, True, 420) == "resolved" and not h.active


# -- each alert against a real Redis ------------------------------------------------------


async def test_backlog_raised_above_threshold_resolved_below_clear_level(engine: Engine) -> None:
    add_worker(engine)
    alerts = make_alerts(engine)
    rows = engine.ops.prepare_many([{"type": "noop"}] * 101)
    ids = [r.job_id for r in engine.link.run_sync(engine.ops.enqueue_rows, rows)]
    ready = engine.keys.ready(part_name("noop", None))
    await alerts.evaluate()
    assert alerts.active == ["backlog"]
    assert alerts.values["backlog"].text == "101 jobs waiting"
    engine.link.client.zremrangebyrank(ready, 0, 15)  # 85 left: above 80
    await alerts.evaluate()
    assert alerts.active == ["backlog"]
    engine.link.client.zremrangebyrank(ready, 0, 4)  # 80 left
    await alerts.evaluate()
    assert alerts.active == []
    assert alert_events(engine) == [("alert.raised", "backlog"), ("alert.resolved", "backlog")]
    assert len(ids) == 101


async def test_failure_rate(engine: Engine) -> None:
    add_worker(engine)
    alerts = make_alerts(engine)
    now, c = redis_ms(engine), engine.link.client
    c.zadd(engine.keys.status(JobStatus.FAILED), {f"f{i}": now for i in range(8)})
    c.zadd(engine.keys.status(JobStatus.COMPLETED), {f"c{i}": now for i in range(1)})
    await alerts.evaluate()
    assert alerts.active == []  # 9 finished: too few to judge
    c.zadd(engine.keys.status(JobStatus.COMPLETED), {"c1": now, "c2": now})
    await alerts.evaluate()
    assert alerts.active == ["failure_rate"]  # 8 of 11
    # Old failures fall out of the window; recent successes bring the rate down.
    c.zadd(engine.keys.status(JobStatus.COMPLETED), {f"c{i}": now for i in range(3, 37)})
    await alerts.evaluate()
    assert alerts.active == ["failure_rate"]  # 8 of 45 = 17.8%: above the clear level (16)…
    c.zadd(engine.keys.status(JobStatus.COMPLETED), {f"c{i}": now for i in range(37, 42)})
    await alerts.evaluate()
    assert alerts.active == []  # …8 of 50 = 16% is at it
    assert [e for e, _ in alert_events(engine)] == ["alert.raised", "alert.resolved"]


async def test_no_worker_alive(engine: Engine) -> None:
    alerts = make_alerts(engine)
    await alerts.evaluate()
    assert alerts.active == ["no_worker"]
    add_worker(engine)
    await alerts.evaluate()
    assert alerts.active == []
    assert alert_events(engine) == [("alert.raised", "no_worker"), ("alert.resolved", "no_worker")]


async def test_scheduler_missed_executions(engine: Engine) -> None:
    add_worker(engine)
    alerts = make_alerts(engine)
    clock = alerts.clock
    assert isinstance(clock, Clock)
    await alerts.evaluate()
    engine.link.client.hincrby(engine.keys.schedules_stats, "missed", 2)
    clock.t += 10
    await alerts.evaluate()
    assert alerts.active == ["scheduler_missed"]
    assert alerts.values["scheduler_missed"].value == 2
    clock.t += 30
    await alerts.evaluate()
    assert alerts.active == ["scheduler_missed"]  # still within the 60 s window
    clock.t += 40
    await alerts.evaluate()
    assert alerts.active == []


async def test_redis_unreachable_is_sent_when_it_answers_again(
    own_redis: RedisServerFactory, tmp_path: Path, namespace: str
) -> None:
    server = own_redis()
    cfg = make_config(server.url, namespace, tmp_path / "state")
    cfg = dataclasses.replace(cfg, redis=dataclasses.replace(cfg.redis, command_timeout=1.0))
    engine = Engine.build(cfg, daemon=True)
    try:
        for script in engine.scripts.all():
            script.load(engine.link.client)
        add_worker(engine)
        alerts = make_alerts(engine)
        await alerts.evaluate()
        assert alerts.active == []
        server.stop()
        await alerts.evaluate()
        assert alerts.active == ["redis_unreachable"]
        server.start()  # empty: its data was not persisted, so no worker is seen
        await alerts.evaluate()
        assert alerts.active == ["no_worker"]
        assert [e for e in alert_events(engine) if e[1] == "redis_unreachable"] == [
            ("alert.raised", "redis_unreachable"),
            ("alert.resolved", "redis_unreachable"),
        ]
    finally:
        engine.close()


async def test_only_the_leader_sends(engine: Engine) -> None:
    for daemon_id in ("b", "a"):
        payload = json.dumps({"daemon_id": daemon_id, "roles": ["api"], "alerts": []})
        engine.scripts.heartbeat(engine.link.client, daemon_id, payload, 60_000)
    follower, leader = make_alerts(engine, daemon_id="b"), make_alerts(engine, daemon_id="a")
    await follower.evaluate()
    await leader.evaluate()
    assert follower.active == leader.active == ["no_worker"]
    assert alert_events(engine) == [("alert.raised", "no_worker")]


def api_daemon(engine: Engine, daemon_id: str) -> None:
    """A live daemon that evaluates alerts (an api one: no worker, so no_worker holds)."""
    payload = json.dumps({"daemon_id": daemon_id, "roles": ["api"], "alerts": []})
    engine.scripts.heartbeat(engine.link.client, daemon_id, payload, 60_000)


def died(engine: Engine, daemon_id: str) -> None:
    engine.link.client.zrem(engine.keys.heartbeats, daemon_id)


async def test_a_new_leader_sends_the_raise_its_predecessor_died_before_sending(
    engine: Engine,
) -> None:
    api_daemon(engine, "a")
    api_daemon(engine, "b")
    follower = make_alerts(engine, daemon_id="b")
    await follower.evaluate()  # raised here first; "a" leads and had not evaluated yet
    assert follower.active == ["no_worker"]
    assert alert_events(engine) == []
    died(engine, "a")
    await follower.evaluate()  # "b" leads now: nobody sent the raise
    await follower.evaluate()
    assert alert_events(engine) == [("alert.raised", "no_worker")]  # once


async def test_a_new_leader_sends_the_resolve_its_predecessor_died_before_sending(
    engine: Engine,
) -> None:
    api_daemon(engine, "a")
    api_daemon(engine, "b")
    leader, follower = make_alerts(engine, daemon_id="a"), make_alerts(engine, daemon_id="b")
    await leader.evaluate()
    await follower.evaluate()
    add_worker(engine, "w1")  # no_worker clears
    await follower.evaluate()  # resolved here first; "a" has not evaluated since
    assert follower.active == []
    died(engine, "a")
    await follower.evaluate()  # "b" raised and resolved it itself: no need to settle
    await follower.evaluate()
    assert alert_events(engine) == [("alert.raised", "no_worker"), ("alert.resolved", "no_worker")]


async def test_two_daemons_that_both_lead_send_a_transition_once(engine: Engine) -> None:
    first, second = make_alerts(engine, daemon_id="a"), make_alerts(engine, daemon_id="b")
    # No heartbeat of either yet: each takes itself for the leader.
    await first.evaluate()
    await second.evaluate()
    assert first.active == second.active == ["no_worker"]
    assert alert_events(engine) == [("alert.raised", "no_worker")]


async def test_after_a_restart_a_resolve_waits_for_the_daemon_to_settle(engine: Engine) -> None:
    engine.link.client.hset(engine.keys.alerts_sent, "backlog", "raised")  # before the restart
    fresh = make_alerts(engine, daemon_id="a")
    await fresh.evaluate()  # no backlog now, but nothing raised yet is no answer
    assert ("alert.resolved", "backlog") not in alert_events(engine)
    fresh.clock.t += fresh.settle  # type: ignore[attr-defined]
    await fresh.evaluate()
    assert ("alert.resolved", "backlog") in alert_events(engine)
    assert engine.link.client.hget(engine.keys.alerts_sent, "backlog") == "resolved"


def test_prometheus_metric(engine: Engine) -> None:
    alerts = make_alerts(engine)
    alerts.rules["backlog"].active = True
    registry = CollectorRegistry(auto_describe=False)
    registry.register(alerts.collector())
    text = generate_latest(registry).decode()
    assert 'fleetd_alert_active{alert="backlog"} 1.0' in text
    assert 'fleetd_alert_active{alert="no_worker"} 0.0' in text


# -- webhook ------------------------------------------------------------------------------


class Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.headers["Content-Type"] == "application/json"
        self.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("H", (Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook?token=x", received
    finally:
        server.shutdown()
        server.server_close()


async def test_webhook_posts_raised_and_resolved(
    engine: Engine, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    alerts = make_alerts(engine, dataclasses.replace(NOW, webhook_url=url))
    async with trio.open_nursery() as nursery:
        await nursery.start(alerts.run)  # evaluates once: no worker alive
        add_worker(engine)
        await alerts.evaluate()
        with trio.fail_after(5):
            while len(received) < 2:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert [(r["type"], r["alert"]) for r in received] == [
        ("alert.raised", "no_worker"),
        ("alert.resolved", "no_worker"),
    ]
    assert received[0]["message"] == "0 worker daemons alive"
    assert received[0]["daemon_id"] == "a"


async def test_webhook_down_does_not_stop_alerts(engine: Engine) -> None:
    alerts = make_alerts(engine, dataclasses.replace(NOW, webhook_url="http://127.0.0.1:9/x"))
    async with trio.open_nursery() as nursery:
        await nursery.start(alerts.run)
        await trio.sleep(0.2)
        assert alerts.active == ["no_worker"]
        nursery.cancel_scope.cancel()


async def test_unhandled_type_names_the_type_no_live_worker_runs(engine: Engine) -> None:
    """A daemon claims only the types it has handlers for: ready jobs of a type no live
    worker runs wait, and the alert names that type (not the handled ones)."""
    add_worker(engine, "w1", ("noop",))
    alerts = make_alerts(engine)
    rows = engine.ops.prepare_many(
        [{"type": "noop"}, {"type": "email_notification", "data": EMAIL}]
    )
    engine.link.run_sync(engine.ops.enqueue_rows, rows)
    await alerts.evaluate()
    assert alerts.active == ["unhandled_type"]
    assert alerts.values["unhandled_type"].text.endswith("job type(s) email_notification")
    add_worker(engine, "w2", ("email_notification",))  # a daemon with the handler joins
    await alerts.evaluate()
    assert alerts.active == []
    assert alert_events(engine) == [
        ("alert.raised", "unhandled_type"), ("alert.resolved", "unhandled_type"),
    ]  # fmt: skip


async def test_unserved_queue_names_the_queue_no_live_worker_serves(engine: Engine) -> None:
    """Ready jobs of a queue no live worker serves: the alert names the queue (not the
    served ones), unhandled_type stays quiet; with no worker at all, neither is raised
    (no_worker is)."""
    rows = engine.ops.prepare_many(
        [{"type": "noop", "queue": "bulk"}, {"type": "noop", "queue": "mail"}, {"type": "noop"}]
    )
    engine.link.run_sync(engine.ops.enqueue_rows, rows)
    alone = make_alerts(engine)
    await alone.evaluate()
    assert alone.active == ["no_worker"]
    engine.link.client.delete(engine.keys.events)

    add_worker(engine, "w1", ("noop",), ("mail",))
    add_worker(engine, "w0", ("noop",))  # from before named queues: serves default
    alerts = make_alerts(engine)
    await alerts.evaluate()
    assert alerts.active == ["unserved_queue"]
    reading = alerts.values["unserved_queue"]
    assert reading.text == "jobs waiting in queue(s) no live daemon serves: bulk"
    assert reading.value == 1
    add_worker(engine, "w2", ("email_notification",), ("bulk", "default"))
    await alerts.evaluate()
    # bulk is served now, but not by a daemon with noop: that is unhandled_type's.
    assert alerts.active == ["unhandled_type"]
    assert alerts.values["unhandled_type"].text.endswith("job type(s) noop")
    add_worker(engine, "w3", ("noop",), ("bulk",))
    await alerts.evaluate()
    assert alerts.active == []
    assert alert_events(engine) == [
        ("alert.raised", "unserved_queue"), ("alert.raised", "unhandled_type"),
        ("alert.resolved", "unserved_queue"), ("alert.resolved", "unhandled_type"),
    ]  # fmt: skip
