"""An enqueue that asks for more than a place in the queue: `"fallback": "sync"` and
`"bypass": true` (fleetd.runtime.inline; docs/OPERATIONS.md, "What happens during a
Redis outage").

Owns `enqueue_inline`, what `POST /api/v1/admin/jobs/enqueue` does with such a body:
- refused (422 naming the field) when the type does not declare `sync_fallback`, when a
  bypassed job is not critical, or when this daemon has no worker role to run it;
- Redis up: a bypass is stored claimed by this daemon and started at once (201; or
  enqueued as usual when every critical slot is busy, or before the pool has started,
  or when something a claim obeys holds its job — a bypass skips the claim, so it must
  not skip what the claim enforces, or one company could run past its limits in the
  slots every company's critical work shares: a `[limits]` limit of its type,
  company or queue and a company quota at the door are config, checked here (`_held`); its
  part quarantined and its queue paused are checked by land.lua itself, atomically
  with storing it, which then stores nothing (fleetd.runtime.inline); a fallback
  changes nothing;
- the queue unavailable (Redis known away — its last call failed — or this daemon's
  spool not emptied within `[http] redis_timeout`, fleetd.spool.service): the
  job runs here, within its time limit, is spooled finished and answered 200 with its
  outcome — `completed` and the result, or `failed` and the error — unless the attempt
  to store it failed after the connection was made (Redis may have run it: spooled as
  a plain enqueue instead, 202, so that it runs once); with no spool
  (`[spool] enabled = false`) nothing could record it: 503 as without a fallback.
"""

from __future__ import annotations

import logging
from typing import Any

from fleetd.api import bodies
from fleetd.api.context import enqueue_rows, principal, redis, spool_clear, state
from fleetd.api.errors import ApiError
from fleetd.api.inputs import InlineEnqueueRequest
from fleetd.backend.codec import JobRow
from fleetd.backend.redis_link import RedisUnavailable
from fleetd.jobs.contract import allows_sync_fallback
from fleetd.jobs.fields import Priority
from fleetd.jobs.model import ValidationError as Invalid
from fleetd.jobs.queue import EnqueueResult
from fleetd.spool.file import SpoolError
from fleetd.spool.finished import Finished
from fleetd.spool.outage import may_have_run

__all__ = ["enqueue_inline"]

log = logging.getLogger("fleetd.api")


def _check(req: InlineEnqueueRequest, row: JobRow) -> None:
    st = state()
    handler = st.registry.require(row.type)
    if req.fallback == "sync" and not allows_sync_fallback(handler):
        raise Invalid(
            "fallback",
            f"job type {row.type!r} does not declare sync_fallback: it cannot run inline",
        )
    if req.bypass:
        if row.priority != Priority.CRITICAL:
            raise Invalid("bypass", f"only critical jobs (priority 20) bypass the queue, "
                                    f"this one has priority {row.priority}")  # fmt: skip
        # By role, not by a started pool: a worker daemon that has not reached Redis
        # yet (started during an outage) runs a bypass inline, as a connected one does.
        if st.inline is None or "worker" not in st.config.daemon.roles:
            raise Invalid("bypass", "this daemon has no worker role to run the job: send "
                                    "it to a daemon with `worker` in [daemon] roles")  # fmt: skip


def _answer(result: EnqueueResult, done: Finished | None, ran: str) -> dict[str, Any]:
    body = bodies.InlineEnqueueResponse.from_result(result, done, ran)
    return body.jsonable()


async def enqueue_inline(
    req: InlineEnqueueRequest, row: JobRow
) -> tuple[EnqueueResult, dict[str, Any], int]:
    """The enqueue of a body with `fallback` or `bypass` (see the module's docstring):
    (its result, its answer's body, its status)."""
    _check(req, row)
    st = state()
    inline = st.inline
    if inline is None:  # an app built without one (tests' bare apps)
        raise ApiError.unavailable("this API cannot run jobs inline")
    spool = st.spool
    try:
        if req.bypass and not st.link.down and inline.pool is not None and not _held(row):
            result = await inline.bypass(row)
            if result is not None:
                ran = "" if result.duplicate else "bypass"
                return result, _answer(result, None, ran), 200 if result.duplicate else 201
            # Every critical slot is busy, or land.lua held it (quarantined, paused):
            # queued as any critical job (claimed next, under what the claim enforces).
            return await _queued(row)
        if not st.link.down and (spool is None or await spool_clear(spool)):
            [result] = await redis(lambda c: st.ops.enqueue_rows(c, [row]))
            return result, _answer(result, None, ""), 200 if result.duplicate else 201
    except RedisUnavailable as exc:
        if may_have_run(exc):  # the connection broke: Redis may hold the job already
            return await _queued(row)  # spooled: its replay finds it, or enqueues it, once
        # No connection could be made: the queue is unavailable, run here.
    if req.bypass and not req.fallback and not inline.free_slot():
        return await _queued(row)  # spooled as any critical job
    if spool is None:
        raise ApiError.unavailable("no spool to record a job run inline ([spool] enabled = false)")
    if spool.jobs >= spool.spool.max_jobs:  # checked before it runs; SpoolError below is rarer
        raise ApiError.unavailable("the spool is full: the job did not run")
    try:
        result, done = await inline.run_here(
            row, door="http", subject=principal().subject, slot=req.bypass
        )
    except SpoolError as exc:
        log.warning("a job ran inline but the spool refused its record: %s", exc)
        raise ApiError.unavailable(
            f"the job ran, but the spool cannot record it: {exc.public}"
        ) from None
    return result, _answer(result, done, "bypass" if req.bypass else "sync"), 200


def _held(row: JobRow) -> bool:
    """Whether the config says a claim would have to check something for `row` before
    starting it (a `[limits]` limit of its type, company or queue, a company quota at
    the door): then it is not bypassed but enqueued as usual. No Redis call: quarantine and
    pause are land.lua's to check, in the same script that would store the job."""
    limits = state().config.limits.build()
    if limits.for_job(row.type, row.company_id, row.queue):
        return True
    return bool(row.company_id) and bool(limits.max_pending or limits.enqueue.starts)


async def _queued(row: JobRow) -> tuple[EnqueueResult, dict[str, Any], int]:
    [result] = await enqueue_rows([row])
    status = 202 if result.status == "spooled" else 200 if result.duplicate else 201
    return result, _answer(result, None, ""), status
