"""GET /api/v1/admin/jobs/throughput against a real daemon and the test redis-server:
jobs finished by a worker are counted once, each in its bucket; finish times placed at
bucket edges land on the right side; the grid is aligned to the step and ends at the
server's clock; company admins get the same 403 as for stats; bad windows and steps
answer 422 naming the field; an empty namespace gives the right number of zero buckets.
"""

from __future__ import annotations

import itertools
from typing import Any

from api_client import PREFIX, api_config, auth, running_api

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus, parse_ts

URL = f"{PREFIX}/throughput"
# The grid of the edge test: one-minute buckets, so a bucket boundary passing between
# placing the finish times and reading them is rare; when it happens, the test places
# them again on the new grid (at most this many times).
EDGE_STEP_MS = 60_000
EDGE_ATTEMPTS = 3


def redis_ms(engine: Engine) -> int:
    sec, usec = engine.link.client.time()
    return int(sec) * 1000 + int(usec) // 1000


def by_start(body: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {parse_ts(b["t"]): b for b in body["throughput"]["buckets"]}


def totals(body: dict[str, Any]) -> tuple[int, int]:
    buckets = body["throughput"]["buckets"]
    return sum(b["completed"] for b in buckets), sum(b["failed"] for b in buckets)


async def test_jobs_run_by_a_worker_are_counted_once_in_their_bucket(config: Config) -> None:
    async with running_api(api_config(config), roles=("api", "worker")) as api:
        ok = [(await api.enqueue({"type": "noop"}))["job_id"] for _ in range(3)]
        bad_job = {"type": "noop", "data": {"fail_attempts": 1}, "max_retries": 0}
        bad = (await api.enqueue(bad_job))["job_id"]
        # Fails its first attempt (retrying: not a failure), then fails for good: one
        # failed job, counted once.
        retried = (
            await api.enqueue({"type": "noop", "data": {"fail_attempts": 5}, "max_retries": 1})
        )["job_id"]
        finished = {}
        for job_id in ok:
            finished[job_id] = (await api.wait_status(job_id, "completed"))["job"]
        for job_id in (bad, retried):
            finished[job_id] = (await api.wait_status(job_id, "failed"))["job"]
        assert finished[retried]["retry_count"] == 1

        r = await api.get(URL)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"throughput"}
        assert set(body["throughput"]) == {"window", "step", "until", "buckets"}
        assert body["throughput"]["window"] == "10m" and body["throughput"]["step"] == "10s"
        assert totals(body) == (3, 2)
        buckets = by_start(body)
        # Each job is in the bucket holding its completed_at (the finish time).
        expected: dict[int, list[int]] = {}
        for job in finished.values():
            at = parse_ts(job["completed_at"])
            start = at - at % 10_000
            counts = expected.setdefault(start, [0, 0])
            counts[0 if job["status"] == "completed" else 1] += 1
        for start, (completed, failed) in expected.items():
            assert buckets[start]["completed"] == completed, (start, buckets[start])
            assert buckets[start]["failed"] == failed, (start, buckets[start])


async def test_finish_times_at_bucket_edges(config: Config, engine: Engine) -> None:
    completed = engine.keys.status(JobStatus.COMPLETED)
    failed = engine.keys.status(JobStatus.FAILED)
    client = engine.link.client
    step = EDGE_STEP_MS
    async with running_api(api_config(config)) as api:
        for _ in range(EDGE_ATTEMPTS):
            client.delete(completed, failed, engine.keys.status(JobStatus.CANCELLED))
            now = redis_ms(engine)
            last = now - now % step
            first = last - 59 * step  # window 1h in 1m steps: 60 buckets
            base = last - 10 * step
            client.zadd(
                completed,
                {
                    "at-start": base,  # a bucket's start is in it
                    "before-end": base + step - 1,  # and so is its last millisecond
                    "at-end": base + step,  # its end is the next bucket's start
                    "first": first,  # the window's first millisecond
                    "too-old": first - 1,  # just before the window
                    "future": last + step - 1,  # after the server's clock: not yet
                },
            )
            client.zadd(failed, {"f1": base + 1, "f2": base + 2, "f3": last - 1})
            # Cancelled jobs are finished too, but neither completed nor failed.
            client.zadd(engine.keys.status(JobStatus.CANCELLED), {"c1": base})
            r = await api.get(URL, params={"window": "1h", "step": "1m"})
            assert r.status_code == 200, r.text
            body = r.json()
            if parse_ts(body["throughput"]["buckets"][-1]["t"]) == last:
                break
        else:
            raise AssertionError(f"the minute changed {EDGE_ATTEMPTS} times in a row")

        t = body["throughput"]
        assert (t["window"], t["step"]) == ("1h", "1m")
        starts = [parse_ts(b["t"]) for b in t["buckets"]]
        assert starts == list(range(first, last + 1, step))
        until = parse_ts(t["until"])
        assert last <= until < last + step
        buckets = by_start(body)
        assert (buckets[base]["completed"], buckets[base]["failed"]) == (2, 2)
        assert (buckets[base + step]["completed"], buckets[base + step]["failed"]) == (1, 0)
        assert (buckets[first]["completed"], buckets[first]["failed"]) == (1, 0)
        assert (buckets[last - step]["completed"], buckets[last - step]["failed"]) == (0, 1)
        assert buckets[last]["completed"] == 0  # "future" is past `until`
        assert totals(body) == (4, 3)


