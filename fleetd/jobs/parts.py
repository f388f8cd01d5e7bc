"""Parts of the ready queue: the ready jobs of one job type and one company.

Ready jobs wait in one zset per part (`Keys.ready`), indexed by `Keys.queue` (see
claim.lua and `ready_add` in _lib.lua): a daemon skips the parts of types it has no
handler for, and serves the parts of one priority in turn (fair share between
companies). Here: the spelling of a part (as _lib.lua's `part_of`) and the readings
built on it — the ready depth in total and per part.
"""

from __future__ import annotations

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


def ready_parts(client: SyncClient, keys: Keys, queue: str | None = None) -> list[Part]:
    """Every part with ready jobs and its count, of one named queue or (None) of every
    queue (`default` first, then the others of the set `queues`), each queue's in its
    index's (claim) order."""
    if queue is None:
        queues = ["default", *sorted(str(q) for q in client.smembers(keys.queues))]
    else:
        queues = [queue]
    pipe = client.pipeline(transaction=False)
    for q in queues:
        pipe.zrange(keys.queue_index(q), 0, -1)
    found = [(q, str(n)) for q, names in zip(queues, pipe.execute(), strict=True) for n in names]
    if not found:
        return []
    pipe = client.pipeline(transaction=False)
    for q, name in found:
        pipe.zcard(keys.ready_in(q, name))
    counts = pipe.execute()
    parts = []
    for (q, name), count in zip(found, counts, strict=True):
        job_type, company = split_part(name)
        parts.append(Part(job_type, company, int(count), q))
    return parts


def ready_depth(client: SyncClient, keys: Keys) -> int:
    """Ready jobs in all parts of every queue (what the single queue zset's ZCARD used
    to be)."""
    return sum(p.ready for p in ready_parts(client, keys))
