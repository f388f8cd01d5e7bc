"""Named queues: which queue a job goes to, which queues a daemon serves, and pausing.

A job's queue is the caller's (`"queue"` on enqueue), else its type's route
(`[queues] routes`), else its handler's default (`HandlerDefaults.queue`), else
`default`. It is stored in the job hash (`queue`, left out for `default`), and its
ready jobs wait in that queue's own index and parts (`Keys.queue_index`,
`Keys.ready_in`; _lib.lua `ready_add`). A daemon serves the queues of `[worker]
queues` (claim.lua, ARGV[9]): in strict order, or by weight ("bulk:1", "default:3").
A queue in the set `queues:paused` is served by no daemon until it is resumed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.config.queue_section import (
    DEFAULT_QUEUE,
    Served,
    check_queue_name,
    parse_routes,
)

__all__ = [
    "DEFAULT_QUEUE",
    "QueueFigures",
    "Served",
    "check_queue_name",
    "known_queues",
    "parse_routes",
    "pause_queue",
    "paused_queues",
    "queue_figures",
    "resume_queue",
    "route",
]


def route(
    job_type: str, requested: str | None, routes: dict[str, str], handler_queue: str | None
) -> str | None:
    """The queue of a new job as stored: None for the default queue."""
    queue = requested or routes.get(job_type) or handler_queue or DEFAULT_QUEUE
    return None if queue == DEFAULT_QUEUE else queue


def pause_queue(client: SyncClient, keys: Keys, name: str) -> bool:
    """Pause `name` on every daemon; False if it was paused already."""
    return bool(client.sadd(keys.queues_paused, check_queue_name(name)))


def resume_queue(client: SyncClient, keys: Keys, name: str) -> bool:
    """Resume `name`; False if it was not paused. Wakes idle fetchers."""
    done = bool(client.srem(keys.queues_paused, check_queue_name(name)))
    if done:
        client.lpush(keys.wake, *(["1"] * 16))
        client.ltrim(keys.wake, 0, 63)
    return done


def paused_queues(client: SyncClient, keys: Keys) -> set[str]:
    return {str(n) for n in client.smembers(keys.queues_paused)}


def known_queues(client: SyncClient, keys: Keys, also: Iterable[str] = ()) -> list[str]:
    """`default`, the queues that ever had ready jobs, the paused ones and `also` (the
    configured ones), sorted with `default` first."""
    names = {str(n) for n in client.smembers(keys.queues)} | paused_queues(client, keys)
    names |= set(also)
    names.discard(DEFAULT_QUEUE)
    return [DEFAULT_QUEUE, *sorted(names)]


@dataclass(frozen=True, slots=True)
class QueueFigures:
    name: str
    paused: bool
    ready: int  # pending jobs in the queue's parts
    waiting: int  # delayed or retrying (run_at or backoff not reached)
    processing: int

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "paused": self.paused, "ready": self.ready,
            "waiting": self.waiting, "processing": self.processing,
        }  # fmt: skip


def _queue_of(client: SyncClient, keys: Keys, ids: list[str]) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(keys.job(job_id), "queue")
    return [str(q) if q else DEFAULT_QUEUE for q in pipe.execute()]


def queue_figures(client: SyncClient, keys: Keys, names: Sequence[str]) -> list[QueueFigures]:
    """Per queue: ready (from its parts), waiting and processing (the queue field of
    each delayed and running job: a read of every such job, so an admin's reading, not
    a hot path). Counts every company's jobs."""
    paused = paused_queues(client, keys)
    ready: dict[str, int] = {}
    for name in names:
        parts = [str(p) for p in client.zrange(keys.queue_index(name), 0, -1)]
        pipe = client.pipeline(transaction=False)
        for part in parts:
            pipe.zcard(keys.ready_in(name, part))
        ready[name] = sum(int(n) for n in pipe.execute()) if parts else 0
    counted: dict[str, dict[str, int]] = {n: {"waiting": 0, "processing": 0} for n in names}
    for kind, key in (("waiting", keys.delayed), ("processing", keys.leases)):
        ids = [str(i) for i in client.zrange(key, 0, -1)]
        for q in _queue_of(client, keys, ids):
            if q in counted:
                counted[q][kind] += 1
    return [
        QueueFigures(n, n in paused, ready[n], counted[n]["waiting"], counted[n]["processing"])
        for n in names
    ]
