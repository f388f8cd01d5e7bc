"""Pages of one status's jobs, newest first: the page and cursor shapes, the filter a
listing applies (company, type, user, search text), and the bounded scan that serves a
filtered page (fleetd.jobs.listing merges every status from these parts)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fleetd.jobs.model import Job, JobStatus, ValidationError

if TYPE_CHECKING:
    from fleetd.backend.keys import Keys
    from fleetd.backend.redis_link import SyncClient
    from fleetd.jobs.queue import QueueOps

__all__ = ["MAX_PAGE", "JobFilter", "JobPage", "list_status", "load", "read_indexes"]

# Most jobs one listing page returns (the HTTP layer caps at 500 too).
MAX_PAGE = 500
# A filtered listing examines at most this many index entries per requested job before
# it returns a shorter page with a cursor (bounds the work of a sparse filter)...
FILTER_SCAN_FACTOR = 20
# ...and at most this many in all, whatever the page size. Each costs one HMGET of three
# short fields, ~10 µs here (mostly redis-py's pipeline): 2,000 bound a page's filter
# work to ~20 ms. Before, a 500-job page of a company with no jobs in a 50k index read
# 10,000 whole hashes: ~0.2 s with 1 KB of data each, more with larger data.
MAX_FILTER_SCAN = 2_000


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What a filtered listing keeps: every given field equal (None = any), and
    `text` a case-insensitive part of the job's id, type, company or user."""

    company_id: str | None = None
    job_type: str | None = None
    user_id: str | None = None
    text: str | None = None
    # A named queue (fleetd.jobs.queues); a job without the field is in `default`.
    queue: str | None = None

    @property
    def active(self) -> bool:
        given = (self.company_id, self.job_type, self.user_id, self.queue)
        return any(v is not None for v in given) or bool(self.text)

    def accepts(
        self, job_id: str, kind: str, company: str | None, user: str | None, queue: str = "default"
    ) -> bool:
        if self.queue is not None and queue != self.queue:
            return False
        if self.company_id is not None and company != self.company_id:
            return False
        if self.job_type is not None and kind != self.job_type:
            return False
        if self.user_id is not None and user != self.user_id:
            return False
        if self.text:
            needle = self.text.casefold()
            return any(needle in v.casefold() for v in (job_id, kind, company, user) if v)
        return True


def encode_cursor(score: int, skip: int) -> str:
    return f"{score}.{skip}"


def decode_cursor(cursor: str) -> tuple[int, int]:
    score, _, skip = cursor.partition(".")
    try:
        return int(score), int(skip)
    except ValueError:
        raise ValidationError("cursor", f"malformed cursor {cursor!r}") from None


def scan_window(limit: int) -> int:
    """Index entries one filtered page may examine."""
    return min(limit * FILTER_SCAN_FACTOR, MAX_FILTER_SCAN)


# One index read: (status, top score or None for the newest, entries at top already
# seen, how many to return).
IndexRead = tuple[JobStatus, "int | None", int, int]


def read_indexes(
    client: SyncClient, spaces: Sequence[Keys], reads: Sequence[IndexRead]
) -> list[list[tuple[str, float, Keys]]]:
    """Each read's entries (job id, score, the space's keys), newest first, from one
    pipeline. Over several spaces (fleetd.backend.spaces) a status's indexes read as one:
    each is read from `top` and the entries merged by (score, id) descending — the order
    ZREVRANGEBYSCORE keeps within one — so `skip` counts the entries at `top` of all of
    them, and a cursor made over several spaces continues exactly where it stopped."""
    pipe = client.pipeline(transaction=False)
    one = len(spaces) == 1
    for status, top, skip, num in reads:
        for keys in spaces:
            pipe.zrevrangebyscore(
                keys.status(status), "+inf" if top is None else top, "-inf",
                start=skip if one else 0, num=num if one else skip + num, withscores=True,
            )  # fmt: skip
    got = iter(pipe.execute())
    out: list[list[tuple[str, float, Keys]]] = []
    for _, _, skip, num in reads:
        if one:
            out.append([(job_id, score, spaces[0]) for job_id, score in next(got)])
            continue
        entries = [(job_id, score, keys) for keys in spaces for job_id, score in next(got)]
        entries.sort(key=lambda e: (e[1], e[0]), reverse=True)
        out.append(entries[skip : skip + num])
    return out


def list_status(
    ops: QueueOps,
    client: SyncClient,
    status: JobStatus,
    *,
    limit: int = 50,
    cursor: str | None = None,
    match: JobFilter | None = None,
) -> JobPage:
    """Newest first (by creation for pending/processing/retrying, by finish time for
    completed/failed/cancelled). The cursor is "<score>.<entries at that score seen>",
    stable while jobs are added.

    A filtered page (company, type, user, text) examines at most `scan_window(limit)`
    index entries, reading only the short fields the filter needs, then the whole hash
    of the jobs it returns: a sparse filter answers a shorter page, or an empty one,
    with a cursor to go on, instead of reading the whole index in one request. `text`
    matches (case-insensitive, a part of) the job's id, type, company or user: the
    dashboard's search."""
    limit = max(1, min(limit, MAX_PAGE))
    match = match or JobFilter()
    filtered = match.active
    window = scan_window(limit) if filtered else limit
    top, skip = ("+inf", 0) if cursor is None else decode_cursor(cursor)
    spaces = ops.spaces.all_keys(client)
    start = None if cursor is None else int(top)
    [entries] = read_indexes(client, spaces, [(status, start, skip, window + 1)])
    has_more = len(entries) > window
    entries = entries[:window]
    wanted = matching(client, entries, match) if filtered else {e[0] for e in entries}
    picked: list[tuple[str, Keys]] = []
    last_score, seen_at_score = start, skip
    for i, (job_id, score, keys) in enumerate(entries):
        s = int(score)
        seen_at_score = seen_at_score + 1 if s == last_score else 1
        last_score = s
        if job_id in wanted:
            picked.append((job_id, keys))
            if len(picked) == limit:
                has_more = has_more or i < len(entries) - 1
                break
    jobs = load(client, picked)
    next_cursor = None
    if has_more and last_score is not None:
        next_cursor = encode_cursor(last_score, seen_at_score)
    return JobPage(jobs, next_cursor)


def load(client: SyncClient, picked: Sequence[tuple[str, Keys]]) -> list[Job]:
    """The whole hash of each (job id, its space's keys), read where the index entry was
    found (one pipeline). A job pruned between the reads is left out (the page is one
    shorter)."""
    pipe = client.pipeline(transaction=False)
    for job_id, keys in picked:
        pipe.hgetall(keys.job(job_id))
    return [Job.from_hash(h) for h in pipe.execute() if h]


def matching(
    client: SyncClient, entries: Sequence[tuple[str, float, Keys]], match: JobFilter
) -> set[str]:
    """The ids of `entries` (read_indexes) whose job `match` accepts: three short fields
    per job, not the whole hash (its data may be kilobytes)."""
    pipe = client.pipeline(transaction=False)
    for job_id, _, keys in entries:
        pipe.hmget(keys.job(job_id), "company_id", "type", "user_id", "queue")
    ids = [e[0] for e in entries]
    return {
        job_id
        for job_id, (company, kind, user, queue) in zip(ids, pipe.execute(), strict=True)
        if kind is not None  # pruned between the two reads
        and match.accepts(job_id, kind, company, user, queue or "default")
    }
