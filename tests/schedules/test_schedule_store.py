"""fleetd.schedules.store, fleetd.schedules.firing and the schedule_* scripts against the
real test redis-server: validation against the handler registry, unique names, upserts,
updates and their run times, pause/resume/remove/run-now, stats, defaults created once,
and the firing script's compare-and-set that lets exactly one scheduler enqueue an
occurrence."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.context import JobContext
from fleetd.jobs.handlers import HandlerDefaults, HandlerRegistry
from fleetd.jobs.model import Job, JobStatus, ValidationError, parse_ts
from fleetd.plugins.noop import NoopHandler
from fleetd.schedules import scripts as schedule_scripts
from fleetd.schedules.fire_call import schedule_fire
from fleetd.schedules.firing import FiringOps
from fleetd.schedules.model import ScheduledJob
from fleetd.schedules.store import ScheduleConflict, ScheduleNotFound, ScheduleOps, Schedules

HOUR_MS = 3_600_000


class Strict:
    """A job type with data rules and defaults, to see the registry at work."""

    job_type = "report_generation"
    defaults = HandlerDefaults(priority=10, max_retries=1, timeout=60.0)

    def __init__(self) -> None:
        self.accept = True

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if not self.accept or data.get("report_type") not in ("fleet_summary", "maintenance"):
            raise ValidationError("data.report_type", "must be fleet_summary or maintenance")
        return {**data, "format": data.get("format", "pdf")}

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        return {}


@pytest.fixture
def strict() -> Strict:
    return Strict()


@pytest.fixture
def eng(config: Config, strict: Strict) -> Iterator[Engine]:
    registry = HandlerRegistry()
    registry.register(NoopHandler())
    registry.register(strict, source="tests")
    engine = Engine.build(config, daemon=True, registry=registry)
    for script in engine.scripts.all():
        script.load(engine.link.client)
    yield engine
    engine.close()


@pytest.fixture
def ops(eng: Engine) -> ScheduleOps:
    return ScheduleOps.from_engine(eng)


def run(eng: Engine, fn: Any, *args: Any, **kwargs: Any) -> Any:
    return eng.link.run_sync(lambda c: fn(c, *args, **kwargs))


def add(eng: Engine, ops: ScheduleOps, **body: Any) -> ScheduledJob:
    body.setdefault("name", "tick")
    body.setdefault("job_type", "noop")
    body.setdefault("schedule", "1h")
    job: ScheduledJob = run(eng, ops.add, body)
    return job


def redis_now(eng: Engine) -> int:
    return ScheduleOps.now_ms(eng.link.client)


def jobs_tagged(eng: Engine, tag: str) -> list[Job]:
    ids = eng.link.client.zrange(eng.keys.status(JobStatus.PENDING), 0, -1)
    jobs = eng.link.run_sync(eng.ops.get_many, ids)
    return [j for j in jobs if j is not None and tag in j.tags]


def events(eng: Engine, prefix: str) -> list[dict[str, str]]:
    return [f for _, f in eng.link.client.xrange(eng.keys.events) if f["type"].startswith(prefix)]


# -- add -----------------------------------------------------------------------------


def test_add_checks_the_registry_and_computes_next_run_from_redis_time(
    eng: Engine, ops: ScheduleOps
) -> None:
    before = redis_now(eng)
    job = add(eng, ops, name="Monthly", job_type="report_generation",
              data={"report_type": "fleet_summary"}, schedule="30m")  # fmt: skip
    after = redis_now(eng)
    assert job.data == {"report_type": "fleet_summary", "format": "pdf"}  # normalised
    assert job.priority == 10  # the job type's default
    assert before <= job.created_at_ms <= after and job.updated_at_ms == job.created_at_ms
    assert job.next_run_ms == job.anchor_ms + 1_800_000
    assert before <= job.anchor_ms <= after
    assert job.is_active and job.runs == 0 and job.last_run_ms is None
    assert job.id.startswith("sch_")
    assert eng.link.client.zscore(eng.keys.schedules_due, job.id) == job.next_run_ms
    [created] = events(eng, "schedule.created")
    assert json.loads(created["data"]) == {"schedule_id": job.id, "name": "Monthly"}
    assert created["job_type"] == "report_generation" and created["status"] == "active"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"job_type": "nosuch"}, "job_type", "unknown job type 'nosuch'"),
        ({"job_type": "report_generation", "data": {"report_type": "x"}},
         "data.report_type", "must be fleet_summary"),
        ({"schedule": "0 0 31 2 *"}, "schedule", "never fires"),
        ({"timezone": "Europe/Atlantis"}, "timezone", "unknown time zone"),
    ],
)  # fmt: skip
def test_add_rejects(
    eng: Engine, ops: ScheduleOps, body: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        add(eng, ops, **body)
    assert info.value.field == field and message in info.value.message
    assert eng.link.client.zcard(eng.keys.schedules_all) == 0


def test_names_are_unique_per_company(eng: Engine, ops: ScheduleOps) -> None:
    add(eng, ops, name="Nightly")
    with pytest.raises(ScheduleConflict, match="already named 'Nightly'"):
        add(eng, ops, name="Nightly")
    acme = add(eng, ops, name="Nightly", company_id="acme")
    with pytest.raises(ScheduleConflict, match="for company 'acme'"):
        add(eng, ops, name="Nightly", company_id="acme")
    with pytest.raises(ScheduleConflict, match="2 schedules are named 'Nightly'"):
        run(eng, ops.find, "Nightly")
    assert run(eng, ops.find, acme.id).id == acme.id
    # Renaming frees the old name.
    run(eng, ops.update, acme.id, {"name": "Acme nightly"})
    assert run(eng, ops.find, "Acme nightly").id == acme.id
    add(eng, ops, name="Nightly", company_id="acme")


def test_a_name_is_found_from_the_names_index_glob_characters_and_all(
    eng: Engine, ops: ScheduleOps
) -> None:
    odd = add(eng, ops, name="we[ird]*?\\name", company_id="acme")
    for i in range(40):
        add(eng, ops, name=f"we{i}", company_id="acme")
    add(eng, ops, name="weXird]*?\\name")  # what an unescaped pattern would also match

    def hgetalls() -> int:
        stats = eng.link.client.info("commandstats").get("cmdstat_hgetall", {})
        return int(stats.get("calls", 0))

    before = hgetalls()
    assert run(eng, ops.find, "we[ird]*?\\name").id == odd.id
    assert hgetalls() - before <= 2  # the id tried first, then the one named so
    with pytest.raises(ScheduleNotFound):
        run(eng, ops.find, "we*")


def test_chosen_id_conflicts_unless_upserted(eng: Engine, ops: ScheduleOps) -> None:
    first = add(eng, ops, id="nightly-export", schedule="@daily")
    with pytest.raises(ScheduleConflict, match="id 'nightly-export' exists"):
        add(eng, ops, id="nightly-export", name="other")
    eng.link.client.hset(eng.keys.schedule(first.id), "runs", 41)
    # A deployment re-running its `add --upsert`: same schedule, updated, counters kept.
    again = run(eng, ops.add, {"id": "nightly-export", "name": "tick", "job_type": "noop",
                               "schedule": "@daily", "data": {"v": 2}}, upsert=True)  # fmt: skip
    assert again.id == first.id and again.data == {"v": 2} and again.runs == 41
    assert again.next_run_ms == first.next_run_ms  # timing unchanged: next run kept
    assert again.created_at_ms == first.created_at_ms
    assert eng.link.client.zcard(eng.keys.schedules_all) == 1
    fresh = run(eng, ops.add, {"id": "new-one", "name": "n", "job_type": "noop",
                               "schedule": "1h"}, upsert=True)  # fmt: skip
    assert fresh.id == "new-one"


# -- update, pause, resume, remove ---------------------------------------------------


def test_update_recomputes_run_times_only_when_the_timing_changes(
    eng: Engine, ops: ScheduleOps
) -> None:
    job = add(eng, ops, schedule="@daily", timezone="Europe/Berlin")
    renamed = run(eng, ops.update, job.id, {"name": "renamed", "priority": "critical"})
    assert renamed.next_run_ms == job.next_run_ms and renamed.priority == 20
    assert renamed.updated_at_ms >= job.updated_at_ms and renamed.rev == job.rev + 1
    now = redis_now(eng)
    retimed = run(eng, ops.update, job.id, {"schedule": "10m"})
    assert retimed.anchor_ms >= now and retimed.next_run_ms == retimed.anchor_ms + 600_000
    moved = run(eng, ops.update, job.id, {"schedule": "0 9 * * *", "timezone": "Asia/Tokyo"})
    assert moved.next_run_ms is not None and (moved.next_run_ms // 1000) % 86_400 == 0
    assert eng.link.client.zscore(eng.keys.schedules_due, job.id) == moved.next_run_ms
    # Nothing changed: nothing written.
    same = run(eng, ops.update, job.id, {"name": "renamed"})
    assert same.rev == moved.rev
    with pytest.raises(ScheduleNotFound):
        run(eng, ops.update, "sch_missing", {"name": "x"})
    with pytest.raises(ValidationError):
        run(eng, ops.update, job.id, {"data": [1]})


def test_a_stale_update_is_refused_by_the_script(eng: Engine, ops: ScheduleOps) -> None:
    job = add(eng, ops)
    spec = job.spec()
    code, _, _ = schedule_scripts.save(
        eng.scripts,
        eng.link.client,
        "update",
        job.id,
        job.rev + 5,
        "x\n",
        None,
        "{}",
        spec.hash_fields(),
    )
    assert code == "stale"
    assert run(eng, ops.get, job.id).name == "tick"


def test_pause_resume_remove(eng: Engine, ops: ScheduleOps) -> None:
    job = add(eng, ops, schedule="5s")
    paused = run(eng, ops.pause, job.id)
    assert not paused.is_active and paused.next_run_ms is None
    assert eng.link.client.zscore(eng.keys.schedules_due, job.id) is None
    assert run(eng, ops.pause, job.id).rev == paused.rev  # already paused: no write
    before = redis_now(eng)
    resumed = run(eng, ops.resume, job.id)
    # Resumed on its old grid, from the next occurrence after now: no catch-up.
    assert before < resumed.next_run_ms <= redis_now(eng) + 5000
    assert (resumed.next_run_ms - job.anchor_ms) % 5000 == 0
    run(eng, ops.remove, job.id)
    assert run(eng, ops.get, job.id) is None
    assert eng.link.client.zscore(eng.keys.schedules_due, job.id) is None
    assert eng.link.client.hlen(eng.keys.schedules_names) == 0
    with pytest.raises(ScheduleNotFound):
        run(eng, ops.remove, job.id)
    assert [e["type"] for e in events(eng, "schedule.")] == [
        "schedule.created", "schedule.updated", "schedule.updated", "schedule.deleted",
    ]  # fmt: skip


def test_run_now_enqueues_without_touching_the_cadence(eng: Engine, ops: ScheduleOps) -> None:
    job = add(eng, ops, schedule="@weekly", data={"x": 1}, company_id="acme", user_id="u7")
    paused = run(eng, ops.pause, job.id)
    result = run(eng, ops.run_now, job.id)
    assert result.status == "pending" and not result.duplicate
    [enqueued] = jobs_tagged(eng, f"schedule:{job.id}")
    assert enqueued.id == result.job_id and enqueued.tags == (f"schedule:{job.id}", "run-now")
    assert enqueued.data == {"x": 1} and enqueued.company_id == "acme"
    assert enqueued.user_id == "u7"
    after = run(eng, ops.get, job.id)
    assert after.runs == 1 and after.last_run_ms == result.enqueued_at_ms
    assert after.last_job_id == result.job_id and after.rev == paused.rev
    assert after.next_run_ms is None  # still paused
    with pytest.raises(ScheduleNotFound):
        run(eng, ops.run_now, "sch_missing")


def test_list_and_stats(eng: Engine, ops: ScheduleOps) -> None:
    empty = run(eng, ops.stats)
    assert empty == {"total_scheduled_jobs": 0, "active_jobs": 0, "inactive_jobs": 0,
                     "next_run": None, "missed_executions": 0}  # fmt: skip
    a = add(eng, ops, name="a", schedule="1h")
    b = add(eng, ops, name="b", schedule="10m", company_id="acme")
    c = add(eng, ops, name="c", schedule="1d", company_id="acme", is_active=False)
    listed = run(eng, ops.list_schedules)
    assert {j.id for j in listed} == {a.id, b.id, c.id}  # oldest first; ties by id
    assert [j.created_at_ms for j in listed] == sorted(j.created_at_ms for j in listed)
    assert {j.id for j in run(eng, ops.list_schedules, "acme")} == {b.id, c.id}
    eng.link.client.hincrby(eng.keys.schedules_stats, "missed", 3)
    stats = run(eng, ops.stats)
    assert stats["total_scheduled_jobs"] == 3 and stats["active_jobs"] == 2
    assert stats["inactive_jobs"] == 1 and stats["missed_executions"] == 3
    assert parse_ts(stats["next_run"]) == b.next_run_ms
    acme = run(eng, ops.stats, "acme")
    assert (acme["total_scheduled_jobs"], acme["active_jobs"], acme["inactive_jobs"]) == (2, 1, 1)


# -- defaults ------------------------------------------------------------------------

CLEANUP = {
    "name": "Daily Data Cleanup", "job_type": "noop", "schedule": "@daily",
    "data": {"cleanup_type": "gps_tracks", "older_than_days": 90}, "priority": 1,
}  # fmt: skip


def test_a_default_is_created_once_and_a_deleted_one_stays_deleted(
    eng: Engine, ops: ScheduleOps
) -> None:
    assert run(eng, ops.seed, CLEANUP) == ("created", "daily-data-cleanup")
    assert run(eng, ops.seed, CLEANUP) == ("seen", "daily-data-cleanup")
    edited = run(eng, ops.update, "daily-data-cleanup", {"schedule": "0 3 * * *"})
    assert run(eng, ops.seed, CLEANUP)[0] == "seen"
    assert run(eng, ops.get, "daily-data-cleanup").schedule == edited.schedule == "0 3 * * *"
    run(eng, ops.remove, "daily-data-cleanup")
    assert run(eng, ops.seed, CLEANUP)[0] == "seen"
    assert run(eng, ops.get, "daily-data-cleanup") is None


def test_a_default_whose_name_is_taken_is_not_created(eng: Engine, ops: ScheduleOps) -> None:
    add(eng, ops, name="Daily Data Cleanup")
    assert run(eng, ops.seed, CLEANUP)[0] == "name_taken"
    assert len(run(eng, ops.list_schedules)) == 1


def test_concurrent_seeding_creates_each_default_once(eng: Engine, ops: ScheduleOps) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def seed() -> None:
        barrier.wait()
        for _ in range(5):
            outcomes.append(eng.link.run_sync(ops.seed, CLEANUP)[0])

    threads = [threading.Thread(target=seed) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["created"] + ["seen"] * 39
    assert len(run(eng, ops.list_schedules)) == 1


# -- firing --------------------------------------------------------------------------


def make_due(eng: Engine, job: ScheduledJob, due_ms: int) -> None:
    """Pretend the schedule's next occurrence is `due_ms` (as if created long ago)."""
    anchor = due_ms - (job.next_run_ms or 0) + job.anchor_ms
    eng.link.client.hset(eng.keys.schedule(job.id), mapping={"anchor": anchor, "next_run": due_ms})
    eng.link.client.zadd(eng.keys.schedules_due, {job.id: due_ms})


