"""[queues] (routing job types to named queues) and the parsing of queue names and of
`[worker] queues` (the queues a daemon serves). The queues themselves:
fleetd.jobs.queues."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from fleetd.config.settings import setting

__all__ = [
    "DEFAULT_QUEUE",
    "EVERY_QUEUE",
    "QUEUE_NAME_PATTERN",
    "QueuesConfig",
    "Served",
    "check_queue_name",
    "check_served",
    "parse_routes",
]

# A queue name: lower-case letters, digits, '_' and '-', starting with a letter or
# digit, at most 32 characters (so it never holds the ':' of a Redis key's parts).
QUEUE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
DEFAULT_QUEUE = "default"
_NAME = re.compile(QUEUE_NAME_PATTERN)
_MAX_WEIGHT = 1000


def check_queue_name(name: str) -> str:
    """`name` if it is a queue name; else ValueError saying what one is."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"{name!r} is not a queue name: up to 32 lower-case letters, digits, '_' or "
            "'-', starting with a letter or digit"
        )
    return name


def parse_routes(entries: Iterable[str]) -> dict[str, str]:
    """`["data_export=bulk", ...]` → {job type: queue}; ValueError on a bad entry."""
    routes: dict[str, str] = {}
    for entry in entries:
        job_type, sep, queue = entry.partition("=")
        job_type, queue = job_type.strip(), queue.strip()
        if not sep or not job_type:
            raise ValueError(f"route {entry!r}: must be 'job_type=queue'")
        if job_type in routes:
            raise ValueError(f"route {entry!r}: job type {job_type!r} is routed twice")
        routes[job_type] = check_queue_name(queue)
    return routes


@dataclass(frozen=True, slots=True)
class Served:
    """The queues one daemon serves, in its order, with their weights (all 0: strict
    order, each queue in turn taking all it can)."""

    queues: tuple[tuple[str, int], ...] = ((DEFAULT_QUEUE, 0),)

    @classmethod
    def parse(cls, entries: Sequence[str]) -> Served:
        """`["mail", "default"]` (strict) or `["bulk:1", "default:3"]` (weights: all or
        none); ValueError on a bad entry."""
        if not entries:
            return cls()
        out: list[tuple[str, int]] = []
        weighted = [":" in e for e in entries]
        if any(weighted) and not all(weighted):
            raise ValueError("give every queue a weight ('name:N') or none")
        for entry in entries:
            name, _, w = entry.partition(":")
            name = check_queue_name(name.strip())
            weight = 0
            if weighted[0]:
                try:
                    weight = int(w)
                except ValueError:
                    weight = 0
                if not 1 <= weight <= _MAX_WEIGHT:
                    raise ValueError(f"queue {entry!r}: weight must be 1 to {_MAX_WEIGHT}")
            if name in (q for q, _ in out):
                raise ValueError(f"queue {name!r} is listed twice")
            out.append((name, weight))
        return cls(tuple(out))

    @property
    def names(self) -> list[str]:
        return [q for q, _ in self.queues]

    @property
    def weighted(self) -> bool:
        return any(w for _, w in self.queues)

    def order(self, rng: random.Random | None = None) -> list[tuple[str, int]]:
        """This claim's order: as configured when strict; by weight drawn without
        replacement when weighted (so the first queue is each queue in proportion to
        its weight, even for a claim of one job)."""
        if not self.weighted:
            return list(self.queues)
        r = rng or random
        left, out = list(self.queues), []
        while left:
            pick = r.choices(range(len(left)), weights=[w for _, w in left])[0]
            out.append(left.pop(pick))
        return out

    def claim_arg(self, rng: random.Random | None = None) -> str:
        """claim.lua's ARGV[9]: '' for the default queue alone (the claim of before)."""
        if self.queues == ((DEFAULT_QUEUE, 0),):
            return ""
        return json.dumps([[q, w] for q, w in self.order(rng)])


def check_served(value: tuple[str, ...]) -> str | None:
    try:
        Served.parse(value)
    except ValueError as exc:
        return str(exc)
    return None


def _check_routes(value: tuple[str, ...]) -> str | None:
    try:
        parse_routes(value)
    except ValueError as exc:
        return str(exc)
    return None


# `[queues] own_slot = ["*"]`: every named queue (not `default`) gets a slot of its own.
EVERY_QUEUE = "*"


def _check_own_slot(value: tuple[str, ...]) -> str | None:
    if EVERY_QUEUE in value:
        return None if value == (EVERY_QUEUE,) else "'*' (every named queue) stands alone"
    try:
        names = [check_queue_name(q) for q in value]
    except ValueError as exc:
        return str(exc)
    if DEFAULT_QUEUE in names:
        return "the default queue lives in the namespace's own slot; name other queues"
    if len(set(names)) != len(names):
        return "a queue is listed twice"
    return None


@dataclass(frozen=True)
class QueuesConfig:
    routes: tuple[str, ...] = setting(
        (),
        "job type to named queue, 'type=queue' (e.g. 'data_export=bulk'); a type not "
        "listed goes to its handler's queue, else 'default'",
        check=_check_routes,
    )
    own_slot: tuple[str, ...] = setting(
        (),
        "named queues whose keys carry a hash tag of their own (fleetd:{namespace/queue}:), "
        "so a Redis Cluster puts them on other primaries, or ['*'] for every named queue; "
        "limits, quotas and idempotency then hold within each such queue "
        "(docs/OPERATIONS.md)",
        check=_check_own_slot,
    )
