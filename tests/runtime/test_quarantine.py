"""Quarantines (fleetd.jobs.quarantine) in a worker pool in this process, against the
real test redis-server, with real child processes: repeated memory exhaustion of one
job type of one company holds its jobs (claims skip the part, the job says why, the
alert names it) while other parts run; a release runs them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from engine_jobs import waiting_reason
from pool import registry_with, running_pool, wait_status
from sandbox_handlers import Sandboxed

from fleetd.config import Config
from fleetd.config.isolation_section import IsolationConfig
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus
from fleetd.jobs.quarantine import list_quarantines, release
from fleetd.runtime.alerts import Alerts

# A child starts in ~0.3-1 s and a hog fills 512 MiB; generous bounds.
LIMIT = 60


def registry(tmp_path: Path) -> Any:
    reg = registry_with(Sandboxed())
    reg.artifacts_dir = tmp_path / "artifacts"
    return reg


def alerts_of(engine: Engine) -> Alerts:
    settings = dataclasses.replace(engine.config.alerts, raise_after=0, clear_after=0)
    return Alerts(engine, "d-test", settings)


def events_of_type(engine: Engine, etype: str) -> list[dict[str, Any]]:
    got = engine.link.run_sync(lambda c: c.xrange(engine.keys.events))
    return [dict(fields) for _id, fields in got if fields.get("type") == etype]


async def test_repeated_memory_exhaustion_quarantines_and_a_release_runs_the_held_jobs(
    config: Config, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    iso = IsolationConfig(scratch_dir=str(scratch), quarantine_after=2, quarantine_window=600)
    async with running_pool(config, registry(tmp_path), isolation=iso) as (engine, _pool):
        alerts = alerts_of(engine)
        hog = {"type": "sandboxed", "data": {"do": "hog"}, "company_id": "acme", "max_retries": 0}
        for _ in range(2):
            r = await engine.queue.enqueue(hog)
            failed = await wait_status(engine, r.job_id, JobStatus.FAILED, limit=LIMIT)
            assert failed.error.startswith("resource_exhausted: memory"), failed.error

        held = await engine.link.call(lambda c: list_quarantines(c, engine.keys))
        assert [(q.job_type, q.company_id, q.failures, q.kinds) for q in held] == [
            ("sandboxed", "acme", 2, {"memory": 2})
        ]
        assert events_of_type(engine, "part.quarantined")[0]["company_id"] == "acme"
        await alerts.evaluate()
        assert alerts.rules["quarantined"].active
        assert "sandboxed of company acme" in alerts.values["quarantined"].text
        raised = [e for e in events_of_type(engine, "alert.raised") if '"quarantined"' in e["data"]]
        assert raised and "acme" in raised[0]["data"]

        # A new job of the quarantined part is held; the same type of another company
        # (another part) runs on.
        waiting = await engine.queue.enqueue(
            {"type": "sandboxed", "data": {"do": "ok"}, "company_id": "acme"}
        )
        other = await engine.queue.enqueue(
            {"type": "sandboxed", "data": {"do": "ok"}, "company_id": "globex"}
        )
        await wait_status(engine, other.job_id, JobStatus.COMPLETED, limit=LIMIT)
        job = await engine.link.call(lambda c: engine.ops.get(c, waiting.job_id))
        assert job is not None and job.status is JobStatus.PENDING and job.attempts == 0
        why = await waiting_reason(engine, job, "sandboxed")
        assert why is not None and why.startswith(
            "quarantined: job type 'sandboxed' of company 'acme' after 2 failures (2 memory)"
        ), why

        # Released by an admin: the held job runs, the alert resolves.
        got = await engine.link.call(lambda c: release(c, engine.scripts, "sandboxed", "acme"))
        assert got is not None and got.failures == 2
        again = await engine.link.call(lambda c: release(c, engine.scripts, "sandboxed", "acme"))
        assert again is None
        await wait_status(engine, waiting.job_id, JobStatus.COMPLETED, limit=LIMIT)
        await alerts.evaluate()
        assert not alerts.rules["quarantined"].active
        assert events_of_type(engine, "part.released")[0]["job_type"] == "sandboxed"


async def test_plain_failures_and_kinds_left_out_do_not_count_and_zero_turns_them_off(
    config: Config, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    iso = IsolationConfig(scratch_dir=str(scratch), quarantine_after=1)
    async with running_pool(config, registry(tmp_path), isolation=iso) as (engine, _pool):
        r = await engine.queue.enqueue(
            {"type": "sandboxed", "data": {"do": "fail"}, "company_id": "acme", "max_retries": 0}
        )
        await wait_status(engine, r.job_id, JobStatus.FAILED, limit=LIMIT)
        assert await engine.link.call(lambda c: list_quarantines(c, engine.keys)) == []
    # Kinds left out of quarantine_kinds do not count either (here crashes).
    no_crash = IsolationConfig(scratch_dir=str(scratch), quarantine_after=1,
                               quarantine_kinds=("memory", "timeout"))  # fmt: skip
    async with running_pool(config, registry(tmp_path), isolation=no_crash) as (engine, _pool):
        r = await engine.queue.enqueue(
            {"type": "sandboxed", "data": {"do": "exit"}, "company_id": "acme", "max_retries": 0}
        )
        done = await wait_status(engine, r.job_id, JobStatus.FAILED, limit=LIMIT)
        assert done.error.startswith("crash:")
        assert await engine.link.call(lambda c: list_quarantines(c, engine.keys)) == []
    off = IsolationConfig(scratch_dir=str(scratch), quarantine_after=0)
    async with running_pool(config, registry(tmp_path), isolation=off) as (engine, _pool):
        for _ in range(2):
            r = await engine.queue.enqueue(
                {"type": "sandboxed", "data": {"do": "exit"}, "company_id": "acme",
                 "max_retries": 0}
            )  # fmt: skip
            done = await wait_status(engine, r.job_id, JobStatus.FAILED, limit=LIMIT)
            assert done.error.startswith("crash:")
        assert await engine.link.call(lambda c: list_quarantines(c, engine.keys)) == []