def test_firing_enqueues_the_occurrence_once(eng: Engine, ops: ScheduleOps) -> None:
    job = add(eng, ops, schedule="10s", data={"n": 1}, priority="high")
    now = redis_now(eng)
    make_due(eng, job, now - 200)
    first = run(eng, FiringOps(ops).fire_due, job.id, now - 200, now, 60_000)
    # A second scheduler that read the same due time loses: nothing is written.
    second = run(eng, FiringOps(ops).fire_due, job.id, now - 200, now, 60_000)
    assert first is not None and second is None
    assert (first.action, first.occurrence_ms, first.next_ms) == ("fire", now - 200, now + 9800)
    [enqueued] = jobs_tagged(eng, f"schedule:{job.id}")
    occurrence = enqueued.tags[1].removeprefix("occurrence:")
    assert parse_ts(occurrence) == now - 200
    assert enqueued.idempotency_key == f"schedule:{job.id}:{occurrence}"
    assert enqueued.priority == 10 and enqueued.data == {"n": 1}
    assert enqueued.created_at_ms >= now - 200  # never before its due time
    after = run(eng, ops.get, job.id)
    assert after.runs == 1 and after.next_run_ms == now + 9800
    assert after.last_job_id == enqueued.id and after.last_run_ms == first.now_ms
    assert [e["job_id"] for e in events(eng, "schedule.fired")] == [enqueued.id]


