"""`fleetd jobs artifact` and what `fleetd cleanup` does to artifact files, as
subprocesses against the shared test Redis; the jobs run in an in-process worker pool
whose [artifacts] dir is the one the CLI reads (`<state_dir>/artifacts`)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import trio
from conftest import fleetd_env
from daemons import run_cli
from pool import running_pool, wait_status

from fleetd import JobContext, JobHandler
from fleetd.config import Config
from fleetd.engine import build_registry
from fleetd.jobs.artifacts import artifacts_root
from fleetd.jobs.model import JobStatus

REPORT = "vehicle,km\nV1,120\n"


class Exporter(JobHandler):
    job_type = "export"

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        await ctx.artifacts.write_text("report.csv", REPORT)
        if data.get("two"):
            await ctx.artifacts.write_bytes("extra.bin", b"\x00\x01\x02")
        return {}


async def run_exports(config: Config, *datas: dict[str, Any]) -> list[str]:
    registry = build_registry(config)
    registry.register(Exporter(), source="tests")
    async with running_pool(config, registry) as (engine, _pool):
        ids = [(await engine.queue.enqueue({"type": "export", "data": d})).job_id for d in datas]
        for job_id in ids:
            await wait_status(engine, job_id, JobStatus.COMPLETED)
    return ids


async def cli(config: Config, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = fleetd_env(config)
    return await trio.to_thread.run_sync(lambda: run_cli(env, *args, cwd=cwd))


def one_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2 and done.stdout == "", done
    [line] = done.stderr.splitlines()
    return line


async def test_download_an_artifact_to_a_file_or_stdout(config: Config, tmp_path: Path) -> None:
    one, two = await run_exports(config, {}, {"two": 1})
    done = await cli(config, tmp_path, "jobs", "artifact", one)  # default: its name, here
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.csv").read_text() == REPORT
    assert done.stderr.startswith(f"report.csv: {len(REPORT)} bytes (sha256 ")

    done = await cli(config, tmp_path, "jobs", "artifact", one, "report.csv", "-o", "-")
    assert (done.returncode, done.stdout) == (0, REPORT)

    done = await cli(config, tmp_path, "jobs", "artifact", two, "extra.bin", "-o", "e.bin")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "e.bin").read_bytes() == b"\x00\x01\x02"

    several = one_error(await cli(config, tmp_path, "jobs", "artifact", two))
    assert "has 2 artifacts; name one: report.csv, extra.bin" in several
    unknown = one_error(await cli(config, tmp_path, "jobs", "artifact", one, "nope.csv"))
    assert "no artifact 'nope.csv'" in unknown


async def test_a_changed_or_missing_file_is_an_error(config: Config, tmp_path: Path) -> None:
    [job_id] = await run_exports(config, {})
    path = artifacts_root(config) / job_id / "report.csv"
    path.write_text(REPORT.replace("120", "999"))
    changed = one_error(await cli(config, tmp_path, "jobs", "artifact", job_id, "-o", "out"))
    assert "changed since the job wrote it" in changed
    path.unlink()
    missing = one_error(await cli(config, tmp_path, "jobs", "artifact", job_id, "-o", "out"))
    assert "is not on this host" in missing and "share [artifacts] dir" in missing
    noop = await cli(config, tmp_path, "enqueue", "noop")
    noop_id = noop.stdout.split()[0]
    none = one_error(await cli(config, tmp_path, "jobs", "artifact", noop_id))
    assert none == f"fleetd: job {noop_id} has no artifact"


async def test_cleanup_deletes_the_jobs_files_too(config: Config, tmp_path: Path) -> None:
    old, kept = await run_exports(config, {}, {"two": 1})
    root = artifacts_root(config)
    assert sorted(p.name for p in root.iterdir()) == sorted([old, kept])
    # An earlier cleanup's leftover: a folder whose job is long gone.
    (root / "job_01LEFTOVERLEFTOVERLEFTOVE").mkdir()
    stray = root / "notes"  # not a job's folder: never touched
    stray.mkdir()
    await trio.sleep(0.01)  # cleanup takes jobs finished strictly before now - older_than
    done = await cli(config, tmp_path, "cleanup", "--older-than", "5s")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "deleted 0 finished job(s) older than 5s",
        "deleted the artifact folders of 1 job(s) on this host",
    ]
    assert sorted(p.name for p in root.iterdir()) == sorted([old, kept, "notes"])
    done = await cli(config, tmp_path, "cleanup", "--older-than", "0s", "--json")
    assert done.returncode == 0, done.stderr
    assert '"deleted": 2' in done.stdout
    assert done.stderr == "deleted the artifact folders of 2 job(s) on this host\n"
    assert sorted(p.name for p in root.iterdir()) == ["notes"]
    gone = one_error(await cli(config, tmp_path, "jobs", "artifact", old))
    assert gone == f"fleetd: no job {old}"
