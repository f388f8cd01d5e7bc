"""The scheduler end to end: real `fleetd run --roles scheduler` subprocesses against a
real redis-server, a schedule firing every second.

- Three daemons for 20 s, two of them SIGKILLed midway and restarted: every occurrence
  is enqueued exactly once, and none is missing while at least one daemon lives.
- Host clocks 30 s fast and 30 s slow (a sitecustomize shim that shifts time.time and
  datetime.now; with libfaketime too when it is installed): nothing fires early and
  nothing twice, since Redis time decides.
- Every daemon down for several periods, then back: a run_once schedule fires once for
  the latest missed occurrence, a skip schedule none; both then go on on time.
- Daemons started together and again one by one create each default schedule once.

Each test reports its fire delays (enqueue time − due time, both Redis time).
"""

from __future__ import annotations

import json
import signal
import statistics
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import fleetd_env
from daemons import Fleet, FleetdProcess, cli_json, run_cli, settings, wait_for
from test_scheduler import fired as occurrences
from test_scheduler import install_plugin

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import Job, parse_ts
from fleetd.schedules.store import ScheduleOps

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
# Shifts this process's wall clock (time.time, time.time_ns, datetime.now/utcnow/today)
# by $TEST_CLOCK_SKEW seconds, before fleetd is imported: a host whose clock is off.
# (Not a FLEETD_ variable: the config rejects unknown ones.)
SKEW_SHIM = """\
import datetime as _dt
import os
import time as _time

_skew = float(os.environ.get("TEST_CLOCK_SKEW", "0"))
if _skew:
    _real, _real_ns = _time.time, _time.time_ns
    _time.time = lambda: _real() + _skew
    _time.time_ns = lambda: _real_ns() + int(_skew * 1e9)

    class _SkewedDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls.fromtimestamp(_time.time(), tz)

        @classmethod
        def utcnow(cls):
            return cls.now(_dt.timezone.utc).replace(tzinfo=None)

        @classmethod
        def today(cls):
            return cls.now()

    _dt.datetime = _SkewedDatetime
"""
QUIET = settings(daemon_log_format="json", daemon_heartbeat_interval="500ms")


def add_schedule(env: dict[str, str], name: str, schedule: str, *extra: str) -> dict[str, str]:
    body = cli_json(
        env, "schedules", "add", name, "--type", "noop", "--schedule", schedule, *extra, "--json"
    )
    job: dict[str, str] = body["scheduled_job"]
    return job


def assert_exactly_once(fired: list[tuple[int, Job]], period_ms: int) -> list[int]:
    """Every occurrence once, none missing between the first and the last, none
    enqueued before its due time nor more than a second after it; the delays in ms."""
    times = [o for o, _ in fired]
    assert len(times) == len(set(times)), f"occurrences enqueued twice: {times}"
    assert times == list(range(times[0], times[-1] + 1, period_ms)), f"missing: {times}"
    keys = [j.idempotency_key for _, j in fired]
    assert len(set(keys)) == len(keys)
    delays = [j.created_at_ms - o for o, j in fired]
    assert min(delays) >= 0, f"fired early: {delays}"
    assert max(delays) < 1000, f"fired late: {delays}"
    return delays


def report(what: str, delays: list[int]) -> None:
    q = statistics.quantiles(delays, n=100, method="inclusive")
    print(
        f"\n{what}: {len(delays)} fires, delay after due time p50 {q[49]:.0f} ms, "
        f"p99 {q[98]:.0f} ms, max {max(delays)} ms"
    )


def redis_now(engine: Engine) -> int:
    return ScheduleOps.now_ms(engine.link.client)


