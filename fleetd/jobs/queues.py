"""Named queues: which queue a job goes to, which queues a daemon serves, and pausing.

A job's queue is the caller's (`"queue"` on enqueue), else its type's route
(`[queues] routes`), else its handler's default (`HandlerDefaults.queue`), else
`default`. It is stored in the job hash (`queue`, left out for `default`), and its
ready jobs wait in that queue's own index and parts (`Keys.queue_index`,
`Keys.ready_in`; _lib.lua `ready_add`). A daemon serves the queues of `[worker]
queues` (claim.lua, ARGV[9]): in strict order, or by weight ("bulk:1", "default:3").
A queue in the set `queues:paused` is served by no daemon until it is resumed.

A queue with a slot of its own (fleetd.backend.spaces) has its jobs in two key spaces:
the namespace's (those from before its slot) and its own, each claimed by that space's
claim.lua, which reads that space's `queues:paused`. So the calls here take the
namespace's `Spaces` (or, as before spaces, one `Keys`): a pause writes the namespace's
set (land.lua's bypasses read it too) and the queue's own space's; a queue counts as
paused when either holds it; figures add up both spaces.

Each daemon's heartbeat lists the queues it serves (`served_by`); `queue_figures` tells
per queue the live worker daemons serving it, its jobs ready, waiting and processing,
and those completed and failed over the last hour (`an:q:<minute>`, counted by the
transition scripts: _analytics.lua `an_queue`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.backend.spaces import Spaces
from fleetd.config.limit_sections import Limit
from fleetd.config.queue_section import (
    DEFAULT_QUEUE,
    Served,
    check_queue_name,
    parse_routes,
)
from fleetd.jobs.parts import ready_parts

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
    "served_by",
    "serving",
]

MINUTE_MS = 60_000
# Completed and failed per queue: over the last hour (the minute buckets are kept 2 h,
# AN_MINUTE_TTL of _analytics.lua), so a slow queue's figures are not all zeros.
FIGURES_MINUTES = 60
# Throughput: jobs finished per minute over the last 5 minutes (the current one, partly
# gone, counts for what has gone of it): a rate that follows a change within minutes.
THROUGHPUT_MINUTES = 5
# Delayed and running jobs whose queue field queue_figures reads at most: past it, a
# random sample of this many (ZRANDMEMBER) scaled to the whole, and the figures say so.
# A dashboard reads them every 10 s: a million delayed jobs read each time would stall
# Redis for every company.
SAMPLE = 10_000


def route(
    job_type: str, requested: str | None, routes: dict[str, str], handler_queue: str | None
) -> str | None:
    """The queue of a new job as stored: None for the default queue."""
    queue = requested or routes.get(job_type) or handler_queue or DEFAULT_QUEUE
    return None if queue == DEFAULT_QUEUE else queue


def _layout(client: SyncClient, where: Keys | Spaces) -> tuple[Keys, dict[str, Keys]]:
    """The namespace's keys, and the keys of each queue with a space of its own."""
    if isinstance(where, Keys):
        return where, {}
    home, *own = where.known(client)
    return home.keys, {s.queue: s.keys for s in own}


def _wake(client: SyncClient, keys: Keys) -> None:
    client.lpush(keys.wake, *(["1"] * 16))
    client.ltrim(keys.wake, 0, 63)


def pause_queue(client: SyncClient, where: Keys | Spaces, name: str) -> bool:
    """Pause `name` on every daemon, in the namespace's space and its own (if it has
    one); False if it was paused already in both."""
    name = check_queue_name(name)
    home = where if isinstance(where, Keys) else where.home.keys
    changed = bool(client.sadd(home.queues_paused, name))
    if isinstance(where, Spaces):
        # Read the slots after the write: a slot given meanwhile is seen here, or its
        # process sees this pause (Spaces._carry_pauses).
        where.refresh(client)
        own = where.of_queue(name)
        if own is not None:
            changed = bool(client.sadd(own.keys.queues_paused, name)) or changed
    return changed


