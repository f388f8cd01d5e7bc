"""Queue operations shared by the HTTP layer, the CLI and the sync client.

Owns what a caller can do to jobs: enqueue one or many (one round trip), get, list by
status (newest first, cursor-paginated), cancel, reset, stats, cleanup, and the live
daemons' metrics. `QueueOps` holds the logic as synchronous methods that take a Redis
client, so each operation is one RedisLink hop; `Queue` is the async (trio) facade and
`fleetd.client.Client` the synchronous one.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetd.backend.codec import JobRow, row_from_request
from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import RedisLink, SyncClient
from fleetd.backend.replication import replicated
from fleetd.backend.scripts import Scripts
from fleetd.backend.spaces import Space, Spaces
from fleetd.jobs import counts
from fleetd.jobs.handlers import HandlerDefaults, HandlerRegistry
from fleetd.jobs.model import (
    TERMINAL_STATUSES,
    EnqueueRequest,
    Job,
    JobStatus,
    ValidationError,
    new_job_id,
)
from fleetd.jobs.pages import JobFilter, JobPage, list_status
from fleetd.jobs.payload import MAX_DATA_BYTES, MAX_DATA_DEPTH, encode_data
from fleetd.jobs.queues import route
from fleetd.jobs.receipts import EnqueueResult
from fleetd.jobs.sealing import EncryptionUnavailable, Sealer, SealError

__all__ = [
    "CancelResult",
    "EnqueueResult",
    "JobDefaults",
    "JobFilter",
    "JobPage",
    "Queue",
    "QueueOps",
    "ResetResult",
]

# Jobs one enqueue_many call sends in one script call; larger inputs go in chunks of
# this size inside the same hop (a script call must stay short: Redis runs one at a time).
ENQUEUE_CHUNK = 1000
# Finished jobs deleted per prune call while cleaning up.
PRUNE_BATCH = 500


@dataclass(frozen=True, slots=True)
class JobDefaults:
    """The config's [worker] defaults, used where neither caller nor handler says."""

    priority: int = 5
    max_retries: int = 3
    timeout: float = 300.0
    # The limits every door holds, whatever HTTP adds ([http] max_body_size and
    # max_json_depth): bytes of a job's data as JSON, and its nesting.
    max_data_bytes: int = MAX_DATA_BYTES
    max_data_depth: int = MAX_DATA_DEPTH
    # [queues] routes: job type → named queue (fleetd.jobs.queues.route).
    routes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CancelResult:
    """outcome: cancelled (done), cancelling (running; its daemon was told), final (already
    completed, failed or cancelled), missing (no such job)."""

    outcome: str
    status: str


@dataclass(frozen=True, slots=True)
class ResetResult:
    """outcome: reset, refused (not failed or cancelled), missing."""

    outcome: str
    status: str


