"""Analytics buckets against real Redis: a known workload run by a real worker pool,
its percentiles read back from the buckets and checked against the raw durations the
events recorded (the same Redis clock the scripts used), within the stated bound."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from percentiles import nearest_rank, within_bound
from pool import registry_with, running_pool, wait_status

from fleetd.analytics import answer, histogram, store
from fleetd.backend.scripts import Scripts, _read
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.answer import format_ts
from fleetd.jobs.model import JobStatus

END = {"job.completed", "job.retrying", "job.failed"}


def raw_times(engine: Engine, ids: set[str]) -> tuple[dict[Any, list[int]], dict[Any, list[int]]]:
    """Per (type, company): the run time of every attempt (its last start → its end),
    and the wait of every first attempt (enqueue → its last start: a job claimed ahead
    and released unstarted waits on), from the events stream."""
    run: dict[Any, list[int]] = defaultdict(list)
    wait: dict[Any, list[int]] = defaultdict(list)
    started: dict[str, int] = {}
    enqueued: dict[str, int] = {}
    for _sid, f in engine.link.client.xrange(engine.keys.events):
        job, ts, group = f["job_id"], int(f["ts"]), (f["job_type"], f["company_id"])
        if job not in ids:
            continue
        if f["type"] == "job.enqueued":
            enqueued[job] = ts
        elif f["type"] == "job.started":
            started[job] = ts
        elif f["type"] in END:
            run[group].append(ts - started[job])
            if job in enqueued:
                wait[group].append(started[job] - enqueued.pop(job))
    return run, wait


async def test_percentiles_of_a_known_workload_are_within_the_bound(config: Config) -> None:
    # 60 jobs of spread durations (0-290 ms) on 4 slots: waits spread too; 6 of another
    # company fail for good; 3 fail once, then complete after their 1 s backoff.
    plan: list[dict[str, Any]] = [
        {"type": "noop", "data": {"sleep_ms": (i * 37) % 300}} for i in range(60)
    ]
    plan += [
        {"type": "noop", "data": {"fail_attempts": 1, "sleep_ms": 20 * i}, "max_retries": 0,
         "company_id": "acme"} for i in range(6)
    ]  # fmt: skip
    plan += [
        {"type": "noop", "data": {"fail_attempts": 1}, "max_retries": 1, "company_id": "beta"}
        for _ in range(3)
    ]
    async with running_pool(config, registry_with(), concurrency=4) as (engine, _pool):
        results = await engine.queue.enqueue_many(plan)
        ids = {r.job_id for r in results}
        for r in results:
            await wait_status(engine, r.job_id, JobStatus.COMPLETED, JobStatus.FAILED, limit=30)
        data = await engine.link.call(lambda c: store.read(c, engine.keys, store.WINDOWS["hour"]))
        run, wait = raw_times(engine, ids)

    body = answer.build(data, "type_company")
    groups = {(g.type, g.company_id): g for g in body.analytics.groups}
    assert set(groups) == {("noop", ""), ("noop", "acme"), ("noop", "beta")}
    plain, acme, beta = groups["noop", ""], groups["noop", "acme"], groups["noop", "beta"]
    assert (plain.enqueued, plain.completed, plain.failed, plain.run.count) == (60, 60, 0, 60)
    assert (acme.completed, acme.failed, acme.retried, acme.failure_rate) == (0, 6, 0, 1.0)
    # Waits are of first attempts: the retries' are their backoff.
    assert (beta.completed, beta.failed, beta.retried, beta.wait.count) == (3, 0, 3, 3)
    assert beta.enqueued == 3

    for key, g in groups.items():
        raw = run[key]
        assert g.run.count == len(raw)
        for p, est in ((50, g.run.p50), (95, g.run.p95), (99, g.run.p99)):
            assert within_bound(est, nearest_rank(raw, p)), (key, p, est, sorted(raw))
        assert g.run.mean == round(sum(raw) / len(raw), 2)
    for key, g in groups.items():
        raw = wait[key]
        assert g.wait.count == len(raw)
        for p, est in ((50, g.wait.p50), (95, g.wait.p95), (99, g.wait.p99)):
            assert within_bound(est, nearest_rank(raw, p)), (key, p, est, sorted(raw))
    # Waits with 4 slots for 60 jobs of ~150 ms: most waited, some a long time.
    assert max(wait["noop", ""]) > 500

    # Slowest attempts: the largest raw run times of the group, slowest first.
    slow = [s.run_ms for s in plain.slowest]
    assert slow == sorted(run["noop", ""], reverse=True)[:5]
    # Series: the per-minute points add up to the totals.
    assert sum(p.completed for p in plain.series) == 60
    assert len(plain.series) == 60

    by_type = answer.build(data, "type").analytics.groups
    assert [(g.type, g.completed, g.failed) for g in by_type] == [("noop", 63, 6)]
    assert by_type[0].failure_rate == round(6 / 69, 4)


async def test_company_filter_reads_one_company(config: Config) -> None:
    async with running_pool(config, registry_with(), concurrency=2) as (engine, _pool):
        results = await engine.queue.enqueue_many(
            [{"type": "noop", "company_id": c} for c in ("acme", "acme", "beta")]
        )
        for r in results:
            await wait_status(engine, r.job_id, JobStatus.COMPLETED)
        data = await engine.link.call(
            lambda c: store.read(c, engine.keys, store.WINDOWS["day"], "acme")
        )
    groups = answer.build(data, "type_company").analytics.groups
    assert [(g.company_id, g.completed) for g in groups] == [("acme", 2)]
    assert len(groups[0].series) == 24


def test_lua_buckets_match_the_python_rule(engine: Engine) -> None:
    values = [0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 100, 999, 1000, 1024, 59_999, 86_400_000, 10**15]
    values += [int(2 ** (k / 4)) for k in range(0, 120)]
    code = (
        _read("_analytics") + "\nlocal out = {}\nfor i = 2, #ARGV do out[#out + 1] = "
        "an_bucket(tonumber(ARGV[i])) end\nreturn out"
    )
    got = engine.link.client.eval(code, 0, engine.keys.prefix, *values)
    assert got == [histogram.bucket_of(v) for v in values]
    for v in values:
        low, high = histogram.bucket_bounds(histogram.bucket_of(v))
        assert low <= v < high or histogram.bucket_of(v) == histogram.MAX_BUCKET


def test_disabled_bookkeeping_writes_nothing(config: Config) -> None:
    eng = Engine.build(config, daemon=True)
    try:
        scripts = Scripts(eng.keys, 1000, analytics=False)
        for s in scripts.all():
            s.load(eng.link.client)
        client = eng.link.client
        row = eng.ops.prepare({"type": "noop"})
        scripts.enqueue(client, [row])
        claimed = scripts.claim(client, 10, 30_000, "tok", "d1")
        scripts.complete(client, [(j.id, "tok", "{}", "{}") for j in claimed.jobs])
        assert client.keys(eng.keys.prefix + "an:*") == []
        assert client.zcard(eng.keys.status(JobStatus.COMPLETED)) == 1
    finally:
        eng.close()


async def test_a_delayed_job_waits_from_its_run_at(config: Config) -> None:
    async with running_pool(config, registry_with()) as (engine, _pool):
        sec, usec = engine.link.client.time()
        run_at = int(sec) * 1000 + int(usec) // 1000 + 1500
        when = format_ts(run_at)
        [r] = await engine.queue.enqueue_many([{"type": "noop", "run_at": when}])
        job = await wait_status(engine, r.job_id, JobStatus.COMPLETED)
        data = await engine.link.call(lambda c: store.read(c, engine.keys, store.WINDOWS["hour"]))
        started = int(engine.link.client.hget(engine.keys.job(r.job_id), "started_at") or 0)
    [g] = answer.build(data, "type").analytics.groups
    assert job.status is JobStatus.COMPLETED and started >= run_at
    assert g.wait.count == 1 and within_bound(g.wait.p50, started - run_at)
