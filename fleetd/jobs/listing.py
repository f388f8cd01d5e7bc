"""Listing jobs of every status at once, newest first: what `fleetd jobs list` without
`--status` shows.

Owns the merge of the status indexes (fleetd.backend.keys `status()`: creation time for
pending and retrying, lease deadline for processing, finish time for completed, failed
and cancelled) into one page ordered by that score, newest first: the most recently
created or finished jobs lead. The cursor holds one position per status, each in the
form a single-status listing uses ("<score>.<entries at that score seen>",
fleetd.jobs.queue), so a page continues every index where it stopped.

Bounded work per page, like QueueOps.list_jobs: at most `window + 1` entries of each of
the six indexes (window = the page size, or the filter's scan window with --company,
--type, --user or a search text), HMGETs of three short fields for at most `window` of
them when filtered (fleetd.jobs.queue.JobFilter), and the
whole hash of the jobs returned only. A job that changes status between two pages may
show up on both or on neither, as with listing by status.
"""

from __future__ import annotations

import heapq
import itertools
from typing import TYPE_CHECKING

from fleetd.jobs.model import JobStatus, ValidationError
from fleetd.jobs.pages import (
    MAX_PAGE,
    JobFilter,
    JobPage,
    decode_cursor,
    encode_cursor,
    load,
    matching,
    read_indexes,
    scan_window,
)

if TYPE_CHECKING:
    from fleetd.backend.keys import Keys
    from fleetd.backend.redis_link import SyncClient
    from fleetd.jobs.queue import QueueOps

__all__ = ["list_all_statuses"]

# One cursor part per status, in this order; "" = not started (from the newest).
STATUS_ORDER = tuple(JobStatus)
_SEP = ","


def _decode(cursor: str | None) -> list[tuple[int | None, int]]:
    """Each index's (top score, entries at it already seen); None = from the newest."""
    if cursor is None:
        return [(None, 0)] * len(STATUS_ORDER)
    parts = cursor.split(_SEP)
    if len(parts) != len(STATUS_ORDER):
        raise ValidationError("cursor", f"malformed cursor {cursor!r}")
    return [(None, 0) if not p else decode_cursor(p) for p in parts]


def list_all_statuses(
    ops: QueueOps,
    client: SyncClient,
    *,
    limit: int = 50,
    cursor: str | None = None,
    company_id: str | None = None,
    job_type: str | None = None,
    user_id: str | None = None,
    text: str | None = None,
    queue: str | None = None,
) -> JobPage:
    """One page of jobs of every status, newest first (see the module doc)."""
    limit = max(1, min(limit, MAX_PAGE))
    match = JobFilter(company_id, job_type, user_id, text, queue)
    filtered = match.active
    window = scan_window(limit) if filtered else limit
    positions = _decode(cursor)
    spaces = ops.spaces.all_keys(client)
    pairs = zip(STATUS_ORDER, positions, strict=True)
    reads = [(st, top, skip, window + 1) for st, (top, skip) in pairs]
    per_status = read_indexes(client, spaces, reads)
    # Newest first across the indexes; ties by status order, then index order.
    merged = heapq.merge(
        *(
            [(-int(score), i, n, job_id, keys) for n, (job_id, score, keys) in enumerate(entries)]
            for i, entries in enumerate(per_status)
        )
    )
    examined = list(itertools.islice(merged, window))
    found = [(job_id, 0.0, keys) for *_, job_id, keys in examined]
    wanted = matching(client, found, match) if filtered else {e[0] for e in found}
    picked: list[tuple[str, Keys]] = []
    consumed = [0] * len(STATUS_ORDER)  # entries of each index this page went past
    for _, i, _, job_id, keys in examined:
        consumed[i] += 1
        if job_id in wanted:
            picked.append((job_id, keys))
            if len(picked) == limit:
                break
    parts: list[str] = []
    more = False
    for i, entries in enumerate(per_status):
        top, skip = positions[i]
        if consumed[i]:
            last = int(entries[consumed[i] - 1][1])
            at_last = sum(1 for _, s, _ in entries[: consumed[i]] if int(s) == last)
            skip = skip + at_last if top == last else at_last
            top = last
        more = more or len(entries) > consumed[i]
        parts.append("" if top is None else encode_cursor(top, skip))
    jobs = load(client, picked)
    return JobPage(jobs, _SEP.join(parts) if more else None)
