"""The scheduler service in-process, against the real test redis-server: on-time fires,
early wake-up on schedule changes, several schedulers firing each occurrence once,
misfires after an outage, catch-up within the grace, default schedules created once
(also by daemons starting together), a prompt stop, and host clocks that decide
nothing."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from fleetd_plugins.fleetdata.plugin import DEFAULT_SCHEDULES as FLEETDATA_DEFAULTS

from fleetd.config import Config
from fleetd.engine import Engine, build_registry
from fleetd.jobs.context import JobContext
from fleetd.jobs.handlers import HandlerDefaults, HandlerRegistry
from fleetd.jobs.model import Job, JobStatus, parse_ts
from fleetd.plugins.noop import NoopHandler
from fleetd.runtime.daemon import Daemon
from fleetd.schedules.model import ScheduledJob
from fleetd.schedules.service import Scheduler, SchedulerSettings
from fleetd.schedules.store import ScheduleOps


class Stub:
    """A job type of a plugin to come (data_cleanup, …), accepting any data."""

    defaults = HandlerDefaults()

    def __init__(self, job_type: str) -> None:
        self.job_type = job_type

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        return data

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        return {}


SPEC_TYPES = ("data_cleanup", "maintenance_reminder", "report_generation")
# The spec's defaults as the fleetdata plugin ships them (it owns their job types).
SPEC_DEFAULTS: list[dict[str, Any]] = [dict(d) for d in FLEETDATA_DEFAULTS]


def registry(*types: str) -> HandlerRegistry:
    reg = HandlerRegistry()
    reg.register(NoopHandler())
    for job_type in types:
        reg.register(Stub(job_type), source="tests")
    return reg


@pytest.fixture
def engines(config: Config) -> Iterator[Callable[..., Engine]]:
    """Engines of their own (own connection pools), like separate daemons."""
    built: list[Engine] = []

    def build(reg: HandlerRegistry | None = None) -> Engine:
        eng = Engine.build(config, daemon=True, registry=reg or registry())
        for script in eng.scripts.all():
            script.load(eng.link.client)
        built.append(eng)
        return eng

    yield build
    for eng in built:
        eng.close()


def settings(**changes: Any) -> SchedulerSettings:
    base = SchedulerSettings(misfire_grace=60.0, create_defaults=False, reconnect_max_backoff=0.5)
    return dataclasses.replace(base, **changes)


@asynccontextmanager
async def schedulers(
    engines: list[Engine], defaults: list[dict[str, Any]] | None = None, **changes: Any
) -> AsyncIterator[list[Scheduler]]:
    """One started Scheduler per engine; all cancelled at the end."""
    started = [
        Scheduler(e.link, ScheduleOps.from_engine(e), f"d{i}", settings(**changes),
                  defaults=defaults or ())
        for i, e in enumerate(engines)
    ]  # fmt: skip
    async with trio.open_nursery() as nursery:
        for s in started:
            await nursery.start(s.run)
        yield started
        nursery.cancel_scope.cancel()


def add(eng: Engine, **body: Any) -> ScheduledJob:
    body.setdefault("name", "tick")
    body.setdefault("job_type", "noop")
    ops = ScheduleOps.from_engine(eng)
    job: ScheduledJob = eng.link.run_sync(lambda c: ops.add(c, body))
    return job


def get(eng: Engine, schedule_id: str) -> ScheduledJob:
    return eng.link.run_sync(ScheduleOps.from_engine(eng).require, schedule_id)


def redis_now(eng: Engine) -> int:
    return ScheduleOps.now_ms(eng.link.client)


def fired(eng: Engine, schedule_id: str) -> list[tuple[int, Job]]:
    """(occurrence ms, job) of every job the schedule enqueued, by occurrence."""
    ids = eng.link.client.zrange(eng.keys.status(JobStatus.PENDING), 0, -1)
    out = []
    for job in eng.link.run_sync(eng.ops.get_many, ids):
        if job is not None and f"schedule:{schedule_id}" in job.tags:
            occurrence = next(t for t in job.tags if t.startswith("occurrence:"))
            out.append((parse_ts(occurrence.removeprefix("occurrence:")), job))
    return sorted(out, key=lambda o: o[0])


async def until_fired(eng: Engine, schedule_id: str, count: int, within: float) -> None:
    with trio.fail_after(within):
        while len(fired(eng, schedule_id)) < count:
            await trio.sleep(0.02)


def assert_exactly_once_on_grid(occurrences: list[int], anchor: int, period: int) -> None:
    assert len(occurrences) == len(set(occurrences)), "an occurrence was enqueued twice"
    assert all((o - anchor) % period == 0 for o in occurrences)
    assert occurrences == list(range(occurrences[0], occurrences[-1] + 1, period)), "gap"


async def test_fires_each_occurrence_on_time(engines: Callable[..., Engine]) -> None:
    eng = engines()
    async with schedulers([eng]) as [s]:
        job = add(eng, schedule="1s")
        await until_fired(eng, job.id, 3, within=5)
    got = fired(eng, job.id)
    assert [o for o, _ in got] == [job.anchor_ms + 1000 * k for k in (1, 2, 3)]
    for occurrence, enqueued in got:
        assert 0 <= enqueued.created_at_ms - occurrence < 1000  # never early, < 1 s late
    assert s.fired == 3 and len(s.delays_ms) == 3
    after = get(eng, job.id)
    assert after.runs == 3 and after.last_run_ms == got[-1][1].created_at_ms
    assert after.next_run_ms == job.anchor_ms + 4000


async def test_wakes_at_once_when_a_schedule_changes(engines: Callable[..., Engine]) -> None:
    eng = engines()
    async with schedulers([eng]):
        await trio.sleep(0.3)  # asleep now, for up to 5 s: nothing is due
        job = add(eng, schedule="1s")
        await until_fired(eng, job.id, 1, within=1.8)
        late = add(eng, name="hourly", schedule="1h")
        await trio.sleep(0.3)
        ops = ScheduleOps.from_engine(eng)
        eng.link.run_sync(ops.update, late.id, {"schedule": "1s"})
        await until_fired(eng, late.id, 1, within=1.8)
    [(occurrence, first)] = fired(eng, late.id)[:1]
    assert first.created_at_ms - occurrence < 250


async def test_three_schedulers_fire_each_occurrence_exactly_once(
    engines: Callable[..., Engine],
) -> None:
    fleet = [engines() for _ in range(3)]
    eng = fleet[0]
    async with schedulers(fleet) as running:
        jobs = [add(eng, name=f"s{i}", schedule="1s") for i in range(5)]
        await trio.sleep(3.6)
    for job in jobs:
        occurrences = [o for o, _ in fired(eng, job.id)]
        assert len(occurrences) >= 3
        assert_exactly_once_on_grid(occurrences, job.anchor_ms, 1000)
    assert sum(s.fired for s in running) == sum(len(fired(eng, j.id)) for j in jobs)


def backdate(eng: Engine, job: ScheduledJob, seconds: float) -> int:
    """As if the schedule had been created `seconds` ago and never fired since (every
    scheduler was down): returns its first missed occurrence."""
    shift = int(seconds * 1000)
    anchor, due = job.anchor_ms - shift, (job.next_run_ms or 0) - shift
    eng.link.client.hset(eng.keys.schedule(job.id), mapping={"anchor": anchor, "next_run": due})
    eng.link.client.zadd(eng.keys.schedules_due, {job.id: due})
    return due


@pytest.mark.parametrize("policy", ["run_once", "skip"])
async def test_after_an_outage_run_once_fires_once_and_skip_none(
    engines: Callable[..., Engine], policy: str
) -> None:
    eng = engines()
    job = add(eng, schedule="2s", misfire_policy=policy)
    first_missed = backdate(eng, job, 10.2)  # five occurrences missed
    start = redis_now(eng)
    async with schedulers([eng], misfire_grace=1.0):
        await trio.sleep(2.5)
    got = [o for o, _ in fired(eng, job.id)]
    missed = [o for o in got if o < start]
    assert missed == ([first_missed + 8000] if policy == "run_once" else [])
    regular = [o for o in got if o >= start]
    assert regular and regular[0] == first_missed + 10_000  # then on time again
    after = get(eng, job.id)
    assert after.missed == (4 if policy == "run_once" else 5)
    stats = eng.link.run_sync(ScheduleOps.from_engine(eng).stats)
    assert stats["missed_executions"] == after.missed


async def test_a_short_hiccup_catches_up_every_occurrence(engines: Callable[..., Engine]) -> None:
    eng = engines()
    job = add(eng, schedule="1s")
    first_missed = backdate(eng, job, 3.5)
    async with schedulers([eng], misfire_grace=10.0):
        await until_fired(eng, job.id, 4, within=2)
    got = [o for o, _ in fired(eng, job.id)]
    assert got[:4] == [first_missed + 1000 * k for k in range(4)]
    assert get(eng, job.id).missed == 0


async def test_host_clock_is_not_consulted(
    engines: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    eng = engines()
    job = add(eng, schedule="1s")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)  # this host runs an hour fast
    monkeypatch.setattr(time, "time_ns", lambda: int((real() + 3600) * 1e9))
    async with schedulers([eng]):
        await until_fired(eng, job.id, 2, within=4)
    for occurrence, enqueued in fired(eng, job.id):
        assert 0 <= enqueued.created_at_ms - occurrence < 1000


async def test_stop_is_prompt_while_asleep(engines: Callable[..., Engine]) -> None:
    eng = engines()
    add(eng, schedule="1h")
    async with schedulers([eng]):
        await trio.sleep(0.3)
        stopped_at = trio.current_time()
    assert trio.current_time() - stopped_at < 0.5
    assert eng.link.client.zcard(eng.keys.schedulers) == 0


# -- default schedules ---------------------------------------------------------------


def schedules_of(eng: Engine) -> dict[str, ScheduledJob]:
    ops = ScheduleOps.from_engine(eng)
    return {j.id: j for j in eng.link.run_sync(ops.list_schedules)}


async def test_defaults_are_created_once_and_deleted_ones_stay_deleted(
    engines: Callable[..., Engine],
) -> None:
    eng = engines(registry(*SPEC_TYPES))
    for _ in range(3):  # repeated starts
        async with schedulers([eng], SPEC_DEFAULTS, create_defaults=True):
            pass
    found = schedules_of(eng)
    assert sorted(found) == [
        "daily-data-cleanup",
        "monthly-fleet-report",
        "weekly-maintenance-check",
    ]
    cleanup = found["daily-data-cleanup"]
    assert (cleanup.job_type, cleanup.schedule, cleanup.data) == (
        "data_cleanup", "@daily", {"cleanup_type": "gps_tracks", "older_than_days": 90},
    )  # fmt: skip
    ops = ScheduleOps.from_engine(eng)
    eng.link.run_sync(ops.remove, "weekly-maintenance-check")
    eng.link.run_sync(ops.update, "daily-data-cleanup", {"schedule": "0 4 * * *"})
    async with schedulers([eng], SPEC_DEFAULTS, create_defaults=True):
        pass
    found = schedules_of(eng)
    assert sorted(found) == ["daily-data-cleanup", "monthly-fleet-report"]
    assert found["daily-data-cleanup"].schedule == "0 4 * * *"  # the edit is kept


async def test_defaults_wait_for_their_job_types_and_say_so(
    engines: Callable[..., Engine], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fleetd.scheduler")
    bare = engines(registry("data_cleanup"))
    async with schedulers([bare], SPEC_DEFAULTS, create_defaults=True):
        pass
    assert sorted(schedules_of(bare)) == ["daily-data-cleanup"]
    assert "job type 'report_generation' is not installed here" in caplog.text
    # The plugin is installed later: its default appears on the next start.
    full = engines(registry(*SPEC_TYPES))
    async with schedulers([full], SPEC_DEFAULTS, create_defaults=True):
        pass
    assert len(schedules_of(full)) == 3


async def test_plugins_contribute_defaults(engines: Callable[..., Engine]) -> None:
    eng = engines(registry(*SPEC_TYPES))
    extra = [
        *SPEC_DEFAULTS,
        {"name": "Hourly Geofence Sweep", "job_type": "noop", "data": {"sweep": True},
         "schedule": "@hourly", "priority": 10, "timezone": "Europe/Berlin"},
        # A name given twice (plugins.default_schedules refuses it): the first wins.
        {"name": "Daily Data Cleanup", "job_type": "noop", "schedule": "@daily",
         "priority": 5, "timezone": "UTC", "data": {}},
    ]  # fmt: skip
    async with schedulers([eng], defaults=extra, create_defaults=True):
        pass
    found = schedules_of(eng)
    assert len(found) == 4 and found["daily-data-cleanup"].job_type == "data_cleanup"
    sweep = found["hourly-geofence-sweep"]
    assert (sweep.timezone, sweep.priority, sweep.data) == ("Europe/Berlin", 10, {"sweep": True})


async def test_no_defaults_when_disabled(engines: Callable[..., Engine]) -> None:
    eng = engines(registry(*SPEC_TYPES))
    async with schedulers([eng], SPEC_DEFAULTS, create_defaults=False):
        pass
    assert schedules_of(eng) == {}


async def test_daemons_starting_together_create_each_default_once(config: Config) -> None:
    cfg = dataclasses.replace(
        config, daemon=dataclasses.replace(config.daemon, roles=("scheduler",))
    )
    # The real plugins, so the defaults come the way they do in production.
    daemons = [Daemon(cfg, registry=build_registry(cfg)) for _ in range(5)]
    async with trio.open_nursery() as nursery:
        for d in daemons:
            nursery.start_soon(d.run)
        with trio.fail_after(10):
            while not all(d.ready for d in daemons):
                await trio.sleep(0.01)
        eng = daemons[0].engine
        found = schedules_of(eng)
        names = [j.name for j in found.values()]
        for d in daemons:
            d.request_stop()
    assert sorted(names) == [
        "Daily Data Cleanup",
        "Monthly Fleet Report",
        "Weekly Maintenance Check",
    ]


# Stand-ins for the fleetdata plugin (its job types and the spec's defaults it ships)
# and a default schedule of its own, shipped the way a real plugin is: a module plus
# a dist-info with its `fleetd.plugins` entry point.
PLUGIN = """
from fleetd import JobHandler, hookimpl
from fleetd_plugins.fleetdata.plugin import DEFAULT_SCHEDULES

