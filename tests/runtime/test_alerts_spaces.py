"""Alerts over key spaces (`[queues] own_slot`, fleetd.backend.spaces) against a real
Redis: what jobs of a queue with a slot of its own leave in that space (finished and
failed jobs, analytics buckets, ready parts, quota refusals, quarantines) raises the
alerts as the namespace's own would, summed with it; the events and `alerts:sent` stay
in the namespace's space."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import pytest
from alert_clock import NOW, Clock

from fleetd.config import AlertRuleConfig, Config
from fleetd.config.limit_sections import LimitsConfig
from fleetd.config.queue_section import Served
from fleetd.engine import Engine
from fleetd.jobs.errors import QuotaExceeded
from fleetd.jobs.parts import part_name
from fleetd.runtime.alert_companies import EnqueueHistory
from fleetd.runtime.alert_rules import RuleSet
from fleetd.runtime.alerts import Alerts


@pytest.fixture
def eng(config: Config) -> Any:
    queues = dataclasses.replace(config.queues, own_slot=("bulk",))
    e = Engine.build(dataclasses.replace(config, queues=queues), daemon=True)
    for script in e.scripts.all():
        script.load(e.link.client)
    yield e
    e.close()


def make_alerts(engine: Engine, *rules: AlertRuleConfig, **settings: Any) -> Alerts:
    s = dataclasses.replace(NOW, rules=rules, **settings)
    return Alerts(engine, "a", s, clock=Clock())


def add_worker(engine: Engine, queues: tuple[str, ...] = ("default", "bulk")) -> None:
    body = {"daemon_id": "w1", "roles": ["worker"], "alerts": [], "job_types": ["noop"],
            "queues": queues}  # fmt: skip
    engine.scripts.heartbeat(engine.link.client, "w1", json.dumps(body), 60_000)


def enqueue(engine: Engine, reqs: list[dict[str, Any]]) -> list[str]:
    rows = engine.ops.prepare_many(reqs)
    return [r.job_id for r in engine.ops.enqueue_rows(engine.link.client, rows)]


def finish(engine: Engine, queue: str | None, n: int, *, fail: bool, company: str = "") -> None:
    """n jobs of `queue` enqueued, claimed and ended (failed for good or completed) by
    the scripts of the queue's space."""
    c = engine.link.client
    req: dict[str, Any] = {"type": "noop", "max_retries": 0, "company_id": company or None}
    ids = enqueue(engine, [req | ({"queue": queue} if queue else {})] * n)
    space = engine.spaces.for_queue(c, queue)
    scripts = space.scripts.for_claims(None, "", Served(((queue or "default", 0),)))
    token = uuid.uuid4().hex
    assert len(scripts.claim(c, n, 30_000, token, "d1").jobs) == n
    if fail:
        assert scripts.fail(c, [(i, token, "boom", "", False, 0) for i in ids]) == [0] * n
    else:
        assert scripts.complete(c, [(i, token, "{}", "{}") for i in ids]) == [1] * n


def alert_events(engine: Engine, keys: Any = None) -> list[tuple[str, str]]:
    stream = (keys or engine.keys).events
    return [
        (f["type"], json.loads(f["data"])["alert"])
        for _id, f in engine.link.client.xrange(stream)
        if f["type"].startswith("alert.")
    ]


async def test_failure_rates_count_the_jobs_of_a_queues_space(eng: Engine) -> None:
    add_worker(eng)
    acme = AlertRuleConfig(name="acme_failing", metric="failure_rate", threshold=50,
                           for_=0.0, resolve_for=0.0, company="acme", min_jobs=4)  # fmt: skip
    alerts = make_alerts(eng, acme)
    finish(eng, None, 5, fail=False)
    finish(eng, None, 2, fail=False, company="acme")
    await alerts.evaluate()
    assert alerts.active == []
    # Failures in the queue's space: 6 of 13 finished (46 %, above 20 %), and acme's
    # 3 of 5 (60 %) in the minute buckets of both spaces.
    finish(eng, "bulk", 3, fail=True)
    finish(eng, "bulk", 3, fail=True, company="acme")
    await alerts.evaluate()
    assert alerts.active == ["failure_rate", "acme_failing"]
    assert alerts.values["failure_rate"].text == "46% of 13 jobs failed in the last 60s"
    assert alerts.values["acme_failing"].value == 60
    bulk = eng.spaces.for_queue(eng.link.client, "bulk").keys
    # The events and what was sent: in the namespace's space, not the queue's.
    assert alert_events(eng) == [("alert.raised", "failure_rate"), ("alert.raised", "acme_failing")]
    assert alert_events(eng, bulk) == []
    assert eng.link.client.hget(eng.keys.alerts_sent, "failure_rate") == "raised"
    assert not eng.link.client.exists(bulk.alerts_sent)


