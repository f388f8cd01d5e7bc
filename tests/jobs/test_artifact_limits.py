"""[artifacts] job_max_bytes and min_free_bytes (fleetd.jobs.artifact_limits): on the
real file system, in the store, in a real worker pool (inline and in a sandbox child)
against the test redis-server: past the job's cap the job fails at once; a write that
would eat into the free-space reserve fails the attempt, which is retried."""

from __future__ import annotations

import dataclasses
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pool import registry_with, running_pool, wait_status
from sandbox_handlers import Sandboxed, Threaded

from fleetd import JobContext, JobHandler
from fleetd.config import Config
from fleetd.config.isolation_section import IsolationConfig
from fleetd.jobs.artifact_limits import (
    ArtifactDiskFull,
    ArtifactLimits,
    ArtifactTooLarge,
    free_bytes,
)
from fleetd.jobs.artifacts import ArtifactStore
from fleetd.jobs.errors import PermanentError
from fleetd.jobs.model import JobStatus

MIB = 1 << 20


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    for n in range(0, total, size):
        yield b"x" * min(size, total - n)


async def test_the_job_cap_counts_every_artifact_of_the_attempt(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, "job_1", ArtifactLimits(job_max_bytes=100_000))
    await store.write_chunks("a.bin", chunks(60_000))
    with pytest.raises(ArtifactTooLarge, match=r"job_max_bytes \(100,000 bytes\)") as err:
        await store.write_chunks("b.bin", chunks(60_000))
    assert isinstance(err.value, PermanentError)
    # The refused file is gone whole, and its bytes are no longer counted.
    assert sorted(p.name for p in (tmp_path / "job_1").iterdir()) == ["a.bin"]
    await store.write_chunks("c.bin", chunks(40_000))
    assert [a.name for a in store.recorded] == ["a.bin", "c.bin"]


async def test_a_name_written_again_counts_once(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, "job_1", ArtifactLimits(job_max_bytes=100_000))
    for _ in range(5):  # 5 × 80,000 bytes written, but one 80,000-byte file held
        await store.write_chunks("report.csv", chunks(80_000))
    assert [a.size for a in store.recorded] == [80_000]
    with pytest.raises(ArtifactTooLarge):
        await store.write_chunks("other.csv", chunks(30_000))


async def test_one_chunk_larger_than_the_cap_is_refused_before_it_is_written(
    tmp_path: Path,
) -> None:
    store = ArtifactStore(tmp_path, "job_1", ArtifactLimits(job_max_bytes=1000))
    with pytest.raises(ArtifactTooLarge):
        await store.write_bytes("one.bin", b"y" * 1001)
    assert list((tmp_path / "job_1").iterdir()) == []


async def test_no_limits_write_as_before(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, "job_1")
    artifact = await store.write_chunks("big.bin", chunks(3 * MIB, MIB))
    assert artifact.size == 3 * MIB


async def test_a_write_that_would_eat_into_the_reserve_is_refused(tmp_path: Path) -> None:
    reserve = free_bytes(tmp_path) + 1024 * MIB  # more than is free: nothing may be written
    store = ArtifactStore(tmp_path, "job_1", ArtifactLimits(min_free_bytes=reserve))
    with pytest.raises(ArtifactDiskFull, match="min_free_bytes") as err:
        await store.write_text("a.txt", "hello")
    assert err.value.errno == errno.ENOSPC and isinstance(err.value, OSError)
    assert not isinstance(err.value, PermanentError)  # space comes back: retried
    assert list((tmp_path / "job_1").iterdir()) == []


