"""The capacity planner: its queueing arithmetic against closed forms, and its
prediction against a measured queue — a known Poisson load on a real worker pool,
the predicted mean wait (M/M/c) within the stated tolerance of the wait the analytics
buckets measured — plus its doors (API for platform admins, CLI)."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest
import trio
from api_client import PREFIX, api_config, auth, running_api
from conftest import fleetd_env
from pool import registry_with, running_pool, wait_status

from fleetd.analytics import answer, capacity_read, store
from fleetd.analytics.capacity import erlang_c, plan, trend_now, trend_per_hour
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus

# The validation's tolerance: predicted mean wait within 50 % (+ 10 ms of fleetd's own
# pick-up time) of the measured one. A 10 s sample of an M/M/c queue at ρ = 0.75 has a
# sampling error of ~20-30 % on its mean wait; real service times are only roughly
# exponential (sleeps overshoot on a busy host).
TOLERANCE = 0.5
SLACK_S = 0.01


def test_erlang_c_and_waits_match_closed_forms() -> None:
    # M/M/1: P(wait) = ρ, mean wait ρ / (μ - λ).
    assert erlang_c(1, 0.5) == pytest.approx(0.5)
    p = plan(5, 0.1, 1, target_p95=1.0)
    assert p.utilisation == pytest.approx(0.5)
    assert p.wait_mean == pytest.approx(0.5 / (10 - 5))
    # P(W > t) = ρ e^{-(μ-λ)t}: p95 at ln(0.5 / 0.05) / 5.
    assert p.wait_p95 == pytest.approx(math.log(10) / 5)
    # M/M/2 with a = 1.5: C = 9/14 (the textbook value).
    assert erlang_c(2, 1.5) == pytest.approx(9 / 14)
    assert erlang_c(3, 3.0) == 1.0 and erlang_c(3, 0) == 0.0


def test_concurrency_needed_is_the_smallest_that_meets_the_target() -> None:
    for lam, s, target in ((14, 0.2, 0.05), (100, 1.5, 2.0), (3, 30, 60), (0.5, 0.1, 0.001)):
        p = plan(lam, s, 1, target)
        c = p.concurrency_needed
        meets = plan(lam, s, c, target).wait_p95
        assert meets is not None and meets <= target, (lam, s, target)
        below = plan(lam, s, c - 1, target).wait_p95 if c > 1 else None
        assert c == 1 or below is None or below > target, (lam, s, target)


def test_unstable_load_drain_and_trend() -> None:
    full = plan(30, 0.2, 4, target_p95=1.0, backlog=100)
    assert full.utilisation == pytest.approx(1.5)
    assert full.wait_mean is None and full.wait_p95 is None and full.drain_eta is None
    assert full.concurrency_needed >= 7
    ok = plan(10, 0.2, 4, 1.0, backlog=100, hourly_arrivals=[1 + h / 24 for h in range(48)])
    assert ok.drain_eta == pytest.approx(100 / (4 / 0.2 - 10))
    assert ok.trend_per_day == pytest.approx(1.0)
    assert ok.full_in_days == pytest.approx((4 / 0.2 - 10) / 1.0)
    assert trend_per_hour([5, 5, 5]) == 0.0
    # The trend chart's anchor: the fitted line at the last hour.
    assert trend_now([1 + h / 24 for h in range(48)]) == pytest.approx(1 + 47 / 24)
    assert trend_now([0, 2, 1, 3]) == pytest.approx(0.3 + 0.8 * 3)
    assert trend_now([]) == 0.0


@pytest.mark.slow
async def test_predicted_wait_matches_a_measured_queue(config: Config) -> None:
    rng = random.Random(21)
    # ρ = 30 × 0.1 / 4 = 0.75 (predicted mean wait ~50 ms, well above fleetd's own
    # pick-up time), ~300 jobs in 10 s (the pool helper allows 15 s in all).
    concurrency, service_ms, rate, seconds = 4, 100.0, 30.0, 10.0
    async with running_pool(config, registry_with(), concurrency=concurrency) as (engine, _):
        # One job first, so the pool's job-time average starts at the load's: short
        # averages claim ahead (a different queue), long ones never do.
        warm = await engine.queue.enqueue({"type": "noop", "data": {"sleep_ms": 100}})
        await wait_status(engine, warm.job_id, JobStatus.COMPLETED)
        ids, begin = [], trio.current_time()
        arrival = begin
        while arrival - begin < seconds:
            sleep_ms = min(int(rng.expovariate(1 / service_ms)), 2000)
            r = await engine.queue.enqueue({"type": "noop", "data": {"sleep_ms": sleep_ms}})
            ids.append(r.job_id)
            # Poisson arrivals on an absolute schedule: the enqueue's own time does not
            # stretch the gaps.
            arrival += rng.expovariate(rate)
            await trio.sleep_until(arrival)
        span = trio.current_time() - begin
        for job_id in ids:
            await wait_status(engine, job_id, JobStatus.COMPLETED)
        data = await engine.link.call(lambda c: store.read(c, engine.keys, store.WINDOWS["hour"]))
    [g] = answer.build(data, "type").analytics.groups
    # The warm-up job is in the figures too: one of ~300, and it did not wait.
    assert g.wait.count == len(ids) + 1
    measured_wait = (g.wait.mean or 0) / 1000
    service = (g.run.mean or 0) / 1000
    predicted = plan(len(ids) / span, service, concurrency, target_p95=1.0)
    assert predicted.wait_mean is not None
    assert 0.5 < predicted.utilisation < 0.95, predicted
    assert predicted.wait_mean > 2 * SLACK_S, predicted  # not within the slack by itself
    error = abs(predicted.wait_mean - measured_wait)
    assert error <= TOLERANCE * predicted.wait_mean + SLACK_S, (predicted, measured_wait)


def cli(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetd.cli", "capacity", *args],
        env=fleetd_env(config), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_capacity_doors(config: Config) -> None:
    async with running_api(api_config(config), roles=("api", "worker")) as api:
        for _ in range(3):
            r = await api.enqueue({"type": "noop", "data": {"sleep_ms": 50}})
            await api.wait_status(r["job_id"], "completed")
        with trio.fail_after(10):
            while True:  # the worker's heartbeat names its concurrency
                body = (await api.get(f"{PREFIX}/capacity")).json()["capacity"]
                if body["concurrency"]:
                    break
                await trio.sleep(0.05)
        assert body["concurrency"] == config.worker.concurrency
        assert body["arrival_rate"] > 0 and body["service_time"] >= 0.045
        assert body["wait_p95_target"] == config.capacity.wait_p95_target
        assert body["concurrency_needed"] >= 1 and body["backlog"] == 0
        assert [t["type"] for t in body["types"]] == ["noop"]
        # The trend chart's inputs: a week of hours, this one's arrivals, the capacity.
        assert len(body["hourly"]) == 168 and body["hourly"][-1]["arrival_rate"] > 0
        assert sum(h["arrival_rate"] for h in body["hourly"][:-2]) == 0
        assert body["capacity_rate"] == pytest.approx(
            body["concurrency"] / body["service_time"], rel=1e-3)  # fmt: skip
        refused = await api.get(f"{PREFIX}/capacity", headers=auth("acme"))
        assert refused.status_code == 403
        out = cli(config, "--json", "--target", "2s")
        assert out.returncode == 0, out.stderr
        cli_body = json.loads(out.stdout)["capacity"]
        assert cli_body["wait_p95_target"] == 2.0 and cli_body["concurrency"] >= 1
        table = cli(config)
        assert table.returncode == 0 and "concurrency needed for the target" in table.stdout
    bad = cli(config, "--target", "soon")
    assert bad.returncode == 2
    assert bad.stderr.startswith("fleetd: --target:") and len(bad.stderr.splitlines()) == 1


def test_backlog_counts_ready_jobs_of_every_type_company_and_queue(engine: Engine) -> None:
    # Ready jobs are kept per part (type x company) and per named queue: the backlog is
    # the jobs in all of them, not the number of parts.
    reqs = [
        {"type": "noop", "company_id": company, "queue": queue}
        for company in ("acme", "globex", None)
        for queue in ("default", "bulk")
        for _ in range(4)
    ]
    engine.link.run_sync(engine.ops.enqueue_rows, engine.ops.prepare_many(reqs))
    got = engine.link.run_sync(lambda c: capacity_read.read(c, engine.keys, 900.0, 5.0))
    assert got.capacity.backlog == len(reqs) == 24