def test_an_edit_between_read_and_fire_makes_the_fire_lose(eng: Engine, ops: ScheduleOps) -> None:
    job = add(eng, ops, schedule="10s")
    now = redis_now(eng)
    make_due(eng, job, now - 100)
    stale = run(eng, ops.get, job.id)
    run(eng, ops.update, job.id, {"data": {"changed": True}})  # same due time, new rev
    make_due(eng, run(eng, ops.get, job.id), now - 100)
    code, *_ = schedule_fire(
        eng.scripts,
        eng.link.client, job.id, "fire", due_ms=now - 100, rev=stale.rev,
        next_due_ms=now + 9900, row=eng.ops.prepare({"type": "noop"}),
    )  # fmt: skip
    assert code == 0 and jobs_tagged(eng, f"schedule:{job.id}") == []


def test_the_script_refuses_to_fire_early_by_redis_time(eng: Engine, ops: ScheduleOps) -> None:
    job = add(eng, ops, schedule="1h")
    assert job.next_run_ms is not None
    code, now, *_ = schedule_fire(
        eng.scripts,
        eng.link.client, job.id, "fire", due_ms=job.next_run_ms, rev=job.rev,
        next_due_ms=job.next_run_ms + HOUR_MS, row=eng.ops.prepare({"type": "noop"}),
    )  # fmt: skip
    assert code == -1 and now < job.next_run_ms
    assert jobs_tagged(eng, f"schedule:{job.id}") == []


