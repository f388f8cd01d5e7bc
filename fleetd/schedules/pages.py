"""Pages of the schedules, oldest first: what GET /jobs/scheduled and `fleetd schedules
list` read, one bounded Redis hop per page.

The index is `schedules:all`, or a company's own `schedules:company:<company>` (fleetd.
backend.keys), scored by creation ms; schedules created in the same millisecond come in
the order of their ids (Redis orders equal scores by member). The cursor is the last
schedule a page returned, "<creation ms>.<id>": the next page starts right after it in
that order, whether it still exists or not. So a schedule created or deleted between two
page reads moves no other one: every schedule that exists throughout is listed exactly
once, a new one (created now, so after every cursor) on a later page, a deleted one not
at all once gone. A cursor is only a position: read against a company's own index, it
never shows another company's schedules.

A page reads at most `limit + 1` index entries after the cursor's millisecond, the
entries of that millisecond itself (as many as were created in that one millisecond),
and the hashes of the schedules it returns. A schedule moved to another company keeps
its creation time: moved into the listed company behind the cursor, it shows up in the
next listing, not in this one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fleetd.jobs.model import ValidationError
from fleetd.jobs.pages import MAX_PAGE
from fleetd.schedules.model import ScheduledJob

if TYPE_CHECKING:
    from fleetd.backend.keys import Keys
    from fleetd.backend.redis_link import SyncClient

__all__ = [
    "CURSOR_PATTERN",
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "SchedulePage",
    "decode_cursor",
    "encode_cursor",
    "list_page",
]

# The page size when none is asked for, and the most one page holds: those of the job
# listings (fleetd.jobs.pages, fleetd.api.inputs).
DEFAULT_PAGE = 50
# "<creation ms>.<schedule id>": 17 digits hold any ms time; an id is 1 to 64 of
# A-Z a-z 0-9 _ . - (fleetd.schedules.model), any printable ASCII up to 128 accepted
# (a cursor is compared, never used as a key).
CURSOR_PATTERN = r"^[0-9]{1,17}\.[!-~]{1,128}$"
_CURSOR = re.compile(CURSOR_PATTERN)


@dataclass(frozen=True, slots=True)
class SchedulePage:
    schedules: list[ScheduledJob]
    next_cursor: str | None


def encode_cursor(score: int, schedule_id: str) -> str:
    return f"{score}.{schedule_id}"


def decode_cursor(cursor: str) -> tuple[int, str]:
    """(creation ms, id) of the last schedule the previous page returned."""
    if not _CURSOR.match(cursor):
        raise ValidationError("cursor", "must be the next_cursor of the previous page")
    score, _, schedule_id = cursor.partition(".")
    return int(score), schedule_id


def list_page(
    keys: Keys,
    client: SyncClient,
    *,
    company_id: str | None = None,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
) -> SchedulePage:
    """One page of the schedules (only `company_id`'s when set), oldest first, after
    `cursor` (see the module doc)."""
    limit = max(1, min(limit, MAX_PAGE))
    index = keys.schedules_all if company_id is None else keys.schedules_of(company_id)
    entries: list[tuple[str, float]]
    if cursor is None:
        entries = client.zrange(index, 0, limit, withscores=True)
    else:
        score, last = decode_cursor(cursor)
        pipe = client.pipeline(transaction=False)
        pipe.zrangebyscore(index, score, score, withscores=True)
        pipe.zrangebyscore(index, f"({score}", "+inf", start=0, num=limit + 1, withscores=True)
        same_ms, later = pipe.execute()
        entries = [e for e in same_ms if e[0] > last] + later
    more = len(entries) > limit
    entries = entries[:limit]
    pipe = client.pipeline(transaction=False)
    for schedule_id, _ in entries:
        pipe.hgetall(keys.schedule(schedule_id))
    # A schedule deleted between the two reads is left out (the page is one shorter).
    found = [ScheduledJob.readable(h) for h in pipe.execute() if h] if entries else []
    schedules = [j for j in found if company_id is None or j.company_id == company_id]
    next_cursor = None
    if more:
        last_id, last_score = entries[-1]
        next_cursor = encode_cursor(int(last_score), last_id)
    return SchedulePage(schedules, next_cursor)
