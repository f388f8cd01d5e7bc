"""Closed analytics buckets, sealed: one string per closed minute or hour.

Owns `read_buckets()`, how fleetd.analytics.store fetches a window's buckets. The
transition scripts write a bucket only during its own minute or hour (by Redis's clock,
inside the script), so once Redis's clock is past it a bucket is final. The first reader
of a closed bucket parses its hash (HGETALL: ~1,700 fields an hour for 20 busy types)
and writes the parsed figures back as one JSON string, `an:ms:<minute>` /
`an:hs:<hour>`, expiring when the hash does; every later read of that bucket is one GET
and one `json.loads` (C), not ~3,400 reply strings for redis-py to parse and split. An
hour's seal holds its slowest attempts per group too (final with the hour), so a week
is 167 GETs, the current hour's HGETALL and its slowest zsets — not 168 × groups
ZRANGEs. Two readers sealing one bucket at once write the same text. Each key space
of the namespace (fleetd.backend.spaces: a queue's own slot) keeps its own buckets and
seals them in itself; `read_spaces()` reads all of them in the hops of one. Layout:
docs/ARCHITECTURE.md, "Keys".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient

__all__ = ["SEAL_GRACE_MS", "Bucket", "decode", "encode", "read_buckets", "read_spaces"]

# A bucket is sealed this long after its end by Redis's clock, not at once: room for a
# replica promoted by a failover whose clock is a little behind the old primary's.
SEAL_GRACE_MS = 5_000
# The seal layout; a seal of another version is ignored (parsed from the hash again).
VERSION = 2
# How long the hashes are kept after their last write (AN_MINUTE_TTL and AN_HOUR_TTL of
# fleetd/backend/lua/_analytics.lua): a seal expires when its hash would.
_KEPT_MS = {60_000: 7_200_000, 3_600_000: 8 * 86_400_000}

# One group's figures, as a list: the counts of `_COUNTS`, the histograms, then the run
# and wait p50/p95/p99 (fleetd.analytics.store).
Encoded = list[Any]
# Per group tail, its slowest attempts of an hour: [[job id, run ms], ...].
Slowest = dict[str, list[list[Any]]]
# Slowest attempts kept per group and hour (AN_SLOWEST of _analytics.lua).
_SLOWEST = 5


@dataclass
class Bucket:
    """One bucket's groups by field tail ("<type>\\n<company>"), encoded, and for a
    sealed hour its slowest attempts (None: read them from the zsets)."""

    groups: dict[str, Encoded]
    slowest: Slowest | None = None


def encode(bucket: Bucket) -> str:
    body = {"v": VERSION, "g": bucket.groups, "s": bucket.slowest}
    return json.dumps(body, separators=(",", ":"))


def decode(text: str | bytes) -> Bucket | None:
    """A seal; None if it is not one of this layout."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("v") != VERSION:
        return None
    groups, slowest = body.get("g"), body.get("s")
    if not isinstance(groups, dict) or not isinstance(slowest, dict | None):
        return None
    return Bucket(groups, slowest)


def _slowest_key(keys: Keys, hour: int, tail: str) -> str:
    jtype, _, company = tail.partition("\n")
    return keys.analytics_slowest(hour, company, jtype)


def _family(keys: Keys, step_ms: int) -> tuple[bool, Callable[[int], str], Callable[[int], str]]:
    """Whether `step_ms` is the hour's, its bucket hashes' and its seals' key names."""
    if step_ms != 60_000:
        return True, keys.analytics_hour, keys.analytics_sealed_hour
    return False, keys.analytics_minute, keys.analytics_sealed_minute


def read_buckets(
    client: SyncClient,
    keys: Keys,
    step_ms: int,
    indexes: Sequence[int],
    now: int,
    parse: Callable[[dict[str, str]], dict[str, Encoded]],
) -> list[Bucket]:
    """Each bucket's groups, encoded, oldest first: seals for closed buckets (sealing
    those that have none), `parse(HGETALL)` for the open ones. One hop when every
    closed bucket is sealed, two when some are not yet."""
    [out] = read_spaces(client, [keys], step_ms, indexes, now, parse)
    return out


def read_spaces(
    client: SyncClient,
    spaces: Sequence[Keys],
    step_ms: int,
    indexes: Sequence[int],
    now: int,
    parse: Callable[[dict[str, str]], dict[str, Encoded]],
) -> list[list[Bucket]]:
    """read_buckets() of each key space (fleetd.backend.spaces), in the same hops as
    one space's: each pipeline holds every space's reads, and each space's closed
    buckets are sealed in that space."""
    closed = {i for i in indexes if (i + 1) * step_ms + SEAL_GRACE_MS <= now}
    pipe = client.pipeline(transaction=False)
    for keys in spaces:
        _, bucket, seal = _family(keys, step_ms)
        for i in indexes:
            if i in closed:
                pipe.get(seal(i))
            else:
                pipe.hgetall(bucket(i))
    replies = iter(pipe.execute())
    out: list[list[Bucket | None]] = []
    for _keys in spaces:
        got: list[Bucket | None] = []
        for i, reply in zip(indexes, replies, strict=False):
            if i not in closed:
                got.append(Bucket(parse(reply)))
            else:
                got.append(None if reply is None else decode(reply))
        out.append(got)
    unsealed = [(s, n) for s, got in enumerate(out) for n, b in enumerate(got) if b is None]
    if unsealed:
        wanted = [(spaces[s], indexes[n]) for s, n in unsealed]
        fresh = _seal(client, wanted, step_ms, now, parse)
        for (s, n), b in zip(unsealed, fresh, strict=True):
            out[s][n] = b
    return [[b or Bucket({}) for b in got] for got in out]


def _seal(
    client: SyncClient,
    buckets: Sequence[tuple[Keys, int]],
    step_ms: int,
    now: int,
    parse: Callable[[dict[str, str]], dict[str, Encoded]],
) -> list[Bucket]:
    """Read closed buckets (a space's keys, an index) from their hashes (and an hour's
    slowest zsets) and seal them, each in its space."""
    hour = _family(buckets[0][0], step_ms)[0]
    pipe = client.pipeline(transaction=False)
    for keys, i in buckets:
        pipe.hgetall(_family(keys, step_ms)[1](i))
    out = [Bucket(parse(raw)) for raw in pipe.execute()]
    if hour:
        pipe = client.pipeline(transaction=False)
        for (keys, i), b in zip(buckets, out, strict=True):
            for tail in b.groups:
                # ZRANGE by negative ranks: in the ACL of docs/OPERATIONS.md (ZREVRANGE
                # is not).
                pipe.zrange(_slowest_key(keys, i, tail), -_SLOWEST, -1, withscores=True)
        replies = iter(pipe.execute())
        for b in out:
            b.slowest = {tail: [[_text(m), int(s)] for m, s in next(replies)] for tail in b.groups}
    pipe = client.pipeline(transaction=False)
    for (keys, i), b in zip(buckets, out, strict=True):
        left = (i + 1) * step_ms + _KEPT_MS[step_ms] - now
        if left > 0:
            pipe.set(_family(keys, step_ms)[2](i), encode(b), px=left)
    pipe.execute()
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