def test_a_job_type_not_installed_here_is_enqueued_for_daemons_that_have_it(
    config: Config, eng: Engine, ops: ScheduleOps
) -> None:
    job = add(eng, ops, job_type="report_generation", data={"report_type": "maintenance"})
    bare = Engine.build(config, daemon=True, registry=HandlerRegistry())
    try:
        now = redis_now(eng)
        make_due(eng, job, now)
        fired = bare.link.run_sync(
            FiringOps(ScheduleOps.from_engine(bare)).fire_due, job.id, now, now, 0
        )
    finally:
        bare.close()
    assert fired is not None and fired.action == "fire"
    [enqueued] = jobs_tagged(eng, f"schedule:{job.id}")
    assert enqueued.type == "report_generation" and enqueued.max_retries == 3


def test_data_the_handler_now_rejects_is_recorded_not_enqueued(
    eng: Engine, ops: ScheduleOps, strict: Strict
) -> None:
    job = add(eng, ops, job_type="report_generation", data={"report_type": "maintenance"},
              schedule="1m")  # fmt: skip
    strict.accept = False  # the plugin was upgraded with stricter rules
    now = redis_now(eng)
    make_due(eng, job, now)
    fired = run(eng, FiringOps(ops).fire_due, job.id, now, now, 60_000)
    assert fired is not None and fired.action == "error" and "must be fleet_summary" in fired.error
    after = run(eng, ops.get, job.id)
    assert after.next_run_ms == now + 60_000 and after.last_error == fired.error
    assert jobs_tagged(eng, f"schedule:{job.id}") == []
    assert eng.link.client.hget(eng.keys.schedules_stats, "errors") == "1"


