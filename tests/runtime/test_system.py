"""System tests: real `fleetd run` subprocesses against a real redis-server.

What a user of a job system relies on, checked end to end: a crashed daemon loses no
job and reruns only the jobs it was running; a graceful stop finishes or releases
running jobs at once; a Redis restart or crash loses no acknowledged job and does not
kill the daemon; a daemon waits for a missing Redis without spinning; the embedded
(memory://) mode serves the CLI of another process and says it is not durable.

Daemons are configured through FLEETD_* variables only; every wait is bounded and fails
with the daemons' log tails.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import fleetd_env, make_config
from daemons import Fleet, cli_json, run_cli, settings, wait_for
from redis_server import RedisServerFactory

from fleetd.backend.redis_link import RedisUnavailable
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import Job, JobStatus

# Lease and reap cadence of the crash tests: a dead daemon's jobs return within ~2 s.
FAST_RECOVERY = settings(worker_lease="2s", maintenance_interval="100ms")


@contextmanager
def open_engine(cfg: Config) -> Iterator[Engine]:
    """A client-side Engine for `cfg` with its scripts loaded (the `engine` fixture, for
    a private redis-server)."""
    eng = Engine.build(cfg, daemon=True)
    try:
        for script in eng.scripts.all():
            script.load(eng.link.client)
        yield eng
    finally:
        eng.close()


def enqueue(engine: Engine, requests: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = engine.ops.prepare_many(requests)
    return [r.job_id for r in engine.link.run_sync(engine.ops.enqueue_rows, rows)]


def stats(engine: Engine) -> dict[str, int]:
    return engine.link.run_sync(engine.ops.stats)


def get_jobs(engine: Engine, ids: Sequence[str]) -> dict[str, Job]:
    found = engine.link.run_sync(engine.ops.get_many, ids)
    lost = [i for i, job in zip(ids, found, strict=True) if job is None]
    assert not lost, f"{len(lost)} job(s) lost, e.g. {lost[:5]}"
    return {job.id: job for job in found if job is not None}


def in_status(engine: Engine, status: JobStatus) -> set[str]:
    return set(engine.link.client.zrange(engine.keys.status(status), 0, -1))


def events(engine: Engine, event_type: str) -> list[dict[str, str]]:
    entries = engine.link.client.xrange(engine.keys.events)
    return [fields for _id, fields in entries if fields["type"] == event_type]


def all_completed(engine: Engine, ids: Sequence[str]) -> Callable[[], bool]:
    def check() -> bool:
        jobs = get_jobs(engine, ids)
        return all(j.status is JobStatus.COMPLETED for j in jobs.values())

    return check


def assert_clean_log(text: str) -> None:
    assert "Traceback" not in text, text[-4000:]


# -- 1. crash ----------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_loses_no_job_and_reruns_only_the_running_ones(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    env = fleetd_env(config) | FAST_RECOVERY | settings(daemon_heartbeat_interval="500ms")
    # Every third job is fast: 20 slow and 10 fast, FIFO within their one priority.
    requests = [
        {"type": "noop", "data": {"n": i} | ({} if i % 3 == 2 else {"sleep_ms": 1500})}
        for i in range(30)
    ]
    ids = enqueue(engine, requests)
    a = fleet.start(env | settings(worker_concurrency=5), name="A")

    # The first wave of slow jobs (~1.5 s) is done and the second is running. (A daemon
    # may also hold jobs it claimed ahead: they are `processing` in Redis as well.)
    def second_wave() -> bool:
        a.assert_alive()
        s = stats(engine)
        return s["completed"] >= 8 and s["processing"] >= 5

    wait_for(second_wave, 15, "5 jobs running after the first wave", fleet.tails)
    a.kill()

    # Nothing moves while no daemon runs: the processing index now holds exactly the jobs
    # that were running (claimed, outcome not written) at the kill.
    listing = cli_json(env, "jobs", "list", "--status", "processing", "--json")
    running = {j["id"] for j in listing["jobs"]}
    assert running == in_status(engine, JobStatus.PROCESSING)
    assert 1 <= len(running) <= 10, listing  # ~5 running, maybe 5 claimed ahead
    completed_by_a = in_status(engine, JobStatus.COMPLETED)
    assert len(completed_by_a) >= 8

    b = fleet.start(env | settings(worker_concurrency=10), name="B")

    def drained() -> bool:
        b.assert_alive()
        s = stats(engine)
        return s["completed"] == len(ids) and s["pending"] == 0 and s["processing"] == 0

    wait_for(drained, 20, "daemon B to finish every job", fleet.tails)
    s = stats(engine)
    assert s == {
        "pending": 0, "processing": 0, "completed": 30, "failed": 0, "retrying": 0,
        "cancelled": 0, "total": 30,
    }  # fmt: skip
    jobs = get_jobs(engine, ids)
    for job_id, req in zip(ids, requests, strict=True):
        job = jobs[job_id]
        assert job.status is JobStatus.COMPLETED
        assert job.result is not None
        assert job.result["echo"] == req["data"] and job.result["worker_id"] == job.worker
        if job_id in running:  # reaped once, run again by B
            assert (job.attempts, job.stalls) == (2, 1), job
        else:  # run exactly once
            assert (job.attempts, job.stalls) == (1, 0), job
    duplicates = {i for i, j in jobs.items() if j.attempts > 1}
    assert duplicates == running
    assert not duplicates & completed_by_a
    assert {e["job_id"] for e in events(engine, "job.stalled")} == running
    assert "recovered jobs with expired leases" in b.log()
    assert_clean_log(b.log())


# -- 2. graceful stop --------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_lets_running_jobs_finish_within_shutdown_timeout(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    env = fleetd_env(config) | settings(worker_concurrency=2, worker_shutdown_timeout="10s")
    ids = enqueue(engine, [{"type": "noop", "data": {"sleep_ms": 1500, "n": i}} for i in range(5)])
    d = fleet.start(env)
    wait_for(lambda: len(in_status(engine, JobStatus.PROCESSING)) == 2, 10, "2 running", d.tail)
    running = in_status(engine, JobStatus.PROCESSING)

    started = time.monotonic()
    d.send(signal.SIGTERM)
    assert d.wait_exit(8) == 0, d.tail()
    # It waited for the jobs (1.5 s each), not for the whole 10 s grace.
    assert time.monotonic() - started < 5, d.tail()

    jobs = get_jobs(engine, ids)
    for job_id, job in jobs.items():
        if job_id in running:
            assert job.status is JobStatus.COMPLETED, job
            assert job.attempts == 1
        else:  # never started, untouched
            assert job.status is JobStatus.PENDING, job
            assert (job.attempts, job.started_at_ms, job.worker) == (0, None, None), job
    started_events = {e["job_id"] for e in events(engine, "job.started")}
    assert started_events == running
    assert stats(engine) == {
        "pending": 3, "processing": 0, "completed": 2, "failed": 0, "retrying": 0,
        "cancelled": 0, "total": 5,
    }  # fmt: skip
    assert_clean_log(d.log())


@pytest.mark.slow
def test_sigterm_past_shutdown_timeout_releases_running_jobs_at_once(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    # The lease (30 s) is far longer than the test: pending again can only come from the
    # release on stop, never from the reaper.
    env = fleetd_env(config) | settings(
        worker_concurrency=2, worker_shutdown_timeout="500ms", worker_lease="30s"
    )
    ids = enqueue(engine, [{"type": "noop", "data": {"sleep_ms": 3000, "n": i}} for i in range(2)])
    d = fleet.start(env, name="A")
    wait_for(lambda: len(in_status(engine, JobStatus.PROCESSING)) == 2, 10, "2 running", d.tail)

    signalled = time.monotonic()
    d.send(signal.SIGTERM)
    wait_for(
        lambda: in_status(engine, JobStatus.PENDING) == set(ids),
        2.0,
        "both running jobs back to pending within 2 s of SIGTERM",
        d.tail,
    )
    assert time.monotonic() - signalled < 2.0
    for job in get_jobs(engine, ids).values():
        assert job.status is JobStatus.PENDING, job
        # Not counted: back to the attempts it had before it was claimed.
        assert (job.attempts, job.retry_count, job.stalls, job.worker) == (0, 0, 0, None), job
    requeued = events(engine, "job.requeued")
    assert sorted(e["job_id"] for e in requeued) == sorted(ids)
    assert all(json.loads(e["data"]) == {"reason": "shutdown"} for e in requeued)
    assert d.wait_exit(5) == 0, d.tail()
    assert_clean_log(d.log())

    b = fleet.start(env, name="B")
    wait_for(all_completed(engine, ids), 10, "daemon B to complete both jobs", fleet.tails)
    for job in get_jobs(engine, ids).values():
        assert (job.attempts, job.stalls) == (1, 0), job
    assert_clean_log(b.log())


# -- 3. Redis restarts and crashes -------------------------------------------------------

STREAM_JOBS = 2000
# Enqueue pacing: ~2000 jobs over ~3 s, so the outage lands mid-stream.
STREAM_PAUSE = 0.001
OUTAGE_AT = 600
OUTAGE = 1.0


def _enqueue_stream(engine: Engine, outage: Callable[[], None]) -> tuple[list[str], int]:
    """Enqueue STREAM_JOBS jobs one call at a time; start `outage` in a thread part way.
    A call that fails was never acknowledged and is retried with the same idempotency
    key (so a write that did land before the connection broke is not doubled).
    Returns the acknowledged ids and how many calls failed."""
    acked: list[str] = []
    failures = 0
    thread = threading.Thread(target=outage, name="redis-outage")
    deadline = time.monotonic() + 60
    try:
        for n in range(STREAM_JOBS):
            if n == OUTAGE_AT:
                thread.start()
            row = engine.ops.prepare(
                {"type": "noop", "data": {"n": n}, "idempotency_key": f"stream-{n}"}
            )
            while True:
                try:
                    [result] = engine.link.run_sync(engine.ops.enqueue_rows, [row])
                    break
                except RedisUnavailable:
                    failures += 1
                    assert time.monotonic() < deadline, "Redis did not come back"
                    time.sleep(0.02)
            acked.append(result.job_id)
            time.sleep(STREAM_PAUSE)
    finally:
        if thread.ident is not None:
            thread.join()
    return acked, failures


@pytest.mark.slow
@pytest.mark.parametrize("how", ["restart", "kill"])
def test_redis_restart_loses_no_acknowledged_job(
    how: str,
    own_redis: RedisServerFactory,
    namespace: str,
    tmp_path: Path,
    fleet: Fleet,  # after own_redis: the daemons stop before their Redis does
) -> None:
    server = own_redis(aof=True)  # appendfsync always: an acknowledged write is on disk
    cfg = make_config(server.url, namespace, tmp_path / "state")
    env = (
        fleetd_env(cfg)
        | FAST_RECOVERY
        | settings(worker_concurrency=20, redis_reconnect_max_backoff="500ms")
    )
    d = fleet.start(env)

    def outage() -> None:
        if how == "restart":
            server.stop()  # SIGTERM: clean shutdown
        else:
            server.kill()  # SIGKILL: a crash
        time.sleep(OUTAGE)
        server.start()

    with open_engine(cfg) as engine:
        acked, failures = _enqueue_stream(engine, outage)
        assert failures > 0, "the outage did not hit any enqueue: the test proved nothing"
        assert len(set(acked)) == STREAM_JOBS

        def done() -> bool:
            d.assert_alive()
            s = stats(engine)
            return s["completed"] == STREAM_JOBS and s["pending"] + s["processing"] == 0

        wait_for(done, 30, f"all {STREAM_JOBS} acknowledged jobs completed", d.tail, 0.1)
        jobs = get_jobs(engine, acked)
        assert all(j.status is JobStatus.COMPLETED for j in jobs.values())
        assert stats(engine)["total"] == STREAM_JOBS

    assert d.alive, d.tail()
    log = d.log()
    assert "became unreachable" in log, d.tail()
    assert log.count("is reachable") >= 2, d.tail()  # at start, and again after
    assert_clean_log(log)


# -- 5. Redis down for a while -------------------------------------------------------------

# CPU a daemon may burn in 3 s while Redis is down: backoff sleeps cost ~nothing; a
# spinning retry loop burns a whole core (3 s).
IDLE_CPU_LIMIT = 0.5


@pytest.mark.slow
def test_daemon_waits_for_redis_without_exiting_or_spinning(
    own_redis: RedisServerFactory, namespace: str, tmp_path: Path, fleet: Fleet
) -> None:
    server = own_redis()
    cfg = make_config(server.url, namespace, tmp_path / "state")
    env = fleetd_env(cfg) | settings(redis_reconnect_max_backoff="1s")
    d = fleet.start(env)

    server.stop()
    wait_for(lambda: "became unreachable" in d.log(), 5, "the daemon to notice", d.tail)
    cpu_before = d.cpu_seconds()
    time.sleep(3)
    assert d.alive, d.tail()
    burned = d.cpu_seconds() - cpu_before
    assert burned < IDLE_CPU_LIMIT, f"{burned:.2f}s CPU in 3s with Redis down\n{d.tail()}"

    server.start()  # same port, empty data: scripts must be loaded again
    with open_engine(cfg) as engine:
        [job_id] = _retry_unavailable(lambda: enqueue(engine, [{"type": "noop"}]))
        wait_for(all_completed(engine, [job_id]), 15, "the job after Redis returned", d.tail)
    assert d.alive
    assert_clean_log(d.log())


def _retry_unavailable(fn: Callable[[], list[str]], timeout: float = 5.0) -> list[str]:
    """The test's own pooled connections died with the server: retry once they reopen."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except RedisUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- 4. embedded mode ----------------------------------------------------------------------


