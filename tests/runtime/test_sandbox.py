"""Isolated jobs (fleetd.runtime.sandbox) in a worker pool in this process, against the
real test redis-server, with real child processes: resource errors classified and
retried per policy, kills on timeout and cancel, a clean environment and scratch
directory, progress and artifacts from the child, thread isolation."""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any

import pytest
import trio
from pool import events_of, registry_with, running_pool, wait_status
from sandbox_handlers import SECRETS, Flaky, Sandboxed, Threaded
from sandbox_pids import sandbox_children

from fleetd.backend.redis_link import RedisUnavailable
from fleetd.config import Config
from fleetd.config.isolation_section import IsolationConfig
from fleetd.engine import Engine
from fleetd.jobs.context import JobContext
from fleetd.jobs.model import JobStatus

# A child starts in ~0.3-1 s (a fresh interpreter importing fleetd); generous bounds.
LIMIT = 30


def isolation(tmp_path: Path, **changes: Any) -> IsolationConfig:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    return IsolationConfig(scratch_dir=str(scratch), **changes)


def registry(tmp_path: Path) -> Any:
    reg = registry_with(Sandboxed(), Threaded())
    reg.artifacts_dir = tmp_path / "artifacts"
    return reg


async def run_one(
    config: Config, tmp_path: Path, data: dict[str, Any], *statuses: JobStatus, **job: Any
) -> tuple[Any, list[dict[str, Any]]]:
    iso = job.pop("isolation", None) or isolation(tmp_path)
    async with running_pool(config, registry(tmp_path), isolation=iso) as (engine, _pool):
        r = await engine.queue.enqueue({"type": job.pop("type", "sandboxed"), "data": data, **job})
        done = await wait_status(engine, r.job_id, *statuses, limit=LIMIT)
        return done, events_of(engine, r.job_id)


def rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def test_a_process_job_runs_in_a_child_in_its_own_scratch_dir(
    config: Config, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    data = {"do": "progress", "scratch": True}
    async with running_pool(config, registry(tmp_path), isolation=isolation(tmp_path)) as (
        engine,
        _pool,
    ):
        r = await engine.queue.enqueue({"type": "sandboxed", "data": data})
        job = await wait_status(engine, r.job_id, JobStatus.COMPLETED, limit=LIMIT)
        events = events_of(engine, r.job_id)
        scratch = Path(job.result["cwd"])
        assert scratch.name == f"c{job.result['pid']}-1"  # the child's first
        with trio.fail_after(5):  # removed after the job (by the child, off its reply)
            while scratch.exists():
                await trio.sleep(0.02)
    # The handler's log line, written by the child to the stderr it shares with us.
    assert f"hello from pid {job.result['pid']}" in capfd.readouterr().err
    assert job.result["pid"] != os.getpid()
    assert scratch.parent.parent == tmp_path / "scratch"  # the sandbox's own directory
    assert list((tmp_path / "scratch").iterdir()) == []
    artifact = job.result["artifacts"][0]
    assert artifact["name"] == "out.txt"
    assert Path(artifact["path"]).read_text() == "made in a child\n"
    progress = [e for e in events if e["type"] == "job.progress"]
    assert progress and progress[0]["data"]["percent"] == 40


async def test_a_process_job_s_last_progress_is_written_before_its_outcome(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler that reports progress as its last act and returns at once: the
    progress reaches Redis before the job's completion (the child's end line, waited
    for by the sandbox), for every job, never dropped as the slot changes hands — even
    with the daemon slow to write it (as on a loaded box)."""
    data = {"do": "progress", "linger": 0}
    real = JobContext.progress

    async def slow(self: JobContext, percent: float, message: str = "") -> bool:
        await trio.sleep(0.3)
        return await real(self, percent, message)

    monkeypatch.setattr(JobContext, "progress", slow)
    async with running_pool(config, registry(tmp_path), isolation=isolation(tmp_path)) as (
        engine,
        _pool,
    ):
        ids = [(await engine.queue.enqueue({"type": "sandboxed", "data": data})).job_id
               for _ in range(8)]  # fmt: skip
        for job_id in ids:
            job = await wait_status(engine, job_id, JobStatus.COMPLETED, limit=LIMIT)
            assert job.progress is not None and job.progress["percent"] == 40, job.progress
            kinds = [e["type"] for e in events_of(engine, job_id)]
            assert kinds.index("job.progress") < kinds.index("job.completed"), kinds


async def test_a_progress_write_that_fails_loses_the_progress_not_the_sandbox(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis refusing a progress write (a blip) costs that progress line: the relay goes
    on, the job and the next ones complete in their warm child."""

    async def refused(self: JobContext, percent: float, message: str = "") -> bool:
        raise RedisUnavailable("Redis connection lost (test)")

    monkeypatch.setattr(JobContext, "progress", refused)
    data = {"do": "progress", "linger": 0}
    async with running_pool(config, registry(tmp_path), isolation=isolation(tmp_path)) as (
        engine,
        _pool,
    ):
        for _ in range(3):
            r = await engine.queue.enqueue({"type": "sandboxed", "data": data})
            job = await wait_status(engine, r.job_id, JobStatus.COMPLETED, limit=LIMIT)
            assert job.progress is None


async def test_memory_hog_is_resource_exhausted_and_not_retried(
    config: Config, tmp_path: Path
) -> None:
    before = rss_kib()
    job, events = await run_one(config, tmp_path, {"do": "hog"}, JobStatus.FAILED)
    assert job.error.startswith("resource_exhausted: memory"), job.error
    assert job.attempts == 1 and job.retry_count == 0  # memory exhaustion: no retry
    assert events[-1]["type"] == "job.failed"
    assert events[-1]["data"]["error"].startswith("resource_exhausted: memory")
    # The hog filled 512 MiB in its child; this process (the daemon) grew by far less.
    assert rss_kib() - before < 100 * 1024


async def test_other_jobs_complete_while_a_child_fills_its_memory(
    config: Config, tmp_path: Path
) -> None:
    iso = isolation(tmp_path)
    async with running_pool(config, registry(tmp_path), isolation=iso) as (engine, _pool):
        hog = await engine.queue.enqueue({"type": "sandboxed", "data": {"do": "hog"}})
        await wait_status(engine, hog.job_id, JobStatus.PROCESSING)
        before = rss_kib()
        done = []
        for _ in range(20):  # inline no-ops, one after the other, while the hog grows
            r = await engine.queue.enqueue({"type": "noop", "data": {}})
            done.append(await wait_status(engine, r.job_id, JobStatus.COMPLETED))
        failed = await wait_status(engine, hog.job_id, JobStatus.FAILED, limit=LIMIT)
    assert len(done) == 20
    assert failed.error.startswith("resource_exhausted: memory")
    assert rss_kib() - before < 100 * 1024


async def test_cpu_loop_is_killed_at_its_cpu_limit(config: Config, tmp_path: Path) -> None:
    job, _ = await run_one(
        config, tmp_path, {"do": "spin"}, JobStatus.FAILED, max_retries=0, timeout="60s"
    )
    assert job.error.startswith("resource_exhausted: cpu"), job.error


async def test_blocked_child_is_killed_when_its_timeout_passes(
    config: Config, tmp_path: Path
) -> None:
    with trio.fail_after(LIMIT):  # far below the handler's 3600 s sleep
        job, events = await run_one(
            config, tmp_path, {"do": "sleep"}, JobStatus.FAILED, max_retries=0, timeout="1s"
        )
    assert job.error == "timeout: timed out after 1s"
    assert events[-1]["data"]["error"] == "timeout: timed out after 1s"


@pytest.mark.parametrize("blocked", ["sleep", "recv"])
async def test_admin_cancel_kills_a_blocked_child_and_frees_its_slot(
    config: Config, tmp_path: Path, blocked: str
) -> None:
    """Blocked in time.sleep or in a socket read without a timeout: deaf to the
    cancellation a SIGTERM brings, killed after the grace."""
    iso = isolation(tmp_path, max_children=1, kill_grace=0.5)
    async with running_pool(config, registry(tmp_path), isolation=iso) as (engine, _pool):
        r = await engine.queue.enqueue({"type": "sandboxed", "data": {"do": "env"}})
        first = await wait_status(engine, r.job_id, JobStatus.COMPLETED, limit=LIMIT)
        pid = first.result["pid"]
        r = await engine.queue.enqueue({"type": "sandboxed", "data": {"do": blocked}})
        await wait_status(engine, r.job_id, JobStatus.PROCESSING)
        await trio.sleep(0.5)  # the child is inside the blocking call now
        await engine.queue.cancel(r.job_id)
        await wait_status(engine, r.job_id, JobStatus.CANCELLED, limit=10)
        with pytest.raises(ProcessLookupError):  # the warm child that ran it: killed
            for _ in range(100):
                os.kill(pid, 0)
                await trio.sleep(0.05)
        # The one slot is free again: the next job runs.
        r = await engine.queue.enqueue({"type": "sandboxed", "data": {}})
        await wait_status(engine, r.job_id, JobStatus.COMPLETED, limit=LIMIT)


async def child_pid(marker: Path) -> int:
    pid_file = marker.with_suffix(".pid")
    with trio.fail_after(LIMIT):
        while not pid_file.exists() or not pid_file.read_text():
            await trio.sleep(0.02)
    return int(pid_file.read_text())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_sigterm_on_timeout_lets_the_handler_clean_up(config: Config, tmp_path: Path) -> None:
    iso = isolation(tmp_path, max_children=1, kill_grace=30.0)
    marker = tmp_path / "cleanup"
    async with running_pool(config, registry(tmp_path), isolation=iso) as (engine, _pool):
        # A warm child first: a new one's start (seconds on a loaded box) would eat the
        # job's time limit before the handler runs.
        r = await engine.queue.enqueue({"type": "sandboxed", "data": {}})
        await wait_status(engine, r.job_id, JobStatus.COMPLETED, limit=LIMIT)
        data = {"do": "term_cleanup", "marker": str(marker)}
        r = await engine.queue.enqueue(
            {"type": "sandboxed", "data": data, "timeout": "2s", "max_retries": 0}
        )
        pid = await child_pid(marker)
        job = await wait_status(engine, r.job_id, JobStatus.FAILED, limit=LIMIT)
        assert job.error == "timeout: timed out after 2s"
        with trio.fail_after(10):  # far below the 30 s grace: SIGTERM, not SIGKILL
            while not marker.exists():
                await trio.sleep(0.02)
        assert marker.read_text() == "cleaned up"
        # The child cleaned up and was not killed: it stays warm. (The next job may start
        # in another child while this one is still handing back the cancelled job's
        # reply: the slot was freed at the timeout.)
        r = await engine.queue.enqueue({"type": "sandboxed", "data": {}})
        await wait_status(engine, r.job_id, JobStatus.COMPLETED, limit=LIMIT)
        assert alive(pid)


async def test_a_child_deaf_to_sigterm_is_killed_after_the_grace_and_replaced(
    config: Config, tmp_path: Path
) -> None:
    grace = 2.0
    iso = isolation(tmp_path, max_children=1, kill_grace=grace)
    marker = tmp_path / "deaf"
    async with running_pool(config, registry(tmp_path), isolation=iso) as (engine, _pool):
        r = await engine.queue.enqueue({"type": "sandboxed", "data": {}})  # a warm child
        await wait_status(engine, r.job_id, JobStatus.COMPLETED, limit=LIMIT)
        r = await engine.queue.enqueue(
            {"type": "sandboxed", "data": {"do": "term_deaf", "marker": str(marker)}}
        )
        pid = await child_pid(marker)
        await engine.queue.cancel(r.job_id)
        # The job is over and its slot free at once, while its child still has its grace.
        await wait_status(engine, r.job_id, JobStatus.CANCELLED, limit=grace / 2)
        assert alive(pid)
        with trio.fail_after(LIMIT):  # SIGKILLed once the grace passed
            while alive(pid):
                await trio.sleep(0.05)
        assert not marker.exists()  # killed, never woken: its `finally` did not run
        # A replacement child was started without a job waiting for it.
        with trio.fail_after(LIMIT):
            while not [p for p in sandbox_children() if p != pid]:
                await trio.sleep(0.05)
        r = await engine.queue.enqueue({"type": "sandboxed", "data": {}})
        done = await wait_status(engine, r.job_id, JobStatus.COMPLETED, limit=LIMIT)
    assert done.result["pid"] != pid


async def test_os_exit_is_a_crash_and_retried(config: Config, tmp_path: Path) -> None:
    job, events = await run_one(config, tmp_path, {"do": "exit"}, JobStatus.FAILED, max_retries=1)
    assert job.error == "crash: the job's process exited with code 3"
    assert job.attempts == 2  # retried once, per the default policy
    assert [e["type"] for e in events].count("job.retrying") == 1


async def test_no_retry_policy_from_config(config: Config, tmp_path: Path) -> None:
    iso = isolation(tmp_path, no_retry=("sandboxed=crash",))
    job, _ = await run_one(
        config, tmp_path, {"do": "exit"}, JobStatus.FAILED, max_retries=2, isolation=iso
    )
    assert job.attempts == 1


async def test_retry_rules_give_a_kind_its_own_delay_and_cap(
    config: Config, tmp_path: Path
) -> None:
    """A crash retried after the rule's 200 ms (not the 1 s backoff), once only though
    the job allows 3; an inline handler's exception class by its own rule; a timeout
    not retried."""
    iso = isolation(tmp_path, retry=(
        "sandboxed=crash:200ms/1", "flaky=FlakyError:300ms/1", "flaky=timeout:/0",
    ))  # fmt: skip
    job, events = await run_one(
        config, tmp_path, {"do": "exit"}, JobStatus.FAILED, max_retries=3, isolation=iso
    )
    assert job.attempts == 2 and job.error.startswith("crash:")
    [retrying] = [e for e in events if e["type"] == "job.retrying"]
    assert retrying["data"]["run_at"] - int(retrying["ts"]) == 200
    reg = registry(tmp_path)
    reg.register(Flaky(), source="tests")
    async with running_pool(config, reg, isolation=iso) as (engine, _pool):
        r = await engine.queue.enqueue({"type": "flaky", "data": {}, "max_retries": 3})
        done = await wait_status(engine, r.job_id, JobStatus.FAILED, limit=LIMIT)
        [retrying] = [e for e in events_of(engine, r.job_id) if e["type"] == "job.retrying"]
        hung = await engine.queue.enqueue(
            {"type": "flaky", "data": {"hang": True}, "max_retries": 3, "timeout": "500ms"}
        )
        timed_out = await wait_status(engine, hung.job_id, JobStatus.FAILED, limit=LIMIT)
    assert timed_out.attempts == 1 and timed_out.error.startswith("timeout:")
    assert done.attempts == 2 and "flaky on purpose" in done.error
    assert retrying["data"]["run_at"] - int(retrying["ts"]) == 300


async def test_retry_after_sets_the_delay(config: Config, tmp_path: Path) -> None:
    job, events = await run_one(config, tmp_path, {"do": "retry_after"}, JobStatus.RETRYING)
    retrying = events[-1]
    assert retrying["type"] == "job.retrying"
    assert retrying["data"]["run_at"] - int(retrying["ts"]) == 7000
    assert "upstream says 421" in job.error


async def test_secrets_are_absent_from_the_child(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    iso = isolation(tmp_path, max_jobs_per_child=1)
    job, _ = await run_one(config, tmp_path, {"do": "env"}, JobStatus.COMPLETED, isolation=iso)
    env = job.result["env"]
    assert not [k for k in env if k.startswith("FLEETD_") or k in SECRETS]
    assert not [v for v in SECRETS.values() if v in repr(env)]
    # Nor in the environment block the child process was started with.
    assert not [v for v in SECRETS.values() if v in job.result["initial"]]
    assert "PATH" in env


async def test_children_retire_after_their_jobs_and_leave_no_scratch(
    config: Config, tmp_path: Path
) -> None:
    """`max_jobs_per_child` 2: a child retires after its second job — its cleanup thread
    finishes the scratch directories queued before it exits — and a new one takes the
    next jobs."""
    iso = isolation(tmp_path, max_children=1, max_jobs_per_child=2)
    async with running_pool(config, registry(tmp_path), isolation=iso) as (engine, _pool):
        pids = []
        for _ in range(6):
            r = await engine.queue.enqueue({"type": "sandboxed", "data": {}})
            job = await wait_status(engine, r.job_id, JobStatus.COMPLETED, limit=LIMIT)
            pids.append(job.result["pid"])
        assert len(set(pids)) == 3 and pids[0] == pids[1] and pids[2] == pids[3], pids
        with trio.fail_after(5):  # the retired children's are gone, their pre-made one too
            while any(d for p in set(pids[:4]) for d in (tmp_path / "scratch").glob(f"*/c{p}-*")):
                await trio.sleep(0.02)


async def test_a_job_starts_with_none_of_the_previous_job_s_context(
    config: Config, tmp_path: Path
) -> None:
    """Jobs share a child's lasting loop, each in a task of its own: a contextvar one
    handler sets is gone for the next job in the same child."""
    iso = isolation(tmp_path, max_children=1)
    async with running_pool(config, registry(tmp_path), isolation=iso) as (engine, _pool):
        results = []
        for _ in range(3):
            r = await engine.queue.enqueue({"type": "sandboxed", "data": {"do": "ctxvar"}})
            job = await wait_status(engine, r.job_id, JobStatus.COMPLETED, limit=LIMIT)
            results.append(job.result)
    assert len({r["pid"] for r in results}) == 1  # one child ran them all
    assert [r["before"] for r in results] == [None, None, None]


async def test_what_a_handler_prints_goes_to_stderr_and_children_end_with_the_pool(
    config: Config, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A child's jobs and replies travel on its own pipes: a handler printing 100 KB
    to stdout breaks nothing (it reaches the daemon's stderr). Idle children past
    `idle_timeout` are let go; the rest end with the pool, none left behind."""
    iso = isolation(tmp_path, max_children=2, idle_timeout=0.5)
    async with running_pool(config, registry(tmp_path), isolation=iso) as (engine, _pool):
        r = await engine.queue.enqueue({"type": "sandboxed", "data": {"do": "print"}})
        job = await wait_status(engine, r.job_id, JobStatus.COMPLETED, limit=LIMIT)
        assert sandbox_children() == [job.result["pid"]]
        with trio.fail_after(LIMIT):  # idle for longer than idle_timeout: let go
            while sandbox_children():
                await trio.sleep(0.05)
        r = await engine.queue.enqueue({"type": "sandboxed", "data": {}})
        again = await wait_status(engine, r.job_id, JobStatus.COMPLETED, limit=LIMIT)
        assert again.result["pid"] != job.result["pid"]  # a fresh child took it
        assert sandbox_children() == [again.result["pid"]]
    assert sandbox_children() == []
    assert not alive(again.result["pid"])
    assert "printed by a handler xxx" in capfd.readouterr().err


async def test_a_forged_reply_runs_nothing_in_the_daemon(config: Config, tmp_path: Path) -> None:
    """A handler that writes a pickle into its reply pipe (one that would create a file
    when unpickled) gets nothing run in the daemon: replies are JSON, checked. The job
    fails as a crash, the child is killed and replaced, and the next job runs."""
    marker = tmp_path / "forged"
    iso = isolation(tmp_path, max_children=1)
    async with running_pool(config, registry(tmp_path), isolation=iso) as (engine, _pool):
        r = await engine.queue.enqueue(
            {"type": "sandboxed", "data": {"do": "forge", "marker": str(marker)},
             "max_retries": 0}
        )  # fmt: skip
        failed = await wait_status(engine, r.job_id, JobStatus.FAILED, limit=LIMIT)
        r = await engine.queue.enqueue({"type": "sandboxed", "data": {}})
        await wait_status(engine, r.job_id, JobStatus.COMPLETED, limit=LIMIT)
    assert failed.error.startswith("crash: the job's process sent a reply fleetd does not read")
    assert not marker.exists()


async def test_thread_isolation_runs_off_the_trio_thread(config: Config, tmp_path: Path) -> None:
    job, events = await run_one(
        config, tmp_path, {"do": "progress", "linger": 0}, JobStatus.COMPLETED, type="threaded"
    )
    assert job.result["pid"] == os.getpid()
    assert [e for e in events if e["type"] == "job.progress"]


async def test_without_a_sandbox_every_type_runs_inline(config: Config, tmp_path: Path) -> None:
    reg = registry(tmp_path)
    async with running_pool(config, reg) as (engine, _pool):
        data = {"do": "progress", "linger": 0}
        r = await engine.queue.enqueue({"type": "sandboxed", "data": data})
        job = await wait_status(engine, r.job_id, JobStatus.COMPLETED, limit=LIMIT)
    assert job.result["pid"] == os.getpid()
    assert isinstance(engine, Engine)