@pytest.mark.parametrize(
    ("policy", "expected_jobs", "missed"), [("run_once", 1, 5), ("skip", 0, 6)]
)
def test_misfires_are_counted(
    eng: Engine, ops: ScheduleOps, policy: str, expected_jobs: int, missed: int
) -> None:
    job = add(eng, ops, schedule="1m", misfire_policy=policy)
    now = redis_now(eng)
    make_due(eng, job, now - 330_000)  # -5.5 min … -0.5 min: six occurrences missed
    fired = run(eng, FiringOps(ops).fire_due, job.id, now - 330_000, now, 60_000)
    assert fired is not None and fired.missed == missed
    assert len(jobs_tagged(eng, f"schedule:{job.id}")) == expected_jobs
    after = run(eng, ops.get, job.id)
    assert after.missed == missed and after.next_run_ms == now + 30_000
    assert run(eng, ops.stats)["missed_executions"] == missed
    if expected_jobs:
        [enqueued] = jobs_tagged(eng, f"schedule:{job.id}")
        assert parse_ts(enqueued.tags[1].removeprefix("occurrence:")) == now - 30_000
        assert after.last_occurrence_ms == now - 30_000


def test_a_schedule_whose_run_times_cannot_be_computed_is_retried_later(
    eng: Engine, ops: ScheduleOps
) -> None:
    job = add(eng, ops, schedule="@daily", timezone="Europe/Berlin")
    # As if tzdata lost the zone after the schedule was saved.
    eng.link.client.hset(eng.keys.schedule(job.id), "timezone", "Europe/Atlantis")
    now = redis_now(eng)
    make_due(eng, job, now)
    fired = run(eng, FiringOps(ops).fire_due, job.id, now, now, 60_000)
    assert fired is not None and fired.action == "error"
    assert "unknown time zone 'Europe/Atlantis'" in fired.error
    after = run(eng, ops.get, job.id)
    assert after.next_run_ms == now + 60_000 and after.last_error == fired.error
    assert jobs_tagged(eng, f"schedule:{job.id}") == []
    [event] = events(eng, "schedule.error")
    assert json.loads(event["data"])["error"] == fired.error


