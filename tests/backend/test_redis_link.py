"""RedisLink's own lifecycle against the real test redis-server."""

from __future__ import annotations

import threading
import time

import trio

from fleetd.backend.redis_link import RedisLink, SyncClient


def _client_ids(client: SyncClient) -> set[int]:
    return {int(c["id"]) for c in client.client_list()}


async def test_close_closes_every_connection_of_its_pool(redis_url: str) -> None:
    """Connections used from several threads are all closed by close(), not left to the
    garbage collector (redis-py's Redis.close() keeps a pool it was given open)."""
    link = RedisLink(redis_url, max_connections=8)
    watcher = RedisLink(redis_url, max_connections=4)
    try:
        ours: set[int] = set()
        # Each thread holds one pooled connection until all four do, so the pool must
        # open four (a sleep outside the command held none, and under load the calls
        # could run one after another on a single connection).
        together = threading.Barrier(4, timeout=10)

        def my_id(client: SyncClient) -> None:
            with client.client() as held:
                ours.add(int(held.client_id()))
                together.wait()

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(link.call, my_id)
        assert len(ours) == 4, ours
        assert ours <= _client_ids(watcher.client)
        link.close()
        deadline = time.monotonic() + 5
        while ours & _client_ids(watcher.client) and time.monotonic() < deadline:
            await trio.sleep(0.02)
        assert not ours & _client_ids(watcher.client)
    finally:
        watcher.close()
