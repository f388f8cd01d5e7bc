"""What a Redis error means to fleetd: away for now, refusing writes for now, or a
command's own fault. Owns the three exceptions every Redis call raises (through
fleetd.backend.redis_link and fleetd.backend.native_lane) and the reading of redis-py's
errors into them."""

from __future__ import annotations

import redis
import redis.exceptions

__all__ = [
    "REFUSAL_LOG_EVERY",
    "UNAVAILABLE_ERRORS",
    "RedisCommandError",
    "RedisRefusingWrites",
    "RedisUnavailable",
    "refuses_writes",
]

# Errors that mean "Redis is not reachable right now", as opposed to a bug in a command.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,  # a replica after failover: wait for the new primary
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,  # a Cluster mid-failover
    redis.exceptions.SlotNotCoveredError,
    OSError,
)


# Error codes (the reply's first word) of a server that refuses writes for now, which
# redis-py has no class for: a failing RDB save with stop-writes-on-bgsave-error, too
# few replicas for min-replicas-to-write. (OOM at maxmemory has its class.)
_REFUSING_WRITES = ("MISCONF ", "NOREPLICAS ")
# How often a link logs that Redis refuses writes, while it goes on refusing them.
REFUSAL_LOG_EVERY = 60.0


def refuses_writes(exc: BaseException) -> bool:
    """Whether an error reply is Redis refusing writes for now — out of memory at
    `maxmemory` with noeviction, MISCONF, NOREPLICAS — not a command's own fault. It
    passes by itself or by the operator's hand; until then it is met as an outage:
    the daemon's loops back off, the API spools."""
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return True
    if not isinstance(exc, redis.exceptions.ResponseError):
        return False
    # A pipeline's error reads "Command # 1 (...) of pipeline caused error: <reply>".
    return str(exc).rpartition("caused error: ")[2].startswith(_REFUSING_WRITES)


class RedisUnavailable(Exception):
    """Redis cannot be reached (refused, timed out, loading, read-only replica)."""


class RedisRefusingWrites(RedisUnavailable):
    """Redis answers, but refuses writes for now (`refuses_writes`): an outage to the
    callers, though not to the link's state (reads go on; logged once a minute)."""


class RedisCommandError(Exception):
    """Redis answered with an error: a script bug or a misconfigured server."""