async def test_the_async_facade(eng: Engine, ops: ScheduleOps) -> None:
    schedules = Schedules(eng.link, ops)
    job = await schedules.add({"name": "a", "job_type": "noop", "schedule": "1h"})
    assert await schedules.get(job.id) == job
    assert (await schedules.update(job.id, {"name": "b"})).name == "b"
    assert not (await schedules.pause(job.id)).is_active
    assert (await schedules.resume(job.id)).is_active
    result = await schedules.run_now(job.id)
    assert [j.id for j in jobs_tagged(eng, "run-now")] == [result.job_id]
    assert [j.id for j in run(eng, ops.list_schedules)] == [job.id]
    assert (await schedules.stats())["total_scheduled_jobs"] == 1
    again = await schedules.add(
        {"id": job.id, "name": "b", "job_type": "noop", "schedule": "2h"}, upsert=True
    )
    assert again.schedule == "2h" and again.runs == 1
    await schedules.remove(job.id)
    assert await schedules.get(job.id) is None
    with pytest.raises(ScheduleNotFound):
        await schedules.remove(job.id)


def hgetall_calls(eng: Engine) -> int:
    stats = eng.link.client.info("commandstats")
    return int(stats.get("cmdstat_hgetall", {}).get("calls", 0))


def test_a_company_listing_reads_its_own_schedules_only(eng: Engine, ops: ScheduleOps) -> None:
    mine = add(eng, ops, name="mine", company_id="acme")
    others = [add(eng, ops, name=f"other-{i}", company_id="globex") for i in range(30)]
    before = hgetall_calls(eng)
    assert [j.id for j in run(eng, ops.list_schedules, "acme")] == [mine.id]
    assert hgetall_calls(eng) - before == 1  # not 31: globex's cost acme nothing
    assert len(run(eng, ops.list_schedules, "globex")) == 30
    assert run(eng, ops.stats, "acme")["total_scheduled_jobs"] == 1
    # Moved to another company by an update, removed by a delete: the indexes follow.
    moved = run(eng, ops.update, others[0].id, {"company_id": "acme"})
    assert moved.company_id == "acme"
    assert [j.id for j in run(eng, ops.list_schedules, "acme")] == [mine.id, moved.id]
    assert len(run(eng, ops.list_schedules, "globex")) == 29
    run(eng, ops.remove, mine.id)
    assert [j.id for j in run(eng, ops.list_schedules, "acme")] == [moved.id]
    assert eng.link.client.zrange(eng.keys.schedules_of("acme"), 0, -1) == [moved.id]
