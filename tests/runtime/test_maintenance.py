"""Queue upkeep against the real test redis-server: retention and artifact sweeping."""

from __future__ import annotations

import os
import time
from pathlib import Path

import trio

from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus
from fleetd.runtime.maintenance import Maintenance, MaintenanceSettings


def _maintenance(
    engine: Engine, artifacts: Path | None, ttl: float = 0.0, retention: float = 0.0
) -> Maintenance:
    settings = MaintenanceSettings(
        interval=0.1, max_stalls=3, completed_ttl=ttl, failed_ttl=ttl, cancelled_ttl=ttl,
        reconnect_max_backoff=1.0, artifacts_dir=artifacts, artifacts_retention=retention,
    )  # fmt: skip
    return Maintenance(engine.link, engine.scripts, engine.ops, settings)


def _folder(root: Path, name: str, age: float) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "report.csv").write_text("a,b\n")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


async def test_sweep_deletes_only_old_folders_of_gone_jobs(engine: Engine, tmp_path: Path) -> None:
    live = await engine.queue.enqueue({"type": "noop", "data": {}})
    root = tmp_path / "artifacts"
    kept_live = _folder(root, live.job_id, age=7200)
    gone = _folder(root, "job_01GONEGONEGONEGONEGONEGONE", age=7200)
    fresh = _folder(root, "job_01FRESHFRESHFRESHFRESHFRE", age=10)
    other = _folder(root, "not-a-job", age=7200)
    swept = await _maintenance(engine, root).sweep_artifacts()
    assert swept == 1
    assert not gone.exists()
    assert kept_live.exists() and fresh.exists() and other.exists()


async def test_retention_deletes_old_folders_even_of_kept_jobs(
    engine: Engine, tmp_path: Path
) -> None:
    live = await engine.queue.enqueue({"type": "noop", "data": {}})
    younger = await engine.queue.enqueue({"type": "noop", "data": {}})
    root = tmp_path / "artifacts"
    expired = _folder(root, live.job_id, age=3 * 86400)
    kept = _folder(root, younger.job_id, age=86400)
    gone = _folder(root, "job_01GONEGONEGONEGONEGONEGONE", age=7200)
    other = _folder(root, "not-a-job", age=30 * 86400)
    swept = await _maintenance(engine, root, retention=2 * 86400).sweep_artifacts()
    assert swept == 2
    assert not expired.exists() and not gone.exists()
    assert kept.exists() and other.exists()
    assert await engine.queue.get(live.job_id) is not None  # the job itself stays


async def test_sweep_without_a_folder_is_a_no_op(engine: Engine, tmp_path: Path) -> None:
    assert await _maintenance(engine, tmp_path / "missing").sweep_artifacts() == 0
    assert await _maintenance(engine, None).sweep_artifacts() == 0


async def test_retention_prunes_finished_jobs_by_status(engine: Engine) -> None:
    r = await engine.queue.enqueue({"type": "noop", "data": {}})
    await engine.queue.cancel(r.job_id)
    pending = await engine.queue.enqueue({"type": "noop", "data": {}})
    await trio.sleep(0.01)
    counts = await _maintenance(engine, None, ttl=0.005).prune_once()
    assert counts == {"completed": 0, "failed": 0, "cancelled": 1, "workflows": 0}
    assert await engine.queue.get(r.job_id) is None
    job = await engine.queue.get(pending.job_id)
    assert job is not None and job.status is JobStatus.PENDING
