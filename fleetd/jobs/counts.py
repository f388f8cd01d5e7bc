"""Counting the queue: the spec's stats per status, the live daemons' heartbeats, and
which jobs still exist.

Reads only, one Redis hop each (callers hand these to `RedisLink.call` or `run_sync`).
Apart from the queue operations (fleetd.jobs.queue, which delegates here) so that
`fleetd stats` and `fleetd workers` import neither the job model nor pydantic: that
is ~65 ms of a CLI command's start-up (bench/cli_startup.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.jobs.status import JobStatus

__all__ = ["STATS_ORDER", "daemons", "jobs_exist", "stats"]

# The spec's four, then retrying and cancelled; `total` is their sum.
STATS_ORDER = (
    JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.FAILED,
    JobStatus.RETRYING, JobStatus.CANCELLED,
)  # fmt: skip


def stats(client: SyncClient, *spaces: Keys) -> dict[str, int]:
    """The spec's stats plus retrying and cancelled, summed over `spaces` (the key spaces
    of one namespace: fleetd.backend.spaces); total is their sum."""
    pipe = client.pipeline(transaction=False)
    for keys in spaces:
        for st in STATS_ORDER:
            pipe.zcard(keys.status(st))
    got = list(map(int, pipe.execute()))
    n = len(STATS_ORDER)
    counts = {s.value: sum(got[i::n]) for i, s in enumerate(STATS_ORDER)}
    return {**counts, "total": sum(counts.values())}


def daemons(client: SyncClient, keys: Keys) -> list[dict[str, Any]]:
    """Identity and WorkerMetrics of every daemon with a live heartbeat."""
    sec, usec = client.time()
    now = int(sec) * 1000 + int(usec) // 1000
    alive = client.zrangebyscore(keys.heartbeats, now, "+inf")
    if not alive:
        return []
    payloads = client.hmget(keys.daemons, alive)
    return [json.loads(p) for p in payloads if p]


def jobs_exist(
    client: Any, job_keys: Sequence[Callable[[str], str]], job_ids: Sequence[str]
) -> list[bool]:
    """Whether each job's hash still exists in any of the key spaces (`job_keys`: their
    fleetd.backend.keys.Keys.job; one pipelined round trip)."""
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        for job_key in job_keys:
            pipe.exists(job_key(job_id))
    found, n = pipe.execute(), len(job_keys)
    return [any(found[i * n : (i + 1) * n]) for i in range(len(job_ids))]
