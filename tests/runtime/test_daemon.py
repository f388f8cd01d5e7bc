"""The daemon in-process: start-up order, readiness, reload, roles and heartbeats."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
from pathlib import Path

import pytest
import trio
from redis_server import RedisServerFactory

from fleetd.config import Config, load_config
from fleetd.jobs.model import JobStatus
from fleetd.runtime.daemon import Daemon


def _write_config(path: Path, cfg: Config, concurrency: int, level: str) -> None:
    path.write_text(
        f'[daemon]\nstate_dir = "{cfg.state_dir}"\nlog_level = "{level}"\n'
        f'[redis]\nurl = "{cfg.redis.url}"\nnamespace = "{cfg.redis.namespace}"\n'
        f"[worker]\nconcurrency = {concurrency}\n"
    )


async def test_ready_after_start_and_lists_itself(config: Config) -> None:
    daemon = Daemon(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        assert daemon.ready
        daemons = await daemon.engine.queue.daemons()
        assert [d["daemon_id"] for d in daemons] == [daemon.daemon_id]
        assert daemons[0]["pid"] == os.getpid()
        assert daemons[0]["metrics"]["jobs_processed"] == 0
        daemon.request_stop()
    assert not daemon.ready


async def test_sighup_reloads_concurrency_and_log_level(config: Config, tmp_path: Path) -> None:
    path = tmp_path / "fleetd.toml"
    _write_config(path, config, concurrency=2, level="info")
    cfg = load_config(path, env={})
    daemon = Daemon(cfg, config_path=path)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        assert daemon.pool is not None and daemon.pool.concurrency == 2
        _write_config(path, config, concurrency=7, level="debug")
        os.kill(os.getpid(), signal.SIGHUP)
        with trio.fail_after(5):
            while daemon.pool.concurrency != 7:
                await trio.sleep(0.01)
        assert logging.getLogger().level == logging.DEBUG
        # A broken file is refused; the running config stays.
        path.write_text("[worker]\nconcurrency = 0\n")
        daemon.reload()
        assert daemon.pool.concurrency == 7
        daemon.request_stop()
    logging.getLogger().setLevel(logging.WARNING)


async def test_api_only_role_runs_no_jobs(config: Config) -> None:
    cfg = dataclasses.replace(config, daemon=dataclasses.replace(config.daemon, roles=("api",)))
    daemon = Daemon(cfg)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        r = await daemon.engine.queue.enqueue({"type": "noop", "data": {}})
        await trio.sleep(0.5)
        job = await daemon.engine.queue.get(r.job_id)
        assert job is not None and job.status is JobStatus.PENDING
        assert daemon.pool is None
        daemon.request_stop()


@pytest.mark.slow
async def test_waits_for_redis_then_starts(
    own_redis: RedisServerFactory, namespace: str, tmp_path: Path
) -> None:
    server = own_redis()
    server.stop()
    cfg = Config.default()
    cfg = dataclasses.replace(
        cfg,
        redis=dataclasses.replace(cfg.redis, url=server.url, namespace=namespace,
                                  reconnect_max_backoff=0.5),
        daemon=dataclasses.replace(cfg.daemon, state_dir=str(tmp_path)),
    )  # fmt: skip
    daemon = Daemon(cfg)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(daemon.run)
        await trio.sleep(1.5)
        assert not daemon.ready  # still waiting, not crashed
        await trio.to_thread.run_sync(server.start)
        with trio.fail_after(10):
            while not daemon.ready:
                await trio.sleep(0.05)
        r = await daemon.engine.queue.enqueue({"type": "noop", "data": {}})
        with trio.fail_after(10):
            while (job := await daemon.engine.queue.get(r.job_id)) is None or (
                job.status is not JobStatus.COMPLETED
            ):
                await trio.sleep(0.02)
        daemon.request_stop()


async def test_stop_while_waiting_for_redis_exits_cleanly(
    own_redis: RedisServerFactory, namespace: str, tmp_path: Path
) -> None:
    server = own_redis()
    server.stop()
    cfg = Config.default()
    cfg = dataclasses.replace(
        cfg,
        redis=dataclasses.replace(cfg.redis, url=server.url, namespace=namespace),
        daemon=dataclasses.replace(cfg.daemon, state_dir=str(tmp_path)),
    )
    daemon = Daemon(cfg)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(daemon.run)
            await trio.sleep(0.3)
            daemon.request_stop()
    assert not daemon.ready


async def test_sigusr1_logs_the_daemon_state(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = Daemon(config)
    with caplog.at_level(logging.INFO, logger="fleetd.daemon"):
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            os.kill(os.getpid(), signal.SIGUSR1)
            with trio.fail_after(5):
                while not any(r.getMessage().startswith("state: ") for r in caplog.records):
                    await trio.sleep(0.01)
            daemon.request_stop()
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("state: ")]
    state = json.loads(line.removeprefix("state: "))
    assert state["daemon_id"] == daemon.daemon_id
    assert state["ready"] is True
    assert state["concurrency"] == config.worker.concurrency
    assert state["running"] == []
