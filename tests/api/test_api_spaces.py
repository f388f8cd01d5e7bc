"""The admin API over every key space (fleetd.backend.spaces), against a real daemon
whose config gives `bulk` a slot of its own: a pause made before the slot holds the
queue's jobs in both spaces (its list, the job's `waiting`, /metrics and the worker
health's backlog count them) until resumed over HTTP; a quarantine in the queue's space
is listed and released over HTTP."""

from __future__ import annotations

import dataclasses

from api_client import PREFIX, Api, api_config, running_api
from prometheus_client.parser import text_string_to_metric_families

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.quarantine import Strikes, count_failures
from fleetd.jobs.queues import pause_queue

QUEUES = "/api/v1/admin/queues"
QUARANTINES = "/api/v1/admin/quarantines"


def slotted(config: Config) -> Config:
    return api_config(dataclasses.replace(
        config,
        queues=dataclasses.replace(config.queues, own_slot=("bulk",)),
        worker=dataclasses.replace(config.worker, queues=("default", "bulk")),
        daemon=dataclasses.replace(config.daemon, heartbeat_interval=0.1),
    ))  # fmt: skip


async def gauge(api: Api, name: str, **labels: str) -> float:
    r = await api.get("/metrics")
    assert r.status_code == 200
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


async def test_a_paused_slotted_queue_is_held_counted_and_resumed_in_both_spaces(
    config: Config, engine: Engine
) -> None:
    # Before the daemon gives bulk its slot: a bulk job and a pause, in the namespace's.
    rows = engine.ops.prepare_many([{"type": "noop", "queue": "bulk"}])
    [old] = [r.job_id for r in engine.ops.enqueue_rows(engine.link.client, rows)]
    assert engine.link.run_sync(lambda c: pause_queue(c, engine.keys, "bulk"))
    async with running_api(slotted(config), roles=("api", "worker")) as api:
        new = (await api.enqueue({"type": "noop", "queue": "bulk"}))["job_id"]
        plain = (await api.enqueue({"type": "noop"}))["job_id"]
        await api.wait_status(plain, "completed")
        bulk = api.daemon.engine.spaces.for_queue(engine.link.client, "bulk")
        assert engine.link.client.exists(bulk.keys.job(new))

        queues = {q["name"]: q for q in (await api.get(QUEUES)).json()["queues"]}
        assert queues["bulk"]["paused"] and queues["bulk"]["ready"] == 2
        assert queues["default"]["completed"] == 1
        got = (await api.get(f"{PREFIX}/{new}")).json()
        assert (got["status"], got["waiting"]) == (
            "pending",
            "queue 'bulk' is paused (fleetd queues resume bulk)",
        )
        assert await gauge(api, "fleetd_jobs", status="pending") == 2
        assert await gauge(api, "fleetd_queue_depth", status="pending", type="noop") == 2
        health = (await api.get(f"{PREFIX}/worker/health")).json()
        assert health["backlog"] == 2

        r = await api.post(f"{QUEUES}/bulk/resume")
        assert r.json() == {"name": "bulk", "paused": False, "changed": True}
        await api.wait_status(old, "completed")
        await api.wait_status(new, "completed")
        assert await gauge(api, "fleetd_jobs", status="completed") == 3
        queues = {q["name"]: q for q in (await api.get(QUEUES)).json()["queues"]}
        assert (queues["bulk"]["completed"], queues["bulk"]["ready"]) == (2, 0)


async def test_a_quarantine_in_a_queues_space_is_listed_and_released(config: Config) -> None:
    async with running_api(slotted(config), roles=("api", "worker")) as api:
        e = api.daemon.engine
        bulk = await e.link.call(lambda c: e.spaces.for_queue(c, "bulk"))
        failures = [(f"j{i}", 1, "noop", "acme", "crash") for i in range(2)]
        await e.link.call(lambda c: count_failures(c, bulk.scripts, Strikes(2, 600_000), failures))
        held = await api.enqueue({"type": "noop", "company_id": "acme", "queue": "bulk"})
        runs = await api.enqueue({"type": "noop", "company_id": "acme"})
        await api.wait_status(runs["job_id"], "completed")
        got = (await api.get(f"{PREFIX}/{held['job_id']}")).json()
        assert got["status"] == "pending" and got["waiting"].startswith(
            "quarantined: job type 'noop' of company 'acme' after 2 failures (2 crash)"
        )
        listed = (await api.get(QUARANTINES)).json()
        assert listed["count"] == 1
        assert listed["quarantines"][0]["kinds"] == {"crash": 2}

        r = await api.delete(f"{QUARANTINES}/noop/acme")
        assert r.status_code == 200, r.text
        assert r.json()["released"]["failures"] == 2
        await api.wait_status(held["job_id"], "completed")
        assert (await api.get(QUARANTINES)).json()["count"] == 0
        assert (await api.delete(f"{QUARANTINES}/noop/acme")).status_code == 404
