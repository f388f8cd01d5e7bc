"""GET /jobs/{id} says why a ready pending job waits: a global limit holds it back, no
live daemon has a handler for its type (a daemon claims only what it can run), or none
serves its named queue."""

from __future__ import annotations

import dataclasses

import trio
from api_client import PREFIX, api_config, running_api

from fleetd.config import Config
from fleetd.config.limit_sections import LimitsConfig


async def test_a_job_held_back_by_a_type_limit_says_so(config: Config) -> None:
    cfg = dataclasses.replace(api_config(config), limits=LimitsConfig(types=("noop=1",)))
    async with running_api(cfg, roles=("api", "worker")) as api:
        first = await api.enqueue({"type": "noop", "data": {"sleep_ms": 3000}})
        second = await api.enqueue({"type": "noop"})
        await api.wait_status(first["job_id"], "processing")
        got = (await api.get(f"{PREFIX}/{second['job_id']}")).json()
        assert got["status"] == "pending"
        assert got["waiting"] == "concurrency limit of job type 'noop': 1 of 1 running"
        running = (await api.get(f"{PREFIX}/{first['job_id']}")).json()
        assert "waiting" not in running
        with trio.fail_after(10):
            await api.wait_status(second["job_id"], "completed")


async def test_a_job_no_live_daemon_can_run_says_so(config: Config) -> None:
    async with running_api(api_config(config), roles=("api",)) as api:
        job = await api.enqueue({"type": "noop"})
        got = (await api.get(f"{PREFIX}/{job['job_id']}")).json()
        assert got["waiting"] == "no running daemon has a handler for job type 'noop'"
        later = await api.enqueue({"type": "noop", "run_at": "2999-01-01T00:00:00Z"})
        got = (await api.get(f"{PREFIX}/{later['job_id']}")).json()
        assert "waiting" not in got  # it waits for its run_at, which the answer shows


async def test_a_job_of_a_queue_no_live_daemon_serves_says_so(config: Config) -> None:
    # The daemon of running_api serves `default` (and has the noop handler).
    async with running_api(api_config(config), roles=("api", "worker")) as api:
        job = await api.enqueue({"type": "noop", "queue": "nowhere"})
        got = (await api.get(f"{PREFIX}/{job['job_id']}")).json()
        assert got["status"] == "pending"
        assert got["waiting"] == "no running daemon serves queue 'nowhere'"
        r = await api.get("/api/v1/admin/queues")
        figures = {q["name"]: q for q in r.json()["queues"]}
        assert figures["nowhere"]["daemons"] == [] and figures["nowhere"]["ready"] == 1
        assert len(figures["default"]["daemons"]) == 1
        served = await api.enqueue({"type": "noop"})
        with trio.fail_after(10):
            await api.wait_status(served["job_id"], "completed")
