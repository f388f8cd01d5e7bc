"""Stalled leases count towards quarantines (reap.lua, _quarantine.lua): a job type of a
company whose jobs keep stalling their daemons is held like one that keeps crashing —
a job that stalls out (fails after `max_stalls` lease expiries) counts, so daemons
killed under their jobs (a deploy, an operator, a crash loop) quarantine nothing.

Against the real test redis-server: leases claimed and left to expire, then reaped; and
end to end, real `fleetd run` daemons SIGKILLed while running a job, its lease reaped by
the next daemon."""

from __future__ import annotations

import time

import pytest
from conftest import fleetd_env
from daemons import Fleet, FleetdProcess, settings, wait_for
from engine_jobs import waiting_reason
from test_system import FAST_RECOVERY, enqueue

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import Job, JobStatus
from fleetd.jobs.quarantine import Quarantine, list_quarantines, release

LEASE_MS = 50
# quarantine_after 2 within 10 minutes.
STRIKES = (2, 600_000)


def claim_and_let_expire(engine: Engine, count: int) -> list[str]:
    """Claim `count` jobs with a 50 ms lease and never renew it: a daemon that stalled."""
    got = engine.scripts.claim(engine.link.client, count, LEASE_MS, "tok", "d-stalled")
    time.sleep(LEASE_MS * 3 / 1000)
    return [job.id for job in got.jobs]


async def test_reaped_leases_quarantine_their_type_and_company(engine: Engine) -> None:
    """max_stalls 2 here: a job stalls out at its second lease expiry, and that counts."""
    acme = [
        await engine.queue.enqueue({"type": "noop", "data": {}, "company_id": "acme"})
        for _ in range(2)
    ]
    other = await engine.queue.enqueue({"type": "noop", "data": {}, "company_id": "globex"})
    client = engine.link.client

    claimed = claim_and_let_expire(engine, 3)
    assert sorted(claimed) == sorted([r.job_id for r in acme] + [other.job_id])
    # A first stall each (a daemon died with these three running): nothing counted.
    assert engine.scripts.reap(client, 2, 100, STRIKES) == (3, 0, 0, 0)
    assert list_quarantines(client, engine.keys) == []
    # Running again at a second death, they stall out: acme's two count, hold acme's noop.
    assert sorted(claim_and_let_expire(engine, 3)) == sorted(claimed)
    requeued, failed, cancelled, held = engine.scripts.reap(client, 2, 100, STRIKES)
    assert (requeued, failed, cancelled, held) == (0, 3, 0, 1)

    found = list_quarantines(client, engine.keys)
    assert [(q.job_type, q.company_id, q.failures, q.kinds) for q in found] == [
        ("noop", "acme", 2, {"stall": 2})
    ]
    events = [f for _id, f in client.xrange(engine.keys.events)]
    assert [e["company_id"] for e in events if e["type"] == "part.quarantined"] == ["acme"]
    # acme's new job waits, held; globex's (one stall-out, under the count) runs.
    held_job = await engine.queue.enqueue({"type": "noop", "data": {}, "company_id": "acme"})
    runs = await engine.queue.enqueue({"type": "noop", "data": {}, "company_id": "globex"})
    again = engine.scripts.claim(client, 10, 60_000, "tok2", "d-healthy")
    assert [job.id for job in again.jobs] == [runs.job_id]
    job = await engine.queue.get(held_job.job_id)
    assert job is not None and job.status is JobStatus.PENDING
    why = await waiting_reason(engine, job, "noop")
    assert why is not None and why.startswith(
        "quarantined: job type 'noop' of company 'acme' after 2 failures (2 stall)"
    ), why

    assert await engine.link.call(release, engine.scripts, "noop", "acme") is not None
    freed = engine.scripts.claim(client, 10, 60_000, "tok3", "d-healthy")
    assert [job.id for job in freed.jobs] == [held_job.job_id]