@pytest.mark.slow
def test_three_daemons_with_crashes_fire_every_occurrence_exactly_once(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    env = fleetd_env(config) | QUIET
    daemons = [fleet.start(env, "--roles", "scheduler", name=f"d{i}") for i in (1, 2, 3)]
    job = add_schedule(env, "every second", "1s")
    started = time.monotonic()

    def at(second: float) -> None:
        time.sleep(max(0.0, started + second - time.monotonic()))
        for d in fleet.procs:
            assert d.alive or d in killed, d.tail()

    killed: list[FleetdProcess] = []
    at(6.3)
    daemons[0].kill()  # SIGKILL: no goodbye, its registration simply expires
    killed.append(daemons[0])
    at(9.6)
    daemons[1].kill()
    killed.append(daemons[1])
    at(12.1)
    fleet.start(env, "--roles", "scheduler", name="d1b")
    fleet.start(env, "--roles", "scheduler", name="d2b")
    at(20.5)
    for d in fleet.procs:
        if d.alive:
            d.send(signal.SIGTERM)
    for d in fleet.procs:
        if d not in killed:
            assert d.wait_exit(10) == 0, d.tail()

    fired = occurrences(engine, job["id"])
    assert len(fired) >= 19, [o for o, _ in fired]
    assert fired[0][0] == parse_ts(job["next_run"])  # the first one, on time
    delays = assert_exactly_once(fired, 1000)
    report("3 daemons, 2 SIGKILLed and restarted", delays)
    for d in fleet.procs:
        assert "Traceback" not in d.log(), d.tail()


def _clock_of(proc: FleetdProcess) -> float:
    """The host time a daemon believed when it logged "ready" (its JSON log's ts)."""
    for line in proc.log().splitlines():
        if " ready:" in line:
            return datetime.fromisoformat(json.loads(line)["ts"]).timestamp()
    raise AssertionError(proc.tail())


@pytest.mark.slow
def test_host_clocks_30s_apart_never_fire_early_nor_twice(
    config: Config, engine: Engine, fleet: Fleet, tmp_path: Path
) -> None:
    env = fleetd_env(config) | QUIET
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SKEW_SHIM)

    def skewed(seconds: int, libfaketime: bool = False) -> dict[str, str]:
        if libfaketime:
            # The whole process's wall clock, C library included; trio's monotonic
            # clock keeps running true.
            return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"{seconds:+d}s",
                    "FAKETIME_DONT_FAKE_MONOTONIC": "1"}  # fmt: skip
        return {"PYTHONPATH": str(shim), "TEST_CLOCK_SKEW": str(seconds)}

    # The slow host runs under libfaketime where it is installed, else the shim too.
    how = "libfaketime and shim" if LIBFAKETIME.exists() else "shim only"
    started = time.time()
    fast = fleet.start(env | skewed(30), "--roles", "scheduler", name="fast")
    slow = fleet.start(env | skewed(-30, LIBFAKETIME.exists()), "--roles", "scheduler", name="slow")
    true = fleet.start(env, "--roles", "scheduler", name="true")
    ready = time.time()
    for proc, skew in ((fast, 30), (slow, -30), (true, 0)):
        # The shift is in effect: each daemon's own clock is off by its skew (its
        # "ready" line was logged between `started` and `ready`, however slow the host).
        true_time = _clock_of(proc) - skew
        assert started - 2 < true_time < ready + 2, (proc.name, _clock_of(proc), started, ready)
    cpu = fast.cpu_seconds()
    # A CLI on a fast host adds a schedule: its first run is 1 s after *Redis* now.
    job = add_schedule(env | skewed(30), "every second", "1s")
    assert 0 < parse_ts(job["next_run"]) - redis_now(engine) <= 1000
    cron = add_schedule(env | skewed(-30), "every minute", "* * * * *")
    time.sleep(4)
    # Without the true daemon the skewed ones go on, still on time; then the slow one
    # alone (a daemon trusting its own clock would fire 30 s late, or never).
    for gone in (true, fast):
        if gone is fast:
            # And calmly: a fast daemon trusting its clock would find occurrences "due"
            # that the script refuses as early, and spin (seconds of CPU, not ~0.1 s).
            used = fast.cpu_seconds() - cpu
            print(f"\nCPU seconds used in ~7 s by the fast daemon: {used:.2f}")
            assert used < 1.0
        gone.send(signal.SIGTERM)
        assert gone.wait_exit(10) == 0
        time.sleep(3)

    fired = occurrences(engine, job["id"])
    assert len(fired) >= 9
    assert redis_now(engine) - fired[-1][0] < 1500  # the slow daemon alone kept time
    delays = assert_exactly_once(fired, 1000)
    report(f"clocks +30 s / -30 s / true ({how})", delays)
    minutes = occurrences(engine, cron["id"])
    assert len(minutes) <= 1 and all(j.created_at_ms >= o for o, j in minutes)
    assert all(o <= redis_now(engine) for o, _ in minutes)


