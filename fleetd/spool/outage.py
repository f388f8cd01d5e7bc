"""What a synchronous door does when Redis is away: the CLI's and the client's enqueue.

Owns `enqueue_or_spool`: send the rows to Redis (one round trip); when Redis is
unreachable, write them to the spool instead and answer each with status `spooled`
and the id it will have (fleetd.spool.file; a daemon replays them). Past the spool's
caps, or with no spool (`[spool] enabled = false`), Redis's error is raised as it was.
`spooled_results` is the answer the daemon's API gives the same way. `may_have_run`
tells a call Redis never received (no connection could be made) from one it may have
run before the connection broke: a job of the latter must not be run inline as well
(fleetd.runtime.inline, fleetd.api.fallback) — it is spooled, and its replay finds it
in Redis or enqueues it, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis
from redis.sentinel import MasterNotFoundError

from fleetd.backend.codec import JobRow
from fleetd.backend.redis_link import RedisUnavailable
from fleetd.jobs.queue import EnqueueResult, QueueOps
from fleetd.spool.file import JobSpool, SpoolError

__all__ = ["SPOOLED", "enqueue_or_spool", "may_have_run", "spool_rows", "spooled_results"]

# The status of an acknowledged enqueue kept in the spool (not a job status: the job
# is `pending` once it reaches Redis).
SPOOLED = "spooled"


# What redis-py says when it could not connect ("Error 111 connecting to host:port.",
# "Timeout connecting to server"): the command never left this process. Anything else
# (a reset or a timeout while writing or reading) may come after Redis ran it and
# wrote it to its AOF — a SIGKILL between the write and the reply does that.
_NOT_CONNECTED = "connecting to"
# What redis-py raises while it opens a connection, before any command is sent: a
# refused AUTH, Sentinel naming no primary (fleetd.backend.native_lane says "connecting
# to" for both cases of its own).
_OPENING = (redis.exceptions.AuthenticationError, MasterNotFoundError)


def may_have_run(exc: BaseException) -> bool:
    """Whether the call that failed with `exc` (RedisUnavailable, or what it wraps) may
    have run in Redis all the same."""
    cause = exc.__cause__ or exc
    if isinstance(cause, _OPENING):
        return False
    return _NOT_CONNECTED not in str(cause)


def spooled_results(
    rows: Sequence[JobRow], at_ms: int, duplicates: Mapping[int, tuple[str, int]]
) -> list[EnqueueResult]:
    """The answers of spooled rows; a row whose idempotency key a spooled job has
    already is answered with that job (`duplicate`), as Redis would."""
    out = []
    for n, row in enumerate(rows):
        if n in duplicates:
            job_id, spooled_at = duplicates[n]
            out.append(EnqueueResult(job_id, SPOOLED, spooled_at, duplicate=True))
        else:
            out.append(EnqueueResult(row.id, SPOOLED, at_ms))
    return out


def enqueue_or_spool(
    run: Callable[..., Any],
    ops: QueueOps,
    spool: JobSpool | None,
    rows: Sequence[JobRow],
    *,
    door: str,
    subject: str,
) -> list[EnqueueResult]:
    """`run(ops.enqueue_rows, rows)` (a RedisLink's run_sync), or the spool's answer."""
    try:
        results: list[EnqueueResult] = run(ops.enqueue_rows, rows)
        return results
    except RedisUnavailable as exc:
        if spool is None:
            raise
        return spool_rows(spool, rows, exc, door=door, subject=subject)


def spool_rows(
    spool: JobSpool, rows: Sequence[JobRow], exc: RedisUnavailable, *, door: str, subject: str
) -> list[EnqueueResult]:
    """Spool rows Redis did not take (`exc`: why), answered `spooled`; RedisUnavailable
    naming both when the spool cannot take them either."""
    try:
        at, duplicates = spool.add(rows, door=door, subject=subject)
    except SpoolError as refused:
        raise RedisUnavailable(f"{exc}; not spooled: {refused}") from None
    return spooled_results(rows, at, duplicates)
