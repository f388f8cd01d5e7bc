"""Redis refusing writes — out of memory at `maxmemory` with noeviction — with a real
redis-server of the test's own and a running daemon (api and worker roles): the daemon
stays up instead of dying on the first refused script (it did), its loops back off, an
enqueue is spooled as during an outage, and once Redis takes writes again the spooled
job lands and runs. A NOREPLICAS reply (min-replicas-to-write unmet) reads the same way
(fleetd.backend.redis_link.refuses_writes), a command's own error does not."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
import trio
from api_client import PREFIX, api_config, running_api
from conftest import make_config
from redis_server import RedisServerFactory

from fleetd.backend.redis_link import RedisCommandError, RedisLink, RedisRefusingWrites


def fill_to_maxmemory(client: redis.Redis) -> None:
    """Cap Redis just above what it holds, then fill it until it refuses a write."""
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", used + 2 * 1024 * 1024)
    for i in range(100_000):
        try:
            client.set(f"ballast:{i}", "x" * 4096)
        except redis.exceptions.OutOfMemoryError:
            return
    raise AssertionError("Redis never refused a write")


async def test_a_daemon_rides_out_redis_out_of_memory(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    server = own_redis()
    cfg = api_config(make_config(server.url, "oom", tmp_path / "state"))
    raw = redis.Redis.from_url(server.url)
    async with running_api(cfg, roles=("api", "worker")) as api:
        fill_to_maxmemory(raw)
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"})
        assert r.status_code == 202, r.text  # spooled, as while Redis is away
        job_id = r.json()["job_id"]
        await trio.sleep(1.5)  # the worker's loops and the heartbeat meet the refusals
        assert (await api.client.get("/healthz")).status_code == 200  # still alive
        raw.config_set("maxmemory", 0)  # the operator raises the limit
        with trio.fail_after(30):
            while True:
                got = await api.client.get(f"{PREFIX}/{job_id}", headers=api.headers)
                if got.status_code == 200 and got.json()["status"] == "completed":
                    break
                await trio.sleep(0.2)
        assert (await api.client.get("/readyz")).status_code == 200
        assert api.daemon.engine.link.ready  # a refusal of writes is not an outage of reads


def test_too_few_replicas_reads_as_redis_away(own_redis: RedisServerFactory) -> None:
    """NOREPLICAS (min-replicas-to-write unmet), a code redis-py has no class for."""
    server = own_redis()
    raw = redis.Redis.from_url(server.url)
    raw.config_set("min-replicas-to-write", 1)
    link = RedisLink(server.url)
    try:
        with pytest.raises(RedisRefusingWrites, match="NOREPLICAS"):
            link.run_sync(lambda c: c.set("k", "v"))
        with pytest.raises(RedisCommandError, match="WRONGTYPE"):  # a command's own fault
            raw.config_set("min-replicas-to-write", 0)
            raw.lpush("a-list", 1)
            link.run_sync(lambda c: c.get("a-list"))
        link.run_sync(lambda c: c.set("k", "v"))  # writes taken again
    finally:
        link.close()