@pytest.mark.slow
def test_after_every_daemon_was_down_run_once_fires_once_and_skip_none(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    env = fleetd_env(config) | QUIET | settings(scheduler_misfire_grace="1s")
    fleet.start(env, "--roles", "scheduler", name="a")
    fleet.start(env, "--roles", "scheduler", name="b")
    once = add_schedule(env, "run once", "1s", "--misfire", "run_once")
    skip = add_schedule(env, "skip", "1s", "--misfire", "skip")
    ops = ScheduleOps.from_engine(engine)

    def fired_twice() -> bool:
        return all(len(occurrences(engine, j["id"])) >= 2 for j in (once, skip))

    wait_for(fired_twice, 10, "both schedules to fire twice", fleet.tails)
    for d in fleet.procs:
        d.kill()
    before = {j["id"]: occurrences(engine, j["id"])[-1][0] for j in (once, skip)}
    time.sleep(4.5)  # four or five occurrences of each pass with no scheduler alive
    fleet.start(env, "--roles", "scheduler", name="c")

    def fired_after() -> bool:
        return all(
            len([o for o, _ in occurrences(engine, j["id"]) if o > before[j["id"]]]) >= 3
            for j in (once, skip)
        )

    wait_for(fired_after, 10, "both schedules to fire again", fleet.tails)
    all_delays = []
    for j, policy in ((once, "run_once"), (skip, "skip")):
        last = before[j["id"]]
        after = [(o, job) for o, job in occurrences(engine, j["id"]) if o > last]
        first = after[0][0]  # the first occurrence enqueued after the outage
        stored = engine.link.run_sync(ops.require, j["id"])
        if policy == "run_once":
            # One job, for the latest occurrence missed (however late it is now), and
            # none for the ones before it: they are counted as missed.
            missed = (first - last) // 1000 - 1
            assert missed >= 3 and stored.missed == missed
            all_delays += assert_exactly_once(after[1:], 1000)
            assert after[1][0] == first + 1000
        else:
            # None at all: the next job is the first occurrence after the restart, on time.
            missed = (first - last) // 1000 - 1
            assert missed >= 4 and stored.missed == missed
            all_delays += assert_exactly_once(after, 1000)
    stats = cli_json(env, "schedules", "stats", "--json")["scheduler_stats"]
    assert stats["missed_executions"] == sum(
        engine.link.run_sync(ops.require, j["id"]).missed for j in (once, skip)
    )
    report("after an outage (on-time fires)", all_delays)
    done = run_cli(env, "schedules", "list")
    assert done.returncode == 0 and "missed" in done.stdout


@pytest.mark.slow
def test_defaults_exist_once_after_concurrent_and_repeated_starts(
    config: Config, engine: Engine, fleet: Fleet, tmp_path: Path
) -> None:
    # A plugin brings the spec defaults' job types and one default of its own.
    install_plugin(tmp_path / "site")
    site = {"PYTHONPATH": str(tmp_path / "site"), "FLEETD_PLUGINS_DISABLE": "fleetdata"}
    env = fleetd_env(config) | QUIET | site
    together = [
        fleet.start(env, "--roles", "scheduler", name=f"t{i}", ready=False) for i in range(4)
    ]
    for proc in together:
        proc.wait_ready()
    for proc in together:
        proc.send(signal.SIGTERM)
    for i in range(2):  # and restarted, one after the other
        proc = fleet.start(env, "--roles", "scheduler", name=f"r{i}")
        proc.send(signal.SIGTERM)
        assert proc.wait_exit(10) == 0
    listed = cli_json(env, "schedules", "list", "--json")["scheduled_jobs"]
    assert sorted((s["id"], s["job_type"]) for s in listed) == [
        ("daily-data-cleanup", "data_cleanup"), ("hourly-geofence-sweep", "noop"),
        ("monthly-fleet-report", "report_generation"),
        ("weekly-maintenance-check", "maintenance_reminder"),
    ]  # fmt: skip
    created = [p.log().count("created default schedule") for p in fleet.procs]
    assert sum(created) == 4, created