async def test_buckets_are_aligned_to_the_step_and_zero_when_empty(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        for params, count, step_ms in [
            ({}, 60, 10_000),
            ({"window": "10m", "step": "10s"}, 60, 10_000),
            ({"window": "24h", "step": "1m"}, 1440, 60_000),
            ({"window": "1m", "step": "1s"}, 60, 1_000),
            ({"window": "3h", "step": "1h"}, 3, 3_600_000),
            ({"window": "2h", "step": "7.5s"}, 960, 7_500),
            ({"window": "60s", "step": "1000ms"}, 60, 1_000),
        ]:
            r = await api.get(URL, params=params)
            assert r.status_code == 200, (params, r.text)
            t = r.json()["throughput"]
            starts = [parse_ts(b["t"]) for b in t["buckets"]]
            assert len(starts) == count, params
            assert all(s % step_ms == 0 for s in starts), params
            assert all(b - a == step_ms for a, b in itertools.pairwise(starts))
            assert starts[-1] <= parse_ts(t["until"]) < starts[-1] + step_ms
            assert all(b["completed"] == b["failed"] == 0 for b in t["buckets"]), params
        # Durations are echoed in their compact form.
        t = (await api.get(URL, params={"window": "60s", "step": "1000ms"})).json()["throughput"]
        assert (t["window"], t["step"]) == ("1m", "1s")


async def test_company_admins_are_refused_like_for_stats(config: Config) -> None:
    async with running_api(api_config(config), company_id="acme") as api:
        r = await api.get(URL)
        assert r.status_code == 403
        error = r.json()["error"]
        assert set(error) == {"code", "message", "details"}
        assert error["code"] == "forbidden" and "platform admin" in error["message"]
        stats = await api.get(f"{PREFIX}/stats")
        assert stats.status_code == 403
        assert set(stats.json()["error"]) == set(error)
        assert stats.json()["error"]["code"] == error["code"]
        # Refused before its parameters are looked at.
        assert (await api.get(URL, params={"window": "nope"})).status_code == 403
        # A platform admin on the same daemon is served.
        assert (await api.get(URL, headers=auth())).status_code == 200
        assert (await api.get(URL, headers={})).status_code == 401


async def test_bad_windows_and_steps_are_422_naming_the_field(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        for params, fields, words in [
            ({"window": "30s"}, ["window"], "from 1m to 24h"),
            ({"window": "25h", "step": "1m"}, ["window"], "from 1m to 24h"),
            ({"window": "10"}, ["window"], "missing unit"),
            ({"window": "soon"}, ["window"], "invalid duration"),
            ({"window": ""}, ["window"], "empty"),
            ({"step": "500ms"}, ["step"], "from 1s to 1h"),
            ({"step": "2h", "window": "24h"}, ["step"], "from 1s to 1h"),
            ({"step": "-1s"}, ["step"], "negative"),
            ({"step": "1.0005s"}, ["step"], "whole number of milliseconds"),
            ({"window": "10m", "step": "7s"}, ["step"], "divide the window (10m) evenly"),
            ({"window": "1h", "step": "1s"}, ["step"], "at most 1,440"),
            ({"window": "1d", "step": "1m1s"}, ["step"], "evenly"),
            ({"window": "1w", "step": "0s"}, ["window", "step"], "from 1m to 24h"),
        ]:
            r = await api.get(URL, params=params)
            assert r.status_code == 422, (params, r.text)
            error = r.json()["error"]
            assert error["code"] == "validation_failed"
            assert [f["field"] for f in error["details"]["fields"]] == fields, params
            assert words in error["message"], (params, error["message"])
