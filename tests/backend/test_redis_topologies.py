"""RedisLink against a Sentinel-managed primary and a Redis Cluster: real servers on
loopback, an in-process Daemon running noop jobs through `redis+sentinel://` and
`redis+cluster://` URLs."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
from conftest import make_config
from redis_server import (
    HOST,
    REDIS_BINARY,
    RedisServerFactory,
    RespConnection,
    _free_port,
)
from redis_topology import wait_until

from fleetd.backend.redis_link import RedisLink, RedisUnavailable
from fleetd.jobs.model import JobStatus
from fleetd.runtime.daemon import Daemon

pytestmark = pytest.mark.slow

SERVICE = "fleetd-primary"
START_TIMEOUT = 10.0


def _wait_for(what: str, check: Callable[[], object], timeout: float = START_TIMEOUT) -> None:
    wait_until(what, lambda: bool(check()), timeout)


@pytest.fixture
def sentinel_port(own_redis: RedisServerFactory, tmp_path: Path) -> Iterator[int]:
    """A sentinel process monitoring a fresh primary as SERVICE; yields its port."""
    primary = own_redis()
    workdir = tmp_path / "sentinel"
    workdir.mkdir()
    conf = workdir / "sentinel.conf"
    for _ in range(5):  # the port picked can be taken before the sentinel binds it
        port = _free_port()
        conf.write_text(
            f"port {port}\nbind {HOST}\ndir {workdir}\n"
            f"sentinel monitor {SERVICE} {HOST} {primary.port} 1\n"
        )
        proc = subprocess.Popen(
            [REDIS_BINARY, str(conf), "--sentinel", "--logfile", str(workdir / "sentinel.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def master_known(port: int = port) -> bool:
            with RespConnection(port) as conn:
                reply = conn.command("SENTINEL", "get-master-addr-by-name", SERVICE)
            return reply == [HOST.encode(), str(primary.port).encode()]

        try:
            _wait_for("the sentinel", master_known)
            break
        except AssertionError:
            proc.kill()
            proc.wait()
    else:
        raise AssertionError("sentinel did not start; see " + str(workdir / "sentinel.log"))
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def cluster_url(own_redis: RedisServerFactory, tmp_path: Path) -> str:
    """A one-node Redis Cluster owning all 16384 slots."""
    nodes = tmp_path / "nodes.conf"
    server = own_redis(extra_args=["--cluster-enabled", "yes", "--cluster-config-file", str(nodes)])
    server.command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)

    def cluster_ok() -> bool:
        info = server.command("CLUSTER", "INFO")
        assert isinstance(info, bytes)
        return b"cluster_state:ok" in info

    _wait_for("cluster_state:ok", cluster_ok)
    return f"redis+cluster://{HOST}:{server.port}"


async def _until(daemon: Daemon, job_id: str, status: JobStatus) -> int:
    with trio.fail_after(10):
        while (job := await daemon.engine.queue.get(job_id)) is None or job.status is not status:
            await trio.sleep(0.02)
    return job.attempts


async def test_daemon_runs_jobs_through_sentinel(
    sentinel_port: int, namespace: str, tmp_path: Path
) -> None:
    url = f"redis+sentinel://{HOST}:{sentinel_port}/{SERVICE}/0"
    daemon = Daemon(make_config(url, namespace, tmp_path / "state"))
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        r = await daemon.engine.queue.enqueue({"type": "noop", "data": {}})
        await _until(daemon, r.job_id, JobStatus.COMPLETED)
        daemon.request_stop()


async def test_daemon_runs_retries_and_cancels_jobs_on_a_cluster(
    cluster_url: str, namespace: str, tmp_path: Path
) -> None:
    cfg = make_config(cluster_url, namespace, tmp_path / "state")
    daemon = Daemon(cfg)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        queue = daemon.engine.queue
        done = await queue.enqueue({"type": "noop", "data": {}})
        retried = await queue.enqueue({"type": "noop", "data": {"fail_attempts": 1}})
        run_at = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        later = await queue.enqueue({"type": "noop", "run_at": run_at})  # stays pending
        await _until(daemon, done.job_id, JobStatus.COMPLETED)
        assert await _until(daemon, retried.job_id, JobStatus.COMPLETED) == 2
        assert (await queue.get(later.job_id)).status is JobStatus.PENDING  # type: ignore[union-attr]
        cancelled = await queue.cancel(later.job_id)
        assert cancelled.outcome == "cancelled"
        await _until(daemon, later.job_id, JobStatus.CANCELLED)
        assert [d["daemon_id"] for d in await queue.daemons()] == [daemon.daemon_id]
        daemon.request_stop()


def test_multi_host_urls_are_parsed() -> None:
    with pytest.raises(ValueError, match="service_name"):
        RedisLink("redis+sentinel://h1,h2:1")
    with pytest.raises(ValueError, match="database 0"):
        RedisLink("redis+cluster://h1:1/3")


async def test_unreachable_cluster_is_unavailable_not_a_crash() -> None:
    link = RedisLink(f"redis+cluster://{HOST}:{_free_port()}", connect_timeout=1.0)
    with pytest.raises(RedisUnavailable):
        await link.call(lambda client: client.ping())
    assert not link.ready
    link.close()
