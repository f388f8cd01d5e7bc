"""Named queues end to end: real `fleetd run` daemons against a real redis-server.

- Routing by `[queues] routes` and by the caller; a daemon serving only `mail` runs
  every `mail` job and never claims a `default` one, which a daemon of `default` runs.
- `fleetd queues pause` stops claims of that queue on every daemon (its jobs stay
  pending, no attempt spent), and `fleetd queues resume` restarts them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import pytest
from conftest import fleetd_env
from daemons import Fleet, run_cli, settings, wait_for
from engine_jobs import enqueue, jobs_of

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus

EMAIL = {"to": "a@example.com", "subject": "s", "body": "b"}
FAST = settings(worker_poll_interval="100ms", daemon_heartbeat_interval="200ms")


def all_completed(engine: Engine, ids: Sequence[str]) -> bool:
    return {j.status for j in jobs_of(engine, ids)} == {JobStatus.COMPLETED}


@pytest.mark.slow
def test_a_mail_daemon_never_claims_default_jobs(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    env = fleetd_env(config) | FAST | settings(queues_routes="noop=mail")
    mail_d = fleet.start(env | settings(worker_queues="mail", daemon_name="m"), name="m")
    # Through the CLI, which reads the routes of the config (FLEETD_QUEUES_ROUTES).
    lines = "\n".join(['{"type": "noop", "data": {"sleep_ms": 5}}'] * 20)
    sent = run_cli(env, "enqueue", "--jsonl", "-", "--json", stdin=lines)
    assert sent.returncode == 0, sent.stderr
    routed = [j["job_id"] for j in json.loads(sent.stdout)["jobs"]]
    assert {j.queue for j in jobs_of(engine, routed)} == {"mail"}
    plain = enqueue(engine, [{"type": "noop", "queue": "default"}] * 10)
    # The CLI's --queue: a third queue no daemon serves.
    out = run_cli(env, "enqueue", "noop", "--queue", "other", "--json")
    assert out.returncode == 0, out.stderr
    bad = run_cli(env, "enqueue", "noop", "--queue", "Not OK")
    assert bad.returncode != 0 and "queue" in bad.stderr and "Traceback" not in bad.stderr

    wait_for(lambda: all_completed(engine, routed), 30, "the mail jobs", fleet.tails)
    time.sleep(0.5)  # several polls of the mail daemon with default jobs ready
    mail_d.assert_alive()
    assert {(j.status, j.attempts) for j in jobs_of(engine, plain)} == {(JobStatus.PENDING, 0)}
    assert all((j.worker or "").startswith("m:") for j in jobs_of(engine, routed))

    fleet.start(env | settings(daemon_name="d"), name="d")  # serves `default`
    wait_for(lambda: all_completed(engine, plain), 30, "the default jobs", fleet.tails)
    assert all((j.worker or "").startswith("d:") for j in jobs_of(engine, plain))
    listed = run_cli(env, "queues", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    figures = {q["name"]: q for q in json.loads(listed.stdout)["queues"]}
    assert figures["other"]["ready"] == 1 and figures["mail"]["ready"] == 0


@pytest.mark.slow
def test_pause_stops_claims_on_every_daemon_and_resume_restarts_them(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    env = fleetd_env(config) | FAST
    both = settings(worker_queues="bulk,default")
    for name in ("a", "b"):
        fleet.start(env | both | settings(daemon_name=name), name=name)
    paused = run_cli(env, "queues", "pause", "bulk")
    assert paused.returncode == 0, paused.stderr
    bulk = enqueue(engine, [{"type": "noop", "queue": "bulk"}] * 10)
    plain = enqueue(engine, [{"type": "noop"}] * 10)
    wait_for(lambda: all_completed(engine, plain), 30, "the default jobs", fleet.tails)
    time.sleep(0.5)  # polls of both daemons with the paused queue's jobs ready
    assert {(j.status, j.attempts) for j in jobs_of(engine, bulk)} == {(JobStatus.PENDING, 0)}

    resumed = run_cli(env, "queues", "resume", "bulk")
    assert resumed.returncode == 0, resumed.stderr
    wait_for(lambda: all_completed(engine, bulk), 30, "the bulk jobs", fleet.tails)
    assert {j.attempts for j in jobs_of(engine, bulk)} == {1}
    workers = {(j.worker or "?").split(":")[0] for j in jobs_of(engine, bulk + plain)}
    assert workers <= {"a", "b"}
    bad = run_cli(env, "queues", "pause", "No Such")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