def resume_queue(client: SyncClient, where: Keys | Spaces, name: str) -> bool:
    """Resume `name` in every space; False if it was not paused. Wakes idle fetchers of
    each space it was paused in."""
    name = check_queue_name(name)
    home = where if isinstance(where, Keys) else where.home.keys
    done = bool(client.srem(home.queues_paused, name))
    if done:
        _wake(client, home)
    if isinstance(where, Spaces):
        where.refresh(client)
        own = where.of_queue(name)
        if own is not None and client.srem(own.keys.queues_paused, name):
            _wake(client, own.keys)
            done = True
    return done


def paused_queues(client: SyncClient, where: Keys | Spaces) -> set[str]:
    """The queues paused in the namespace's space or in their own."""
    home, own = _layout(client, where)
    if not own:
        return {str(n) for n in client.smembers(home.queues_paused)}
    pipe = client.pipeline(transaction=False)
    pipe.smembers(home.queues_paused)
    for queue, keys in own.items():
        pipe.sismember(keys.queues_paused, queue)
    names, *held = pipe.execute()
    return {str(n) for n in names} | {q for q, h in zip(own, held, strict=True) if h}


def known_queues(client: SyncClient, where: Keys | Spaces, also: Iterable[str] = ()) -> list[str]:
    """`default`, the queues that ever had ready jobs, those with a space of their own,
    the paused ones and `also` (the configured ones), sorted with `default` first."""
    home, own = _layout(client, where)
    names = {str(n) for n in client.smembers(home.queues)} | paused_queues(client, where)
    names |= set(also) | set(own)
    names.discard(DEFAULT_QUEUE)
    return [DEFAULT_QUEUE, *sorted(names)]


def served_by(daemon: Mapping[str, Any]) -> list[str]:
    """The queues a live daemon serves, from its heartbeat (one from before named
    queues lists none: it served `default`)."""
    queues = daemon.get("queues")
    return [str(q) for q in queues] if isinstance(queues, list) else [DEFAULT_QUEUE]


def serving(daemons: Sequence[Mapping[str, Any]], name: str) -> list[str]:
    """The ids of the live worker daemons that serve queue `name`."""
    return sorted(
        str(d.get("daemon_id"))
        for d in daemons
        if "worker" in d.get("roles", ()) and name in served_by(d)
    )


@dataclass(frozen=True, slots=True)
class QueueFigures:
    name: str
    paused: bool
    ready: int  # pending jobs in the queue's parts
    waiting: int  # delayed or retrying (run_at or backoff not reached)
    processing: int
    daemons: tuple[str, ...] = ()  # the live worker daemons serving it
    completed: int = 0  # over the last FIGURES_MINUTES
    failed: int = 0  # for good (retries left: not counted), over the last FIGURES_MINUTES
    throughput: float = 0.0  # jobs finished per minute over the last THROUGHPUT_MINUTES
    limit: str | None = None  # its [limits] queues entry, described; None: no limit
    estimated: bool = False  # waiting and processing scaled from a sample (SAMPLE)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name, "paused": self.paused, "ready": self.ready,
            "waiting": self.waiting, "processing": self.processing,
            "daemons": list(self.daemons), "completed": self.completed,
            "failed": self.failed, "throughput": self.throughput, "limit": self.limit,
            "estimated": self.estimated,
        }  # fmt: skip


def _queue_of(client: SyncClient, keys: Keys, ids: list[str]) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(keys.job(job_id), "queue")
    return [str(q) if q else DEFAULT_QUEUE for q in pipe.execute()]