async def test_the_reserve_is_checked_again_while_a_file_streams(tmp_path: Path) -> None:
    """Space taken by someone else mid-write is seen within FREE_CHECK_BYTES."""
    hog = tmp_path / "hog"
    reserve = free_bytes(tmp_path) - 512 * MIB
    store = ArtifactStore(tmp_path, "job_1", ArtifactLimits(min_free_bytes=reserve))
    written = 0

    def stream() -> Iterator[bytes]:
        nonlocal written
        for n in range(64):
            if n == 2:  # another writer takes 1 GiB of the file system
                with open(hog, "wb") as f:
                    os.posix_fallocate(f.fileno(), 0, 1024 * MIB)
            written += MIB // 4
            yield b"z" * (MIB // 4)

    try:
        with pytest.raises(ArtifactDiskFull):
            await store.write_chunks("stream.bin", stream())
    finally:
        hog.unlink(missing_ok=True)
    assert written <= 2 * MIB  # refused at the next check, not at the end
    assert list((tmp_path / "job_1").iterdir()) == []


class Writer(JobHandler):
    job_type = "writer"

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        await ctx.artifacts.write_chunks("out.bin", chunks(int(data["size"])))
        return {"ok": True}


def limited(config: Config, tmp_path: Path, **limits: int) -> Config:
    return dataclasses.replace(config, artifacts=dataclasses.replace(
        config.artifacts, dir=str(tmp_path / "artifacts"), **limits))  # fmt: skip


def registry_for(cfg: Config, tmp_path: Path) -> Any:
    # The limits as fleetd.plugins.discovery attaches them from the config.
    reg = registry_with(Writer(), Sandboxed(), Threaded())
    reg.artifacts_dir = tmp_path / "artifacts"
    reg.artifact_limits = ArtifactLimits(cfg.artifacts.job_max_bytes, cfg.artifacts.min_free_bytes)
    return reg


@pytest.mark.parametrize("job_type", ["writer", "sandboxed", "threaded"])
async def test_a_job_past_its_cap_fails_at_once_in_every_isolation(
    config: Config, tmp_path: Path, job_type: str
) -> None:
    cfg = limited(config, tmp_path, job_max_bytes=200_000)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    iso = IsolationConfig(scratch_dir=str(scratch))
    data = {"size": 300_000, "do": "artifact"}
    async with running_pool(cfg, registry_for(cfg, tmp_path), isolation=iso) as (engine, _):
        big = await engine.queue.enqueue({"type": job_type, "data": data, "max_retries": 3})
        small = await engine.queue.enqueue(
            {"type": job_type, "data": {**data, "size": 100_000}, "max_retries": 3}
        )
        failed = await wait_status(engine, big.job_id, JobStatus.FAILED, limit=30)
        done = await wait_status(engine, small.job_id, JobStatus.COMPLETED, limit=30)
    assert failed.attempts == 1, "a job over its cap is not retried"
    assert "job_max_bytes (200,000 bytes)" in (failed.error or "")
    assert done.status is JobStatus.COMPLETED
    assert not (tmp_path / "artifacts" / big.job_id / "out.bin").exists()
    assert not (tmp_path / "artifacts" / big.job_id / "big.bin").exists()


async def test_a_job_that_would_fill_the_disk_is_retried(config: Config, tmp_path: Path) -> None:
    (tmp_path / "artifacts").mkdir()
    cfg = limited(config, tmp_path, min_free_bytes=free_bytes(tmp_path) + 1024 * MIB)
    async with running_pool(cfg, registry_for(cfg, tmp_path)) as (engine, _):
        r = await engine.queue.enqueue({"type": "writer", "data": {"size": 10}, "max_retries": 1})
        job = await wait_status(engine, r.job_id, JobStatus.RETRYING, JobStatus.FAILED, limit=30)
    assert "min_free_bytes" in (job.error or "")
    assert job.status is JobStatus.RETRYING or job.attempts == 2


async def test_the_test_harness_holds_the_configs_limits(config: Config, tmp_path: Path) -> None:
    """fleetd.testing.Harness (plugin authors' tests): the limits of the worker."""
    from fleetd.testing import Harness

    class Big(JobHandler):
        job_type = "big"

        async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
            if data.get("artifact"):
                await ctx.artifacts.write_chunks("out.bin", chunks(300_000))
            return {"blob": "b" * int(data.get("result", 0))}

    cfg = dataclasses.replace(
        config,
        artifacts=dataclasses.replace(config.artifacts, job_max_bytes=200_000),
        worker=dataclasses.replace(config.worker, max_result_bytes=10_000),
    )
    with Harness([Big()], tmp_path=tmp_path, config=cfg) as h:
        with pytest.raises(ArtifactTooLarge):
            await h.run("big", {"artifact": True})
        with pytest.raises(PermanentError, match="max_result_bytes"):
            await h.run("big", {"result": 20_000})
        assert len((await h.run("big", {"result": 9_000}))["blob"]) == 9_000