class Stub(JobHandler):
    async def run(self, ctx, data):
        return {}

def stub(job_type):
    return type(job_type, (Stub,), {"job_type": job_type})()

@hookimpl
def fleetd_handlers():
    return [stub("data_cleanup"), stub("maintenance_reminder"), stub("report_generation")]

@hookimpl
def fleetd_default_schedules():
    return [*[dict(d) for d in DEFAULT_SCHEDULES],
            {"name": "Hourly Geofence Sweep", "job_type": "noop", "schedule": "@hourly",
             "data": {"sweep": True}, "timezone": "Europe/Berlin"}]
"""


def install_plugin(site: Path) -> None:
    module = f"fp_sched_{uuid.uuid4().hex[:8]}"
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(PLUGIN)
    info = site / f"fleetd_test_{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[fleetd.plugins]\nsched = {module}\n")


async def test_daemons_create_the_defaults_their_plugins_bring(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    cfg = dataclasses.replace(
        config,
        daemon=dataclasses.replace(config.daemon, roles=("scheduler",)),
        # The test plugin's stubs stand in for the built-in fleet-data job types.
        plugins=dataclasses.replace(config.plugins, disable=("fleetdata",)),
    )
    for _ in range(2):  # a restart changes nothing
        daemon = Daemon(cfg)
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            found = schedules_of(daemon.engine)
            daemon.request_stop()
    assert sorted(found) == [
        "daily-data-cleanup", "hourly-geofence-sweep", "monthly-fleet-report",
        "weekly-maintenance-check",
    ]  # fmt: skip
    sweep = found["hourly-geofence-sweep"]
    assert (sweep.schedule, sweep.timezone, sweep.data) == (
        "@hourly",
        "Europe/Berlin",
        {"sweep": True},
    )


async def test_a_broken_schedule_is_set_aside_and_the_others_keep_time(
    engines: Callable[..., Engine], caplog: pytest.LogCaptureFixture
) -> None:
    eng = engines()
    broken = add(eng, name="broken", schedule="1s")
    # A hash no script would write (a field missing): firing it raises.
    eng.link.client.hdel(eng.keys.schedule(broken.id), "schedule")
    healthy = add(eng, name="healthy", schedule="1s")
    async with schedulers([eng]):
        await until_fired(eng, healthy.id, 2, within=3.5)
        ticks = eng.link.client.zscore(eng.keys.schedulers, "d0")
    assert fired(eng, broken.id) == [] and ticks is not None
    for occurrence, enqueued in fired(eng, healthy.id):
        assert 0 <= enqueued.created_at_ms - occurrence < 1000
    # Logged once with its traceback, then left alone (no busy loop over it).
    assert caplog.text.count(f"schedule {broken.id}: cannot fire") == 1


async def test_a_crowd_due_at_one_instant_is_enqueued_within_a_second(
    engines: Callable[..., Engine],
) -> None:
    # Every company's @daily at midnight: 300 schedules due at the same millisecond.
    fleet = [engines() for _ in range(2)]
    eng = fleet[0]
    ops = ScheduleOps.from_engine(eng)
    jobs = [
        eng.link.run_sync(
            lambda c, i=i: ops.add(c, {"name": f"c{i}", "job_type": "noop", "schedule": "1m"})
        )
        for i in range(300)
    ]
    due = redis_now(eng) + 1500
    pipe = eng.link.client.pipeline(transaction=False)
    for job in jobs:
        pipe.hset(eng.keys.schedule(job.id), mapping={"anchor": due - 60_000, "next_run": due})
        pipe.zadd(eng.keys.schedules_due, {job.id: due})
    pipe.execute()
    async with schedulers(fleet):
        with trio.fail_after(5):
            while sum(len(fired(eng, j.id)) for j in jobs[-5:]) < 5:
                await trio.sleep(0.1)
            await trio.sleep(0.5)
    delays = []
    for job in jobs:
        [(occurrence, enqueued)] = fired(eng, job.id)
        assert occurrence == due
        delays.append(enqueued.created_at_ms - due)
    print(f"\n300 due at once, 2 schedulers: max delay {max(delays)} ms")
    assert min(delays) >= 0 and max(delays) < 1000, sorted(delays)[-5:]