def _per_queue(
    client: SyncClient, keys: Keys, key: str, names: Sequence[str]
) -> tuple[dict[str, int], bool]:
    """Per queue of `names`, the jobs of zset `key` (delayed, leases) in it, and whether
    that is scaled from a sample. One queue: the zset's size, nothing read."""
    total = int(client.zcard(key))
    if list(names) == [DEFAULT_QUEUE] or total == 0:
        return {DEFAULT_QUEUE: total}, False
    sampled = total > SAMPLE
    ids = client.zrandmember(key, SAMPLE) if sampled else client.zrange(key, 0, -1)
    counts: dict[str, int] = {}
    for q in _queue_of(client, keys, [str(i) for i in ids or ()]):
        counts[q] = counts.get(q, 0) + 1
    if sampled:
        counts = {q: round(n * total / SAMPLE) for q, n in counts.items()}
    return counts, sampled


def _finished(
    client: SyncClient, spaces: Sequence[Keys]
) -> tuple[dict[str, dict[str, int]], float]:
    """Per queue, jobs completed ("ok") and failed ("fail") over the last
    FIGURES_MINUTES, and those of the last THROUGHPUT_MINUTES ("recent"), summed over
    `spaces`; and the minutes the latter span up to Redis's now."""
    sec, usec = client.time()
    now = int(sec) * 1000 + int(usec) // 1000
    last = now // MINUTE_MS
    minutes = [m for m in range(last - FIGURES_MINUTES + 1, last + 1) for _ in spaces]
    pipe = client.pipeline(transaction=False)
    for i, m in enumerate(minutes):
        pipe.hgetall(spaces[i % len(spaces)].analytics_queues(m))
    out: dict[str, dict[str, int]] = {}
    for m, raw in zip(minutes, pipe.execute(), strict=True):
        for field, n in raw.items():
            kind, _, name = str(field).partition("\n")
            counts = out.setdefault(name, {"ok": 0, "fail": 0, "recent": 0})
            counts[kind] = counts.get(kind, 0) + int(n)
            if m > last - THROUGHPUT_MINUTES:
                counts["recent"] += int(n)
    span = (now - (last - THROUGHPUT_MINUTES + 1) * MINUTE_MS) / MINUTE_MS
    return out, span


def queue_figures(
    client: SyncClient,
    where: Keys | Spaces,
    names: Sequence[str],
    daemons: Sequence[Mapping[str, Any]] = (),
    limits: Mapping[str, Limit] | None = None,
) -> list[QueueFigures]:
    """Per queue: its limit of `limits` (`[limits] queues`), described; the live worker
    daemons of `daemons` serving it; ready (from its parts), waiting and processing (the
    queue field of each delayed and running job, or of a sample of SAMPLE: `_per_queue`;
    with the default queue alone, the sizes of `delayed` and `leases`); completed,
    failed and throughput (`_finished`). Counts every company's jobs, in every key
    space: a queue's own space holds that queue's jobs alone, so its `delayed` and
    `leases` count whole."""
    home, own = _layout(client, where)
    paused = paused_queues(client, where)
    finished, span = _finished(client, [home, *own.values()])
    ready: dict[str, int] = {}
    for name in names:
        spaces = [home, own[name]] if name in own else home
        ready[name] = sum(p.ready for p in ready_parts(client, spaces, name))
    waiting, sampled_w = _per_queue(client, home, home.delayed, names)
    processing, sampled_p = _per_queue(client, home, home.leases, names)
    if own:
        pipe = client.pipeline(transaction=False)
        for keys in own.values():
            pipe.zcard(keys.delayed)
            pipe.zcard(keys.leases)
        got = iter(pipe.execute())
        for queue in own:
            waiting[queue] = waiting.get(queue, 0) + int(next(got))
            processing[queue] = processing.get(queue, 0) + int(next(got))
    out = []
    for n in names:
        done = finished.get(n, {})
        out.append(QueueFigures(
            n, n in paused, ready[n], waiting.get(n, 0), processing.get(n, 0),
            tuple(serving(daemons, n)), done.get("ok", 0), done.get("fail", 0),
            round(done.get("recent", 0) / span, 2),
            (limits[n].describe() or None) if limits and n in limits else None,
            sampled_w or sampled_p))  # fmt: skip
    return out
