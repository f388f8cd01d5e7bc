"""What a handler writes to Redis stays bounded, whatever it returns: its result
([worker] max_result_bytes, inline and in a sandbox), its progress messages and its
notes. A real worker pool against the test redis-server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pool import registry_with, running_pool, wait_status
from sandbox_handlers import Sandboxed, Threaded

from fleetd import JobContext, JobHandler
from fleetd.config import Config
from fleetd.config.isolation_section import IsolationConfig
from fleetd.jobs.context import MAX_NOTES
from fleetd.jobs.fields import MAX_PROGRESS_MESSAGE
from fleetd.jobs.model import JobStatus


class Talker(JobHandler):
    """Inline: a big result, a long progress message, or many notes."""

    job_type = "talker"

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        do = data["do"]
        if do == "big_result":
            return {"blob": "r" * int(data["size"])}
        if do == "progress":
            await ctx.progress(50, "é" * 5000)
            return {}
        if do == "notes":
            for n in range(int(data["notes"])):
                await ctx.remember(f"n{n}", n)
            await ctx.remember("n0", "rewritten")  # an existing key: always allowed
            return {"kept": await ctx.recall("n0")}
        if do == "long_key":
            await ctx.remember("k" * 129, 1)
        return {}


def registry(tmp_path: Path, max_result_bytes: int) -> Any:
    reg = registry_with(Talker(), Sandboxed(), Threaded())
    reg.artifacts_dir = tmp_path / "artifacts"
    reg.max_result_bytes = max_result_bytes  # as discovery sets it from [worker]
    return reg


def isolation(tmp_path: Path) -> IsolationConfig:
    (tmp_path / "scratch").mkdir(exist_ok=True)
    return IsolationConfig(scratch_dir=str(tmp_path / "scratch"))


@pytest.mark.parametrize("job_type", ["talker", "sandboxed", "threaded"])
async def test_a_result_over_the_cap_fails_the_job_for_good(
    config: Config, tmp_path: Path, job_type: str
) -> None:
    reg, iso = registry(tmp_path, 10_000), isolation(tmp_path)
    async with running_pool(config, reg, isolation=iso) as (engine, _):
        big = await engine.queue.enqueue(
            {"type": job_type, "data": {"do": "big_result", "size": 20_000}, "max_retries": 3}
        )
        fits = await engine.queue.enqueue(
            {"type": job_type, "data": {"do": "big_result", "size": 9_000}}
        )
        failed = await wait_status(engine, big.job_id, JobStatus.FAILED, limit=30)
        done = await wait_status(engine, fits.job_id, JobStatus.COMPLETED, limit=30)
    assert failed.attempts == 1 and failed.result is None
    assert "over [worker] max_result_bytes (10,000)" in (failed.error or "")
    assert len(done.result["blob"]) == 9_000


async def test_the_cap_counts_bytes_not_characters(config: Config, tmp_path: Path) -> None:
    class Wide(JobHandler):
        job_type = "wide"

        async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
            # 3,000 characters, stored as 18,000 bytes of JSON (\u20ac each)
            return {"blob": "€" * 3_000}

    reg = registry_with(Wide())
    reg.max_result_bytes = 10_000
    async with running_pool(config, reg) as (engine, _):
        r = await engine.queue.enqueue({"type": "wide"})
        job = await wait_status(engine, r.job_id, JobStatus.FAILED)
    assert "18,011 bytes of JSON" in (job.error or "")


def test_the_cap_is_a_setting() -> None:
    assert Config.default().worker.max_result_bytes == 1024 * 1024


async def test_a_progress_message_is_cut_inline_as_in_a_child(
    config: Config, tmp_path: Path
) -> None:
    async with running_pool(config, registry(tmp_path, 1 << 20)) as (engine, _):
        r = await engine.queue.enqueue({"type": "talker", "data": {"do": "progress"}})
        await wait_status(engine, r.job_id, JobStatus.COMPLETED)
        raw = await engine.link.call(lambda c: c.hget(engine.keys.job(r.job_id), "progress"))
    assert json.loads(raw)["message"] == "é" * MAX_PROGRESS_MESSAGE


async def test_a_job_keeps_at_most_max_notes(config: Config, tmp_path: Path) -> None:
    async with running_pool(config, registry(tmp_path, 1 << 20)) as (engine, _):
        ok = await engine.queue.enqueue(
            {"type": "talker", "data": {"do": "notes", "notes": MAX_NOTES}}
        )
        over = await engine.queue.enqueue(
            {"type": "talker", "data": {"do": "notes", "notes": MAX_NOTES + 1}, "max_retries": 0}
        )
        long_key = await engine.queue.enqueue(
            {"type": "talker", "data": {"do": "long_key"}, "max_retries": 0}
        )
        done = await wait_status(engine, ok.job_id, JobStatus.COMPLETED)
        refused = await wait_status(engine, over.job_id, JobStatus.FAILED)
        bad_key = await wait_status(engine, long_key.job_id, JobStatus.FAILED)
        fields = await engine.link.call(lambda c: c.hkeys(engine.keys.job(over.job_id)))
    assert done.result["kept"] == "rewritten"
    assert f"at most {MAX_NOTES} notes" in (refused.error or "")
    assert sum(1 for f in fields if f.startswith("note:")) == MAX_NOTES
    assert "1 to 128 characters" in (bad_key.error or "")
