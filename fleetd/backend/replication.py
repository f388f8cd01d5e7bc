"""Writes a primary's replicas have acknowledged (`[redis] wait_replicas`).

WAIT counts the writes made *on the connection it is sent on*. A pooled client hands each
command whichever connection is free, so a WAIT after an enqueue may go out on a
connection that wrote nothing and answer at once with every connected replica: an
acknowledgement for writes the replicas may not have. And a Cluster client sends a plain
WAIT to every primary and adds their answers, so one primary's replica could vouch for
another primary's writes. `pinned` gives the writes and their WAIT one connection, to the
primary holding the key space they write (one hash tag, one node).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import redis
from redis.cluster import RedisCluster

from fleetd.backend.keys import Keys
from fleetd.jobs.errors import NotReplicated

__all__ = ["pinned", "replicas_acked", "replicated"]

T = TypeVar("T")


@contextmanager
def pinned(client: Any, key: str) -> Iterator[Any]:
    """A client holding one connection to the primary that serves `key` (its own
    server outside a Cluster), released at exit."""
    if isinstance(client, RedisCluster):
        cluster: Any = client  # redis-py's cluster module is not annotated
        client = cluster.get_redis_connection(cluster.get_node_from_key(key))
    one = redis.Redis(connection_pool=client.connection_pool, single_connection_client=True)
    try:
        yield one
    finally:
        one.close()


def replicas_acked(one: Any, replicas: int, timeout_ms: int) -> int:
    """How many replicas have every write made so far on `one` (a `pinned` client),
    waiting up to `timeout_ms` for `replicas` of them."""
    return int(one.wait(replicas, timeout_ms))


def replicated(client: Any, keys: Keys, wait: tuple[int, int], write: Callable[[Any], T]) -> T:
    """`write(client)` — the writes of a door that adds jobs, in `keys`' key space. With
    `wait` = ([redis] wait_replicas, wait_timeout ms) set: on one connection to that
    space's primary, then WAIT there; fewer replicas confirming raises NotReplicated
    (the writes are stored: a retry with the same idempotency key finds them)."""
    wanted, timeout_ms = wait
    if not wanted:
        return write(client)
    with pinned(client, keys.seq) as one:
        result = write(one)
        acked = replicas_acked(one, wanted, timeout_ms)
    if acked < wanted:
        raise NotReplicated(acked, wanted)
    return result
