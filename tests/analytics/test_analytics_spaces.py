"""Analytics over key spaces (`[queues] own_slot`, fleetd.backend.spaces) against a real
Redis: jobs run by the real transition scripts in a queue's own space and in the
namespace's record their figures each in its space; a window read sums them (minute and
hour buckets, percentiles over the combined histograms, slowest attempts merged), each
space's closed buckets are sealed in that space, the capacity planner counts both, and
the API and the CLI (a process without the setting too) answer the sum."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
import trio
from api_client import PREFIX, api_config, running_api
from conftest import fleetd_env
from percentiles import nearest_rank, within_bound

from fleetd.analytics import answer, capacity_read, histogram, sealed, store
from fleetd.backend.keys import Keys
from fleetd.backend.spaces import Space
from fleetd.config import Config
from fleetd.config.queue_section import Served
from fleetd.engine import Engine

MINUTE, HOUR = store.MINUTE_MS, store.HOUR_MS


def spread(config: Config, *queues: str) -> Config:
    return dataclasses.replace(config, queues=dataclasses.replace(config.queues, own_slot=queues))


@pytest.fixture
def eng(config: Config) -> Any:
    e = Engine.build(spread(config, "bulk"), daemon=True)
    for script in e.scripts.all():
        script.load(e.link.client)
    yield e
    e.close()


def space_of(engine: Engine, queue: str | None) -> Space:
    return engine.spaces.for_queue(engine.link.client, queue)


def every(engine: Engine) -> list[Keys]:
    return [s.keys for s in engine.spaces.known(engine.link.client)]


def run(
    engine: Engine,
    queue: str | None,
    sleeps: list[float],
    *,
    fail: bool = False,
    company: str | None = None,
) -> dict[str, int]:
    """Enqueue one job per entry of `sleeps` in `queue`, claim them with the scripts of
    its space, and end each (complete, or fail for good) after its sleep; returns each
    job's run time as the scripts measured it (end - start, Redis's clock)."""
    c = engine.link.client
    req: dict[str, Any] = {"type": "noop", "company_id": company, "max_retries": 0}
    if queue is not None:
        req["queue"] = queue
    rows = engine.ops.prepare_many([req] * len(sleeps))
    ids = [r.job_id for r in engine.ops.enqueue_rows(c, rows)]
    space = space_of(engine, queue)
    scripts = space.scripts.for_claims(None, "", Served(((queue or "default", 0),)))
    token = uuid.uuid4().hex
    claimed = scripts.claim(c, len(ids), 30_000, token, "d1").jobs
    assert sorted(j.id for j in claimed) == sorted(ids)
    for job_id, pause in zip(ids, sleeps, strict=True):
        time.sleep(pause)
        if fail:
            assert scripts.fail(c, [(job_id, token, "boom", "", False, 0)]) == [0]
        else:
            assert scripts.complete(c, [(job_id, token, "{}", "{}")]) == [1]
    out = {}
    for job_id in ids:
        started, ended = c.hmget(space.keys.job(job_id), "started_at", "updated_at")
        out[job_id] = int(ended) - int(started)
    return out


def test_a_window_sums_the_namespaces_space_and_a_queues(eng: Engine) -> None:
    c = eng.link.client
    home = run(eng, None, [0.0] * 8)
    bulk = run(eng, "bulk", [0.03, 0.06, 0.09, 0.12, 0.15, 0.18])
    run(eng, "bulk", [0.0, 0.0], fail=True, company="acme")
    bulk_keys = space_of(eng, "bulk").keys
    assert c.exists(bulk_keys.analytics_minute(int(c.time()[0]) // 60))  # in its own space

    for name in ("hour", "day"):
        data = store.read(c, every(eng), store.WINDOWS[name])
        groups = {
            (g.type, g.company_id): g for g in answer.build(data, "type_company").analytics.groups
        }
        plain, acme = groups["noop", ""], groups["noop", "acme"]
        assert (plain.enqueued, plain.completed, plain.failed) == (14, 14, 0), name
        assert (acme.enqueued, acme.completed, acme.failed, acme.failure_rate) == (2, 0, 2, 1.0)
        # Percentiles over both spaces' jobs together: neither space's alone.
        raw = [*home.values(), *bulk.values()]
        assert plain.run.count == 14 and plain.wait.count == 14
        for p, est in ((50, plain.run.p50), (95, plain.run.p95), (99, plain.run.p99)):
            assert within_bound(est, nearest_rank(raw, p)), (name, p, est, sorted(raw))
        assert plain.run.mean == round(sum(raw) / len(raw), 2)
        # The slowest attempts merged over the spaces: the queue's slow jobs lead.
        assert [(s.job_id, s.run_ms) for s in plain.slowest] == sorted(
            bulk.items(), key=lambda kv: -kv[1]
        )[:5]
        assert sum(p.completed for p in plain.series) == 14
        [noop] = answer.build(data, "type").analytics.groups
        assert (noop.completed, noop.failed, noop.failure_rate) == (14, 2, round(2 / 16, 4))

    # Each space alone holds its own jobs' figures; one Keys reads one space, as before.
    alone = store.read(c, eng.keys, store.WINDOWS["hour"])
    assert store.total(b.get(("noop", ""), store.Figures()) for b in alone.buckets).completed == 8
    queue_only = store.read(c, [bulk_keys], store.WINDOWS["hour"], "acme")
    assert [g for b in queue_only.buckets for g in b] == [("noop", "acme")]


def test_each_space_seals_its_closed_buckets_and_a_sum_recomputes_its_marks(
    eng: Engine,
) -> None:
    c = eng.link.client
    run(eng, None, [0.0, 0.0, 0.0])
    run(eng, "bulk", [0.1, 0.1, 0.1])
    run(eng, "bulk", [0.0], fail=True, company="acme")
    sec, usec = c.time()
    now = int(sec) * 1000 + int(usec) // 1000
    minute, hour = now // MINUTE, now // HOUR
    spaces = every(eng)
    live = {
        step: store.buckets(c, spaces, step, [index], now)[0]
        for step, index in ((MINUTE, minute), (HOUR, hour))
    }
    later = now + 2 * HOUR  # as if the minute and the hour had closed
    for step, index in ((MINUTE, minute), (HOUR, hour)):
        [merged] = store.buckets(c, spaces, step, [index], later)
        for keys in spaces:  # sealed in its own space, with its own figures
            name = keys.analytics_sealed_hour if step == HOUR else keys.analytics_sealed_minute
            seal = sealed.decode(c.get(name(index)))
            assert seal is not None and set(seal.groups) >= {"noop\n"}
        assert merged == live[step]  # the figures: marks are not compared
        both = merged["noop", ""]
        assert both.completed == 6 and both.marks is None  # of two spaces: no one's marks
        only = merged["noop", "acme"]  # of the queue's space alone: its seal's
        assert only.failed == 1 and only.marks is not None
        # A chart point of the sum: percentiles of the summed histograms.
        data = store.WindowData(store.WINDOWS["hour"], later, [index * step], [merged], {})
        [g] = [g for g in answer.build(data, "type_company").analytics.groups if g.company_id == ""]
        [point] = g.series
        expect = histogram.percentiles(both.run, store.MARKS)
        assert (point.run_p50, point.run_p95, point.run_p99) == tuple(
            round(v, 2) for v in expect if v is not None
        )
        assert point.run_p50 is not None and point.run_p50 < 50 < point.run_p95  # type: ignore[operator]
    # The week's read at `later` merges the sealed hour's slowest of both spaces.
    rows = sealed.read_spaces(c, spaces, HOUR, [hour], later, store._encode)
    assert all(b.slowest is not None for [b] in rows)
    bulk_slow = rows[1][0].slowest
    assert bulk_slow is not None and len(bulk_slow["noop\n"]) == 3


def test_capacity_counts_the_arrivals_runs_and_backlog_of_every_space(eng: Engine) -> None:
    c = eng.link.client
    runs = [*run(eng, None, [0.0, 0.0]).values(), *run(eng, "bulk", [0.05] * 3).values()]
    # Left ready: one in the namespace's space, three in the queue's.
    eng.ops.enqueue_rows(c, eng.ops.prepare_many([{"type": "noop"}]))
    eng.ops.enqueue_rows(c, eng.ops.prepare_many([{"type": "noop", "queue": "bulk"}] * 3))
    body = capacity_read.read(c, every(eng), 300.0, 1.0).capacity
    assert body.backlog == 4
    assert body.arrival_rate == pytest.approx(9 / body.window_s, rel=0.02)
    [t] = body.types
    assert t.type == "noop" and t.service_time is not None
    # The mean of the five runs of both spaces (two of ~0 ms, three of 50 to 150 ms).
    assert t.service_time == round(sum(runs) / 5 / 1000, 4) and t.service_time > 0.04
    assert body.hourly[-1].arrival_rate > 0
    home = capacity_read.read(c, eng.keys, 300.0, 1.0).capacity
    assert home.backlog == 1
    assert home.arrival_rate == pytest.approx(3 / home.window_s, rel=0.02)


def cli(config: Config) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetd.cli", "analytics", "--json"],
        env=fleetd_env(config), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_the_api_and_the_cli_answer_the_sum(config: Config) -> None:
    cfg = spread(config, "bulk")
    worker = dataclasses.replace(cfg.worker, queues=("default", "bulk"))
    cfg = api_config(dataclasses.replace(cfg, worker=worker))
    async with running_api(cfg, roles=("api", "worker")) as api:
        ids = [
            (await api.enqueue({"type": "noop", "queue": q}))["job_id"]
            for q in ("default", "bulk", "bulk")
        ]
        for job_id in ids:
            await api.wait_status(job_id, "completed")
        r = await api.get(f"{PREFIX}/analytics")
        assert r.status_code == 200, r.text
        [noop] = r.json()["analytics"]["groups"]
        assert (noop["completed"], noop["enqueued"], noop["run"]["count"]) == (3, 3, 3)
        r = await api.get(f"{PREFIX}/capacity")
        assert r.status_code == 200, r.text
        cap = r.json()["capacity"]
        assert cap["arrival_rate"] == pytest.approx(3 / cap["window_s"], rel=0.02)
    # A CLI whose config lists no own_slot: the namespace's set tells it of bulk.
    out = await trio.to_thread.run_sync(cli, config)
    assert out.returncode == 0, out.stderr
    [group] = json.loads(out.stdout)["analytics"]["groups"]
    assert group["completed"] == 3
