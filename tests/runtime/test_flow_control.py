"""Flow control end to end: real `fleetd run` daemons against a real redis-server.

- A rolling deploy: a daemon without a job type's handler never claims its jobs (they
  wait, pending, with no attempt burnt, and an alert names the type) while a daemon
  with the handler runs them all — no job of that type fails.
- A global concurrency limit across 3 daemons holds exactly while one is SIGKILLed
  mid-run: a sampler never sees more jobs of the type running than the limit, and the
  dead daemon's slot comes back when its lease is reaped; the same for a named queue's
  own limit.
- Fair share on a running daemon: another company's jobs overtake a 5,000-job backlog.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from conftest import fleetd_env
from daemons import Fleet, settings, wait_for
from engine_jobs import enqueue, jobs_of

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus

FAST_RECOVERY = settings(worker_lease="2s", maintenance_interval="100ms")


def stats(engine: Engine) -> dict[str, int]:
    return engine.link.run_sync(engine.ops.stats)


def alert_events(engine: Engine) -> list[dict[str, Any]]:
    out = []
    for _id, fields in engine.link.client.xrange(engine.keys.events):
        if fields["type"].startswith("alert."):
            out.append(json.loads(fields["data"]))
    return out


@pytest.mark.slow
def test_rolling_deploy_a_daemon_lacking_a_type_fails_none_of_its_jobs(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    env = fleetd_env(config) | settings(
        alerts_interval="100ms", alerts_raise_after="0s", daemon_heartbeat_interval="200ms"
    )
    ids = enqueue(engine, [{"type": "noop", "data": {"sleep_ms": 20}}] * 40)
    old = fleet.start(env | settings(plugins_disable="noop", daemon_name="old"), name="old")

    # The old daemon has no noop handler: it leaves the jobs alone and an alert names it.
    def alerted() -> bool:
        old.assert_alive()
        return any(
            e["alert"] == "unhandled_type" and e["type"] == "alert.raised"
            for e in alert_events(engine)
        )

    wait_for(alerted, 15, "the unhandled_type alert", fleet.tails)
    raised = next(e for e in alert_events(engine) if e["alert"] == "unhandled_type")
    assert raised["message"].endswith("job type(s) noop"), raised
    time.sleep(1.5)  # > poll_interval: the old daemon polled and claimed again meanwhile
    assert {(j.status, j.attempts) for j in jobs_of(engine, ids)} == {(JobStatus.PENDING, 0)}

    new = fleet.start(env | settings(daemon_name="new"), name="new")

    def drained() -> bool:
        old.assert_alive()
        new.assert_alive()
        return stats(engine)["completed"] == len(ids)

    wait_for(drained, 30, "the new daemon to run every noop job", fleet.tails)
    jobs = jobs_of(engine, ids)
    assert {j.status for j in jobs} == {JobStatus.COMPLETED}
    assert all(j.attempts == 1 and (j.worker or "").startswith("new:") for j in jobs)
    assert stats(engine)["failed"] == 0
    assert "no handler" not in old.log()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["type", "queue"])
def test_a_concurrency_limit_holds_across_three_daemons_and_a_sigkill(
    config: Config, engine: Engine, fleet: Fleet, kind: str
) -> None:
    """The limit of a job type, or of a named queue ([limits] queues) whose jobs are of
    two types and two companies."""
    limit = 2
    env = (
        fleetd_env(config)
        | FAST_RECOVERY
        | settings(worker_concurrency=4, daemon_heartbeat_interval="500ms")
    )
    sleepy = {"type": "noop", "data": {"sleep_ms": 300}}
    if kind == "type":
        env |= settings(limits_types=f"noop={limit}")
        reqs = [sleepy] * 24
        field = "t:noop"
    else:
        env |= settings(limits_queues=f"bulk={limit}", worker_queues="bulk")
        mail = {"type": "email_notification", "company_id": "B",
                "data": {"to": "a@example.com", "subject": "s", "body": "b"}}  # fmt: skip
        reqs = [{**sleepy, "queue": "bulk", "company_id": "A"}] * 20 + [
            {**mail, "queue": "bulk"}
        ] * 4
        field = "q:bulk"
    client = engine.link.client
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:  # the processing index: every job claimed and not finished
        while not stop.is_set():
            samples.append((time.monotonic(), int(client.zcard(engine.keys.leases))))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        daemons = [fleet.start(env | settings(daemon_name=n), name=n) for n in ("a", "b", "c")]
        ids = enqueue(engine, reqs)

        def victim_running() -> str:
            for job_id in client.zrange(engine.keys.leases, 0, -1):
                worker = client.hget(engine.keys.job(job_id), "worker") or ""
                if worker.startswith(("a:", "b:", "c:")):
                    return worker.split(":")[0]
            return ""

        name = wait_for(victim_running, 15, "a daemon running a job", fleet.tails)
        victim = next(d for d in daemons if d.name == name)
        victim.kill()
        killed_at = time.monotonic()

        def drained() -> bool:
            return stats(engine)["completed"] == len(ids)

        wait_for(drained, 60, "every job completed", fleet.tails)
    finally:
        stop.set()
        sampler.join(5)
    peak = max(n for _t, n in samples)
    assert peak <= limit, f"{peak} running at once, limit {limit}"
    assert peak == limit  # the limit was reached, not merely never approached
    stalled = [f for _id, f in client.xrange(engine.keys.events) if f["type"] == "job.stalled"]
    assert stalled, "the killed daemon's job was reaped"
    # After the reap the slot came back: both slots busy again at some point.
    reaped_at = killed_at + 2.0  # the lease: the reap is at or after this
    assert any(n == limit for t, n in samples if t > reaped_at), "the slot never came back"
    assert client.hget(engine.keys.limits_running, field) in (None, "0")
    s = stats(engine)
    assert (s["completed"], s["failed"], s["pending"], s["processing"]) == (24, 0, 0, 0)


@pytest.mark.slow
def test_a_companys_jobs_overtake_another_companys_backlog_while_it_drains(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    """Company A's 5,000 pending jobs drain on a real daemon while company B enqueues
    one job every 200 ms: each of B's jobs starts before the jobs of A's backlog that
    were waiting when it came (a FIFO queue would start it after all of them). No
    timing is asserted; bench/flow_control.py measures B's wait (`fair`)."""
    backlog = enqueue(engine, [{"type": "noop", "company_id": "A",
                                "data": {"sleep_ms": 5}}] * 5000)  # fmt: skip
    fleet.start(fleetd_env(config) | settings(worker_concurrency=10), name="d")
    wait_for(lambda: stats(engine)["completed"] > 0, 30, "the first job of A", fleet.tails)
    b_jobs = []
    for _ in range(5):
        b_jobs += enqueue(engine, [{"type": "noop", "company_id": "B"}])
        time.sleep(0.2)
    wait_for(lambda: stats(engine)["completed"] == 5005, 120, "every job", fleet.tails)
    a_started = sorted(j.started_at_ms for j in jobs_of(engine, backlog) if j.started_at_ms)
    assert len(a_started) == 5000
    for b in jobs_of(engine, b_jobs):
        assert b.started_at_ms is not None
        waiting = [t for t in a_started if t > b.created_at_ms]  # A's jobs still pending then
        overtaken = [t for t in waiting if t > b.started_at_ms]
        # B's job went out with one of the next claims: at most a claim's worth of A's
        # jobs (claim_batch 100 per fetcher) started between its enqueue and its start.
        assert len(waiting) - len(overtaken) <= 200, (len(waiting), len(overtaken))
        assert len(overtaken) > 0  # it did not wait for the backlog to drain