class QueueOps:
    """The queue's logic; every method taking `client` runs inside one Redis hop."""

    def __init__(
        self,
        keys: Keys,
        scripts: Scripts,
        registry: HandlerRegistry,
        defaults: JobDefaults,
        sealer: Sealer | None = None,
        quota: str = "",
        wait: tuple[int, int] = (0, 0),
        spaces: Spaces | None = None,
    ) -> None:
        self.keys = keys
        # Where each queue's jobs are stored (the namespace's space alone by default).
        self.spaces = spaces or Spaces(scripts)
        # ([redis] wait_replicas, wait_timeout ms): WAIT after every enqueue call.
        self.wait = wait
        # The companies' quotas at the door (Limits.encode_quota; '' = none).
        self.quota = quota
        self.scripts = scripts
        self.registry = registry
        self.defaults = defaults
        # Seals sensitive data at enqueue and opens it in the worker; None = this
        # process has no keys ([encryption]), so a job needing them is refused.
        self.sealer = sealer

    # -- enqueue ---------------------------------------------------------------------

    def prepare(self, req: EnqueueRequest | Mapping[str, Any], *, seal: bool = True) -> JobRow:
        """Validate one request against its handler and stamp defaults: the row that
        enqueue.lua takes, its data sealed (`encrypt`, or fields the handler marks
        sensitive) unless `seal` is False. Raises ValidationError (nothing is sent)."""
        if not isinstance(req, EnqueueRequest):
            req = EnqueueRequest.from_dict(req)
        handler = self.registry.require(req.type)
        data = self.registry.validate(handler, dict(req.data))
        paths: Sequence[str] | None = ()
        if seal:
            paths = None if req.encrypt else self.registry.sensitive(req.type)
        return self.build_row(req, data, handler.defaults, paths)

    def build_row(
        self,
        req: EnqueueRequest,
        data: dict[str, Any],
        handler_defaults: HandlerDefaults | None,
        seal_paths: Sequence[str] | None,
    ) -> JobRow:
        """The one constructor of a job's row, for `prepare` and for schedules whose
        handler is not installed here (`handler_defaults` None: the config's defaults).
        `data` is already validated; it is sealed whole when `seal_paths` is None, at
        those paths when there are some, not at all when empty."""
        job_id = new_job_id()
        marker = ""
        if seal_paths is None or seal_paths:
            data, marker = self.seal(data, f"job:{job_id}", seal_paths)
        hd = HandlerDefaults() if handler_defaults is None else handler_defaults
        max_retries = req.max_retries
        if max_retries is None:
            max_retries = self.defaults.max_retries if hd.max_retries is None else hd.max_retries
        data_json = encode_data(data, self.defaults.max_data_bytes, self.defaults.max_data_depth)
        return row_from_request(
            req,
            id=job_id,
            data=data_json,
            priority=req.priority or hd.priority or self.defaults.priority,
            max_retries=max_retries,
            timeout=req.timeout or hd.timeout,
            sealed=marker,
            queue=route(req.type, req.queue, dict(self.defaults.routes), hd.queue),
        )

    def seal(
        self, data: dict[str, Any], context: str, paths: Sequence[str] | None
    ) -> tuple[dict[str, Any], str]:
        """`data` sealed for `context` (all of it when `paths` is None) and its marker.
        Unusable keys raise EncryptionUnavailable (the server's problem, not the data's)."""
        if self.sealer is None:
            raise EncryptionUnavailable("cannot encrypt: no [encryption] keys in this process")
        try:
            return self.sealer.seal_data(data, context, paths)
        except SealError as exc:
            raise EncryptionUnavailable(f"cannot encrypt: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ValidationError("data", f"cannot encrypt: {exc}") from None

    def prepare_many(self, reqs: Sequence[EnqueueRequest | Mapping[str, Any]]) -> list[JobRow]:
        """All or nothing: the first invalid request raises, its index in the field path."""
        rows = []
        for i, req in enumerate(reqs):
            try:
                rows.append(self.prepare(req))
            except ValidationError as exc:
                raise exc.prefixed(f"jobs[{i}].") from None
        return rows

    def enqueue_rows(
        self, client: SyncClient, rows: Sequence[JobRow], *, at_door: bool = True
    ) -> list[EnqueueResult]:
        """Store `rows`, each in its queue's space (fleetd.backend.spaces); `at_door=False`
        for jobs already accepted (a spool's replay): the companies' quotas were the
        door's to apply, and a replay they held back would hold every other company's
        spooled jobs behind it. Rows of several spaces: each space's quotas are checked
        first, so a refusal stores none of them."""
        quota = self.quota if at_door else ""
        parts: dict[str, tuple[Space, list[int]]] = {}
        spread = self.spaces.routes(client)  # else every row is the namespace's
        for i, row in enumerate(rows):
            space = self.spaces.for_queue(client, row.queue) if spread else self.spaces.home
            parts.setdefault(space.queue, (space, []))[1].append(i)
        if len(parts) > 1 and quota:
            for space, idx in parts.values():
                space.scripts.quota_check(client, [rows[i] for i in idx], quota)
            quota = ""
        out: list[EnqueueResult | None] = [None] * len(rows)
        for space, idx in parts.values():
            mine = rows if len(parts) == 1 else [rows[i] for i in idx]
            store = functools.partial(self._store, scripts=space.scripts, rows=mine, quota=quota)
            stored = replicated(client, space.keys, self.wait, store)
            for i, result in zip(idx, stored, strict=True):
                out[i] = result
        return [r for r in out if r is not None]

    @staticmethod
    def _store(
        client: SyncClient, scripts: Scripts, rows: Sequence[JobRow], quota: str
    ) -> list[EnqueueResult]:
        if quota and len(rows) > ENQUEUE_CHUNK:  # stored in parts: checked once, for all
            scripts.quota_check(client, rows, quota)
            quota = ""
        out: list[EnqueueResult] = []
        for start in range(0, len(rows), ENQUEUE_CHUNK):
            results = scripts.enqueue(client, rows[start : start + ENQUEUE_CHUNK], quota)
            out.extend(EnqueueResult(i, st, at, dup) for i, st, dup, at in results)
        return out

    # -- read ------------------------------------------------------------------------

    def get(self, client: SyncClient, job_id: str) -> Job | None:
        return self.get_many(client, [job_id])[0]

    def get_many(self, client: SyncClient, job_ids: Sequence[str]) -> list[Job | None]:
        """Each job from whichever space holds it (one pipeline over every space)."""
        spaces = self.spaces.known(client)
        pipe = client.pipeline(transaction=False)
        for job_id in job_ids:
            for space in spaces:
                pipe.hgetall(space.keys.job(job_id))
        found = pipe.execute()
        n, out = len(spaces), []
        for i in range(len(job_ids)):
            h = next((h for h in found[i * n : (i + 1) * n] if h), None)
            out.append(Job.from_hash(h) if h else None)
        return out

    def exist(self, client: SyncClient, job_ids: Sequence[str]) -> list[bool]:
        """Whether each job exists in any space (one pipeline)."""
        return counts.jobs_exist(client, [s.keys.job for s in self.spaces.known(client)], job_ids)

    def list_jobs(
        self,
        client: SyncClient,
        status: JobStatus,
        *,
        limit: int = 50,
        cursor: str | None = None,
        company_id: str | None = None,
        job_type: str | None = None,
        user_id: str | None = None,
        text: str | None = None,
        queue: str | None = None,
    ) -> JobPage:
        """One page of `status`, newest first (fleetd.jobs.pages.list_status)."""
        match = JobFilter(company_id, job_type, user_id, text, queue)
        return list_status(self, client, status, limit=limit, cursor=cursor, match=match)

    def stats(self, client: SyncClient) -> dict[str, int]:
        """The spec's stats plus retrying and cancelled, summed over every space; total
        is their sum."""
        return counts.stats(client, *self.spaces.all_keys(client))

    def daemons(self, client: SyncClient) -> list[dict[str, Any]]:
        """Identity and WorkerMetrics of every daemon with a live heartbeat."""
        return counts.daemons(client, self.keys)

    # -- admin -----------------------------------------------------------------------

    def cancel(self, client: SyncClient, job_id: str) -> CancelResult:
        return CancelResult(*self.spaces.locate(client, job_id).scripts.cancel(client, job_id))

    def reset(self, client: SyncClient, job_id: str) -> ResetResult:
        """A failed or cancelled job back to pending, under its company's quotas (it
        counts as one enqueued): over one raises QuotaExceeded and nothing changes."""
        scripts = self.spaces.locate(client, job_id).scripts
        return ResetResult(*scripts.reset(client, job_id, self.quota))

    def cleanup(
        self,
        client: SyncClient,
        older_than: float,
        statuses: Sequence[JobStatus] = tuple(TERMINAL_STATUSES),
    ) -> dict[str, int]:
        """Delete finished jobs that finished more than `older_than` seconds ago, in
        bounded batches, and the workflows that ended so (completed, failed, cancelled)
        with every node's job (a node's job goes with its workflow, never before).
        Returns the jobs deleted per status (a workflow's under its own status),
        `deleted` in all, and `workflows`."""
        for status in statuses:
            if status not in TERMINAL_STATUSES:
                raise ValidationError("status", f"only finished jobs are cleaned up, not {status}")
        counts: dict[str, int] = {}
        workflows, age_ms = 0, int(older_than * 1000)
        for status in sorted(statuses, key=lambda s: s.value):
            total, more, cutoff = 0, True, None
            while more:
                n_wf, n, more, cutoff = self.scripts.prune_workflows(
                    client, status, age_ms, PRUNE_BATCH, cutoff
                )
                workflows += n_wf
                total += n
            for space in self.spaces.known(client):  # workflows live in the namespace's
                kept = 0
                while True:
                    n, k = space.scripts.prune(client, status, age_ms, PRUNE_BATCH, kept)
                    total += n
                    kept += k
                    if n + k < PRUNE_BATCH:
                        break
            counts[status.value] = total
        counts["deleted"] = sum(counts.values())
        counts["workflows"] = workflows
        return counts


class Queue:
    """The async facade: each call validates on the trio thread, then takes one hop."""

    def __init__(self, link: RedisLink, ops: QueueOps) -> None:
        self.link = link
        self.ops = ops

    async def enqueue(self, req: EnqueueRequest | Mapping[str, Any]) -> EnqueueResult:
        row = self.ops.prepare(req)
        return (await self.link.call(self.ops.enqueue_rows, [row]))[0]

    async def enqueue_many(
        self, reqs: Sequence[EnqueueRequest | Mapping[str, Any]]
    ) -> list[EnqueueResult]:
        rows = self.ops.prepare_many(reqs)
        return await self.link.call(self.ops.enqueue_rows, rows)

    async def get(self, job_id: str) -> Job | None:
        return await self.link.call(self.ops.get, job_id)

    async def list_jobs(
        self,
        status: JobStatus | str,
        *,
        limit: int = 50,
        cursor: str | None = None,
        company_id: str | None = None,
        job_type: str | None = None,
        user_id: str | None = None,
        text: str | None = None,
    ) -> JobPage:
        try:
            st = JobStatus(status)
        except ValueError:
            raise ValidationError("status", f"unknown status {status!r}") from None
        return await self.link.call(
            lambda c: self.ops.list_jobs(
                c,
                st,
                limit=limit,
                cursor=cursor,
                company_id=company_id,
                job_type=job_type,
                user_id=user_id,
                text=text,
            )
        )

    async def cancel(self, job_id: str) -> CancelResult:
        return await self.link.call(self.ops.cancel, job_id)

    async def reset(self, job_id: str) -> ResetResult:
        return await self.link.call(self.ops.reset, job_id)

    async def stats(self) -> dict[str, int]:
        return await self.link.call(self.ops.stats)

    async def cleanup(self, older_than: float) -> dict[str, int]:
        return await self.link.call(self.ops.cleanup, older_than)

    async def daemons(self) -> list[dict[str, Any]]:
        return await self.link.call(self.ops.daemons)
