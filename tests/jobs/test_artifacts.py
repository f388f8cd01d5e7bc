"""The artifact store: streamed, atomic writes under [artifacts] dir, one folder per job,
and their records merged into the job's result by the real worker pool."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from pool import running_pool, wait_status

from fleetd import JobContext, JobHandler
from fleetd.config import Config
from fleetd.engine import build_registry
from fleetd.jobs.artifacts import ArtifactStore
from fleetd.jobs.model import JobStatus
from fleetd.testing import Harness


class Exporter(JobHandler):
    job_type = "export"

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        mode = data.get("mode")
        if mode == "clash":
            await ctx.artifacts.write_text("a.txt", "x")
            return {"artifacts": "mine"}
        await ctx.artifacts.write_bytes("small.bin", b"\x00\x01")

        def rows() -> Iterator[bytes]:
            for i in range(10_000):
                yield f"{i},vehicle-{i}\n".encode()

        await ctx.artifacts.write_chunks("rows.csv", rows())
        async with ctx.artifacts.open("stream.txt") as f:
            for part in (b"one ", b"two ", b"three"):
                await f.write(part)
        own = [{"name": "elsewhere", "path": "/srv/x", "size": 1, "sha256": "0"}]
        return {"rows": 10_000, "artifacts": own} if mode == "own" else {"rows": 10_000}


def sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


async def test_results_list_the_artifacts_next_to_the_handlers_keys(
    config: Config, tmp_path: Path
) -> None:
    cfg = dataclasses.replace(
        config, artifacts=dataclasses.replace(config.artifacts, dir=str(tmp_path / "a"))
    )
    registry = build_registry(cfg)
    registry.register(Exporter(), source="tests")
    async with running_pool(cfg, registry) as (engine, _):
        plain = await engine.queue.enqueue({"type": "export"})
        own = await engine.queue.enqueue({"type": "export", "data": {"mode": "own"}})
        clash = await engine.queue.enqueue({"type": "export", "data": {"mode": "clash"}})
        job = await wait_status(engine, plain.job_id, JobStatus.COMPLETED)
        with_own = await wait_status(engine, own.job_id, JobStatus.COMPLETED)
        failed = await wait_status(engine, clash.job_id, JobStatus.FAILED)
    assert job.result["rows"] == 10_000
    listed = {a["name"]: a for a in job.result["artifacts"]}
    assert list(listed) == ["small.bin", "rows.csv", "stream.txt"]
    for a in listed.values():
        assert Path(a["path"]).parent == tmp_path / "a" / plain.job_id
        assert a["size"] == os.path.getsize(a["path"]) and a["sha256"] == sha(a["path"])
    assert Path(listed["stream.txt"]["path"]).read_bytes() == b"one two three"
    assert Path(listed["rows.csv"]["path"]).read_text().splitlines()[-1] == "9999,vehicle-9999"
    assert with_own.result["artifacts"][0]["name"] == "elsewhere"
    assert [a["name"] for a in with_own.result["artifacts"]][1:] == list(listed)
    assert failed.attempts == 1 and "uses the key 'artifacts'" in (failed.error or "")


async def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, "job_1")

    async def chunks() -> AsyncIterator[bytes]:
        yield b"partial"
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        await store.write_chunks("report.csv", chunks())
    assert list((tmp_path / "job_1").iterdir()) == [] and store.recorded == []


async def test_a_name_written_twice_is_replaced_whole(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, "job_1")
    await store.write_text("r.txt", "first version")
    second = await store.write_text("r.txt", "second")
    assert [a.size for a in store.recorded] == [6] and Path(second.path).read_text() == "second"


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "../x", "tab\there", "x" * 201])
async def test_names_are_plain_file_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="artifact name"):
        await ArtifactStore(tmp_path, "job_1").write_text(name, "x")


async def test_add_file_copies_what_a_library_wrote(tmp_path: Path) -> None:
    source = tmp_path / "made-by-openpyxl.xlsx"
    source.write_bytes(os.urandom(3_000_000))
    store = ArtifactStore(tmp_path / "store", "job_1")
    artifact = await store.add_file("report.xlsx", source)
    assert artifact.size == 3_000_000 and artifact.sha256 == sha(str(source))


async def test_the_store_writes_in_threads(tmp_path: Path) -> None:
    """A slow chunk source does not block the trio thread: a ticker keeps ticking."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.01)
            ticks += 1

    def slow() -> Iterator[bytes]:
        import time

        for _ in range(5):
            time.sleep(0.04)
            yield b"x"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await ArtifactStore(tmp_path, "job_1").write_chunks("slow.txt", slow())
        nursery.cancel_scope.cancel()
    assert ticks >= 10


async def test_notes_survive_a_rerun(tmp_path: Path) -> None:
    class Once(JobHandler):
        job_type = "once"

        async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
            if await ctx.recall("done"):
                return {"skipped": True}
            await ctx.remember("done", {"attempt": ctx.job.attempts})
            return {"skipped": False}

    with Harness([Once()], tmp_path=tmp_path) as h:
        assert await h.run("once") == {"skipped": False}
        assert await h.rerun(h.last_job_id) == {"skipped": True}
        assert await h.run("once") == {"skipped": False}  # another job, its own notes
