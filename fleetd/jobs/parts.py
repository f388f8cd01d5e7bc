"""Parts of the ready queue: the ready jobs of one job type and one company.

Ready jobs wait in one zset per part (`Keys.ready`), indexed by `Keys.queue` (see
claim.lua and `ready_add` in _lib.lua): a daemon skips the parts of types it has no
handler for, and serves the parts of one priority in turn (fair share between
companies). Here: the spelling of a part (as _lib.lua's `part_of`) and the readings
built on it — the ready depth in total and per part, of one key space or summed over
several (a queue with a slot of its own keeps its ready jobs in its own space,
fleetd.backend.spaces: pass every space's Keys, `spaces.all_keys(c)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient

__all__ = ["Part", "part_name", "ready_depth", "ready_parts", "split_part"]


@dataclass(frozen=True, slots=True)
class Part:
    job_type: str
    company_id: str | None
    ready: int
    queue: str = "default"


def part_name(job_type: str, company_id: str | None) -> str:
    """`<UTF-8 bytes of type>:<type>:<company>` (no company = ''), as Lua spells it."""
    return f"{len(job_type.encode())}:{job_type}:{company_id or ''}"


def split_part(part: str) -> tuple[str, str | None]:
    """(job type, company id or None) of a part name."""
    n, _, rest = part.partition(":")
    raw = rest.encode()
    size = int(n)
    job_type = raw[:size].decode()
    company = raw[size + 1 :].decode()
    return job_type, company or None


def ready_parts(
    client: SyncClient, keys: Keys | Sequence[Keys], queue: str | None = None
) -> list[Part]:
    """Every part with ready jobs and its count, of one named queue or (None) of every
    queue (`default` first, then the others of the set `queues`), each queue's in its
    index's (claim) order. `keys`: one key space, or several (the namespace's first):
    a part ready in more than one (a slotted queue's jobs from before its slot, and
    those in its own) is one Part with their counts summed, where it came first."""
    spaces = [keys] if isinstance(keys, Keys) else list(keys)
    if queue is None:
        pipe = client.pipeline(transaction=False)
        for k in spaces:
            pipe.smembers(k.queues)
        named = [sorted(str(q) for q in got) for got in pipe.execute()] if spaces else []
        wanted = [
            (k, q) for k, names in zip(spaces, named, strict=True) for q in ["default", *names]
        ]
    else:
        wanted = [(k, queue) for k in spaces]
    pipe = client.pipeline(transaction=False)
    for k, q in wanted:
        pipe.zrange(k.queue_index(q), 0, -1)
    found = [
        (k, q, str(n)) for (k, q), names in zip(wanted, pipe.execute(), strict=True) for n in names
    ]
    if not found:
        return []
    pipe = client.pipeline(transaction=False)
    for k, q, name in found:
        pipe.zcard(k.ready_in(q, name))
    merged: dict[tuple[str, str], int] = {}  # (queue, part) → ready, in first-seen order
    for (_k, q, name), count in zip(found, pipe.execute(), strict=True):
        merged[q, name] = merged.get((q, name), 0) + int(count)
    if len(spaces) > 1 and queue is None:  # `default` first, then the others by name
        merged = dict(sorted(merged.items(), key=lambda kv: (kv[0][0] != "default", kv[0][0])))
    parts = []
    for (q, name), count in merged.items():
        job_type, company = split_part(name)
        parts.append(Part(job_type, company, count, q))
    return parts


def ready_depth(client: SyncClient, keys: Keys | Sequence[Keys]) -> int:
    """Ready jobs in all parts of every queue (what the single queue zset's ZCARD used
    to be), of one key space or summed over several."""
    return sum(p.ready for p in ready_parts(client, keys))