async def test_backlog_and_unserved_queue_of_a_queues_space(eng: Engine) -> None:
    add_worker(eng, ("default",))
    alerts = make_alerts(eng, backlog=10)
    enqueue(eng, [{"type": "noop"}] * 4 + [{"type": "noop", "queue": "bulk"}] * 7)
    bulk = eng.spaces.for_queue(eng.link.client, "bulk").keys
    assert eng.link.client.zcard(bulk.ready_in("bulk", part_name("noop", None))) == 7
    await alerts.evaluate()
    assert alerts.active == ["backlog", "unserved_queue"]
    assert alerts.values["backlog"].text == "11 jobs waiting"
    assert alerts.values["unserved_queue"].text.endswith("no live daemon serves: bulk")
    add_worker(eng, ("default", "bulk"))
    await alerts.evaluate()
    assert alerts.active == ["backlog"]


async def test_quota_refusals_and_quarantines_in_a_queues_space_name_the_company(
    eng: Engine,
) -> None:
    add_worker(eng)
    alerts = make_alerts(eng)
    await alerts.evaluate()  # the refusal counts' baseline
    eng.ops.quota = LimitsConfig(company_max_pending=1).build().encode_quota(["noop"])
    enqueue(eng, [{"type": "noop", "company_id": "acme", "queue": "bulk"}])
    with pytest.raises(QuotaExceeded):
        enqueue(eng, [{"type": "noop", "company_id": "acme", "queue": "bulk"}])
    bulk = eng.spaces.for_queue(eng.link.client, "bulk").keys
    assert eng.link.client.hget(bulk.quota_refused, "acme") == "1"
    assert not eng.link.client.exists(eng.keys.quota_refused)
    # A quarantined part of the queue's space, as quarantine_count.lua records it.
    record = {"job_type": "noop", "company_id": "globex", "since": 1, "failures": 5,
              "kinds": {"crash": 5}, "window_ms": 60_000, "last_job_id": "job_x"}  # fmt: skip
    eng.link.client.hset(bulk.quarantines, part_name("noop", "globex"), json.dumps(record))
    await alerts.evaluate()
    assert alerts.active == ["quota_exceeded", "quarantined"]
    assert alerts.values["quota_exceeded"].text.endswith("company(ies) acme")
    assert alerts.values["quarantined"].text.endswith("job type noop of company globex")
    # The same part held in the namespace's space too: named once, as the API lists it.
    eng.link.client.hset(eng.keys.quarantines, part_name("noop", "globex"), json.dumps(record))
    await alerts.evaluate()
    assert alerts.values["quarantined"].text.endswith(": job type noop of company globex")
    assert alerts.values["quarantined"].value == 1


async def test_an_enqueue_burst_in_a_queues_space_against_the_baseline_of_both(
    eng: Engine,
) -> None:
    add_worker(eng)
    c = eng.link.client
    bulk = eng.spaces.for_queue(c, "bulk").keys
    minute = int(c.time()[0]) // 60
    # The hour before the last minute, as enqueue.lua recorded it: 2 a minute in the
    # namespace's space and 1 in the queue's (the test cannot wait an hour).
    pipe = c.pipeline(transaction=False)
    for m in range(minute - 61, minute - 1):
        pipe.hincrby(eng.keys.analytics_minute(m), "in\nnoop\nacme", 2)
        pipe.hincrby(bulk.analytics_minute(m), "in\nnoop\nacme", 1)
    pipe.execute()
    alerts = make_alerts(eng, anomaly_min=50)
    await alerts.evaluate()
    assert "enqueue_anomaly" not in alerts.active
    enqueue(eng, [{"type": "noop", "company_id": "acme", "queue": "bulk"}] * 60)
    await alerts.evaluate()
    assert "enqueue_anomaly" in alerts.active
    assert "acme (60/min, baseline 3.0/min)" in alerts.values["enqueue_anomaly"].text


def test_closed_minutes_kept_are_read_again_in_a_space_known_later(eng: Engine) -> None:
    """The rules and the anomaly history keep closed minutes parsed; a space a reader
    learns of later (another process gave a queue its slot) is read for them too."""
    c = eng.link.client
    home, bulk = (s.keys for s in eng.spaces.known(c))
    rules = RuleSet((AlertRuleConfig(name="r", metric="throughput", threshold=1, window=300.0),))
    history = EnqueueHistory()
    for _ in range(3):  # a minute boundary between the reads would change "closed"
        first = rules.read(c, [home])
        history.read(c, [home])
        minute = first["now"] // 60_000
        c.hincrby(bulk.analytics_minute(minute - 2), "ok\nnoop\n", 7)
        c.hincrby(bulk.analytics_minute(minute - 2), "in\nnoop\nacme", 5)
        second = rules.read(c, [home, bulk])
        history.read(c, [home, bulk])
        if second["now"] // 60_000 == minute:
            break
    assert second["buckets"][2][("noop", "")].completed == 7
    assert history.minutes[minute - 2] == {"acme": 5}