def test_stalls_count_only_when_quarantine_kinds_name_them(engine: Engine) -> None:
    from fleetd.config.isolation_section import IsolationConfig
    from fleetd.jobs.quarantine import Strikes
    from fleetd.runtime.maintenance import Maintenance, MaintenanceSettings

    def reaper_strikes(iso: IsolationConfig) -> tuple[int, int]:
        settings = MaintenanceSettings(
            interval=1.0, max_stalls=2, completed_ttl=0, failed_ttl=0, cancelled_ttl=0,
            reconnect_max_backoff=1.0, isolation=iso,
        )  # fmt: skip
        return Maintenance(engine.link, engine.scripts, engine.ops, settings)._strikes

    assert reaper_strikes(IsolationConfig(quarantine_after=2, quarantine_window=60)) == (2, 60_000)
    assert reaper_strikes(IsolationConfig(quarantine_after=2, quarantine_kinds=("crash",))) == (
        0, 0,
    )  # fmt: skip

    counted = Strikes.of(IsolationConfig(quarantine_after=2, quarantine_window=60))
    assert counted is not None and "stall" in counted.kinds
    assert counted.counted("timeout: timed out after 1s") == "timeout"
    fewer = Strikes.of(IsolationConfig(quarantine_after=2, quarantine_kinds=("memory",)))
    assert fewer is not None and fewer.kinds == {"memory"}
    assert fewer.counted("timeout: timed out after 1s") is None
    assert fewer.counted("resource_exhausted: memory: MemoryError") == "memory"
    assert Strikes.of(IsolationConfig(quarantine_after=2, quarantine_kinds=())) is None


async def test_stalls_are_not_counted_when_quarantines_are_off(engine: Engine) -> None:
    for _ in range(3):
        await engine.queue.enqueue({"type": "noop", "data": {}, "company_id": "acme"})
    claim_and_let_expire(engine, 3)
    assert engine.scripts.reap(engine.link.client, 2, 100, (0, 0)) == (3, 0, 0, 0)
    claim_and_let_expire(engine, 3)  # they stall out: would count
    assert engine.scripts.reap(engine.link.client, 2, 100, (0, 0)) == (0, 3, 0, 0)
    assert list_quarantines(engine.link.client, engine.keys) == []


@pytest.mark.slow
def test_a_job_that_stalls_out_over_two_daemon_deaths_counts_as_a_stall(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    env = fleetd_env(config) | FAST_RECOVERY
    env |= settings(isolation_quarantine_after=1, worker_max_stalls=2)
    slow = {"type": "noop", "data": {"sleep_ms": 60_000}, "company_id": "acme"}
    [job_id] = enqueue(engine, [slow])

    def job(an_id: str = job_id) -> Job:
        found = engine.link.run_sync(engine.ops.get, an_id)
        assert found is not None
        return found

    def running_on(daemon: FleetdProcess, stalls: int) -> bool:
        daemon.assert_alive()
        j = job()
        return j.status is JobStatus.PROCESSING and j.stalls == stalls

    a = fleet.start(env, name="A")
    wait_for(lambda: running_on(a, 0), 20, "daemon A to run the slow job", fleet.tails)
    a.kill()
    # B reaps A's lease (a first stall: not counted, even at quarantine_after = 1) and
    # runs the job again.
    b = fleet.start(env, name="B")
    wait_for(lambda: running_on(b, 1), 30, "daemon B to run the job again", fleet.tails)
    assert list_quarantines(engine.link.client, engine.keys) == []
    b.kill()
    c = fleet.start(env, name="C")  # its reaper takes B's lease: the job stalls out

    def quarantined() -> list[Quarantine]:
        c.assert_alive()
        return list_quarantines(engine.link.client, engine.keys)

    found = wait_for(quarantined, 20, "the part to be quarantined", fleet.tails)
    assert [(q.job_type, q.company_id, q.kinds) for q in found] == [("noop", "acme", {"stall": 1})]
    assert job().status is JobStatus.FAILED and job().stalls == 2
    # acme's next noop is held: daemon C does not run it.
    [held] = enqueue(engine, [{"type": "noop", "data": {}, "company_id": "acme"}])
    time.sleep(1.0)
    assert job(held).status is JobStatus.PENDING
