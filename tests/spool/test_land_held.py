"""land.lua holds a bypass a claim would hold, against a real redis-server: in mode
`processing`, a job whose part (type × company) is quarantined or whose queue is paused
is not stored — no job hash, no lease, no idempotency key, no event — and the reply says
`held` and why, on both ways the reply comes back (redis-py through the link's thread,
and the native lane from the trio thread); a known idempotency key still answers its
job first; a finished job (a spool's replay) lands whatever is paused. Over HTTP, a held
bypass is enqueued as usual and waits, its idempotency key owned by that enqueue, and
its critical slot is given back.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import trio
from api_client import PREFIX, api_config, running_api

from fleetd.backend.codec import JobRow, encode_row
from fleetd.backend.native_lane import NativeLane
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.quarantine import Strikes, count_failures
from fleetd.jobs.queues import pause_queue, resume_queue
from fleetd.spool.finished import (
    Finished,
    Landing,
    finished_encoder,
    land,
    land_finished,
    land_keys,
    landed,
)

LEASE_MS = 30_000


def quarantine(engine: Engine, job_type: str, company: str) -> None:
    """Two crashes of one part through quarantine_count.lua, as a worker pool counts
    them: the part is quarantined."""
    failures = [(f"j{i}", 1, job_type, company, "crash") for i in range(2)]
    got = engine.link.run_sync(
        lambda c: count_failures(c, engine.scripts, Strikes(2, 600_000), failures)
    )
    assert [q.company_id for q in got] == [company]


def written(engine: Engine, row: JobRow) -> dict[str, Any]:
    """What a landing of `row` would have written, as it stands."""
    keys = engine.keys

    def read(c: Any) -> dict[str, Any]:
        idem = c.get(keys.idem(row.company_id, row.idempotency_key or ""))
        return {
            "job": c.exists(keys.job(row.id)),
            "lease": c.zscore(keys.leases, row.id),
            "idem": idem,
            "events": c.xlen(keys.events),
        }

    got: dict[str, Any] = engine.link.run_sync(read)
    return got


async def threaded(engine: Engine, row: JobRow) -> Landing:
    """land.lua through redis-py (the link's thread; Sentinel, Cluster, NOSCRIPT)."""
    args = [LEASE_MS, "tok", "d1"]
    return engine.link.run_sync(
        lambda c: land(c, engine.scripts, encode_row(row), "processing", args)
    )


async def native(engine: Engine, row: JobRow) -> Landing:
    """land.lua from the trio thread (a direct server's bypass)."""
    lane = NativeLane(engine.link.url)
    try:
        args = [encode_row(row), "processing", LEASE_MS, "tok", "d1"]
        [reply] = await lane.pipeline([engine.scripts.command("land", land_keys(engine.scripts),
                                                               args)])  # fmt: skip
    finally:
        lane.close()
    assert not isinstance(reply, Exception), reply
    return landed(reply)


async def test_land_holds_a_quarantined_part_and_a_paused_queue_writing_nothing(
    engine: Engine,
) -> None:
    quarantine(engine, "noop", "acme")
    keys = engine.keys
    nothing = {"job": 0, "lease": None, "idem": None, "events": 0}
    for name, path in (("threaded", threaded), ("native", native)):

        async def send(row: JobRow, path: Any = path) -> Landing:
            got: Landing = await path(engine, row)
            return got

        row = engine.ops.prepare({"type": "noop", "company_id": "acme",
                                  "idempotency_key": f"k-{name}"})  # fmt: skip
        before = written(engine, row)["events"]
        got = await send(row)
        assert got == Landing(False, row.id, "", got.created_ms, held="quarantined"), name
        assert written(engine, row) == {**nothing, "events": before}, name

        # Another company's part of that type is not quarantined; its queue is paused.
        other = engine.ops.prepare({"type": "noop", "company_id": "globex",
                                    "idempotency_key": f"k-{name}"})  # fmt: skip
        assert engine.link.run_sync(lambda c: pause_queue(c, keys, "default"))
        got = await send(other)
        assert (got.stored, got.job_id, got.held) == (False, other.id, "paused"), name
        assert written(engine, other) == {**nothing, "events": before}, name
        # A job of a named queue: paused is that queue's name, not the default's.
        named = engine.ops.prepare({"type": "noop", "queue": "reports"})
        engine.link.run_sync(lambda c: pause_queue(c, keys, "reports"))
        engine.link.run_sync(lambda c: resume_queue(c, keys, "default"))
        assert (await send(named)).held == "paused", name
        assert written(engine, named)["job"] == 0
        engine.link.run_sync(lambda c: resume_queue(c, keys, "reports"))

        # Resumed: the same job lands claimed, with its key, its lease and its events.
        got = await send(other)
        assert (got.stored, got.status, got.held) == (True, "processing", ""), name
        now = written(engine, other)
        assert now["job"] == 1 and now["lease"] is not None and now["idem"] == other.id
        assert now["events"] == before + 2
        # Its key known, a paused queue answers that job (a duplicate), not `held`.
        engine.link.run_sync(lambda c: pause_queue(c, keys, "default"))
        again = engine.ops.prepare({"type": "noop", "company_id": "globex",
                                    "idempotency_key": f"k-{name}"})  # fmt: skip
        dup = await send(again)
        assert (dup.stored, dup.job_id, dup.status, dup.held) == (
            False, other.id, "processing", ""
        ), name  # fmt: skip
        engine.link.run_sync(lambda c: resume_queue(c, keys, "default"))


def test_a_finished_job_lands_whatever_is_paused_or_quarantined(engine: Engine) -> None:
    """A spool's replay stores a job that already ran: nothing may hold it back."""
    quarantine(engine, "noop", "acme")
    engine.link.run_sync(lambda c: pause_queue(c, engine.keys, "default"))
    row = engine.ops.prepare({"type": "noop", "company_id": "acme"})
    done = Finished("completed", "host:1", 1_000, 2_000, result='{"ok":true}')
    text = finished_encoder(done)(row)
    got = engine.link.run_sync(lambda c: land_finished(c, engine.scripts, text, 500, done))
    assert got == (True, row.id)
    job = engine.link.run_sync(engine.ops.get, row.id)
    assert job is not None and job.status.value == "completed"


async def test_a_held_bypass_is_enqueued_as_usual_and_gives_its_slot_back(
    config: Config, engine: Engine
) -> None:
    quarantine(engine, "noop", "acme")
    cfg = api_config(config)
    cfg = dataclasses.replace(cfg, worker=dataclasses.replace(cfg.worker, critical_slots=1))
    body = {"type": "noop", "priority": "critical", "bypass": True}
    # A failure is raised once the daemon has stopped as usual: an exception leaving
    # running_api cancels a worker daemon instead, which waits out its jobs' grace.
    failure: Exception | None = None
    async with running_api(cfg, roles=("api", "worker")) as api:
        try:
            key = {**api.headers, "Idempotency-Key": "held-1"}
            acme = {**body, "company_id": "acme"}
            held = await api.post(f"{PREFIX}/enqueue", json=acme, headers=key)
            assert held.status_code == 201, held.text
            assert "ran" not in held.json() and held.json()["status"] == "pending", held.json()
            job_id = held.json()["job_id"]
            got = (await api.get(f"{PREFIX}/{job_id}")).json()
            assert got["status"] == "pending" and got["waiting"].startswith("quarantined"), got
            # The key is the enqueue's: the same key again answers that job.
            again = await api.post(f"{PREFIX}/enqueue", json=acme, headers=key)
            assert again.status_code == 200 and again.json()["job_id"] == job_id, again.text
            # The one critical slot was given back: a job of a part not held bypasses.
            free = await api.post(f"{PREFIX}/enqueue", json={**body, "company_id": "globex"})
            assert free.status_code == 201 and free.json().get("ran") == "bypass", free.text
            await api.wait_status(free.json()["job_id"], "completed")
            released = await api.delete("/api/v1/admin/quarantines/noop/acme")
            assert released.status_code == 200, released.text
            with trio.fail_after(10):
                await api.wait_status(job_id, "completed")
        except Exception as exc:
            failure = exc
    if failure is not None:
        raise failure