def embedded_env(state_dir: Path) -> dict[str, str]:
    """Like fleetd_env, but redis.url left at its default (memory://)."""
    env = fleetd_env(make_config("memory://", "main", state_dir))
    del env["FLEETD_REDIS_URL"], env["FLEETD_REDIS_NAMESPACE"]
    return env


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("fleetd:")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_embedded_mode_serves_the_cli_of_another_process(fleet: Fleet, tmp_path: Path) -> None:
    env = embedded_env(tmp_path / "state")
    d = fleet.start(env)
    assert "not durable" in d.log().lower(), d.tail()

    done = run_cli(env, "enqueue", "noop", "--data", '{"x":1}', "--wait", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert set(body) == {"job", "status"}
    assert body["status"] == "completed"
    job = body["job"]
    assert job["status"] == "completed"
    assert (job["type"], job["data"]) == ("noop", {"x": 1})
    assert job["result"]["echo"] == {"x": 1} and job["result"]["worker_id"] == job["worker"]
    assert {"id", "priority", "created_at", "retry_count", "max_retries"} <= set(job)

    assert cli_json(env, "stats", "--json") == {
        "stats": {
            "pending": 0, "processing": 0, "completed": 1, "failed": 0, "retrying": 0,
            "cancelled": 0, "total": 1,
        }
    }  # fmt: skip

    d.send(signal.SIGTERM)
    assert d.wait_exit(10) == 0, d.tail()
    assert_clean_log(d.log())
    gone = run_cli(env, "stats", "--json")
    assert gone.returncode == 2, gone
    assert gone.stdout == ""
    assert len(gone.stderr.splitlines()) == 1, gone.stderr
    assert "no running fleetd daemon" in gone.stderr


def test_second_embedded_daemon_on_one_state_dir_refuses(fleet: Fleet, tmp_path: Path) -> None:
    env = embedded_env(tmp_path / "state")
    first = fleet.start(env, name="first")
    second = fleet.start(env, name="second", ready=False)
    assert second.wait_exit(15) == 2, second.tail()
    error = one_error_line(second.log())
    assert f"pid {first.pid}" in error
    assert str(tmp_path / "state") in error
    assert first.alive


def test_refused_second_daemon_leaves_the_first_reachable(fleet: Fleet, tmp_path: Path) -> None:
    env = embedded_env(tmp_path / "state")
    fleet.start(env, name="first")
    second = fleet.start(env, name="second", ready=False)
    assert second.wait_exit(15) == 2, second.tail()
    after = run_cli(env, "stats", "--json")
    assert after.returncode == 0, after.stderr
