"""Why a pending job waits: the answer's `waiting` reason, from a quarantine of its part
(fleetd.jobs.quarantine), the global [limits]
(fleetd.config.limit_sections, enforced by claim.lua), the live daemons' queues and job
types.

Sans-IO: the caller reads the counts Redis holds (`limits:running`, the rate logs) and
the daemons' heartbeats; this module only compares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.config.limit_sections import Limit, Limits, parse_limit, parse_types
from fleetd.jobs.model import Job, JobStatus
from fleetd.jobs.quarantine import read_quarantine
from fleetd.jobs.queues import served_by

__all__ = ["Limit", "Limits", "parse_limit", "parse_types", "read_waiting", "waiting_reason"]


def waiting_reason(
    limits: Limits,
    job_type: str,
    company_id: str | None,
    running: Mapping[str, int],
    started: Mapping[str, int],
    handled: bool,
    unserved: str | None = None,
    queue: str | None = None,
) -> str | None:
    """Why a ready pending job is not being claimed, or None when nothing holds it back.
    `running` / `started`: the counts Redis holds per limit field (concurrency, starts
    within the rate's window); `handled`: a live daemon serving its queue has a handler
    for its type; `unserved`: its queue, when live worker daemons run but none serves it;
    `queue`: its queue (None: `default`), for the queue's own limits."""
    if unserved is not None:
        return f"no running daemon serves queue {unserved!r}"
    if not handled:
        return f"no running daemon has a handler for job type {job_type!r}"
    for name, lim in limits.for_job(job_type, company_id, queue):
        what = {"t": f"job type {job_type!r}", "c": f"company {company_id!r}"}.get(
            name[0], f"queue {name[2:]!r}"
        )
        if lim.concurrency and running.get(name, 0) >= lim.concurrency:
            return (
                f"concurrency limit of {what}: {running.get(name, 0)} of {lim.concurrency} running"
            )
        if lim.starts and started.get(name, 0) >= lim.starts:
            return f"rate limit of {what}: {lim.starts} starts per {lim.per:g}s reached"
    return None


def read_waiting(
    client: SyncClient, keys: Keys, limits: Limits, daemons: Sequence[Mapping[str, Any]], job: Job
) -> str | None:
    """`waiting_reason` of a ready pending job, reading the counts it needs in one
    pipeline (None for any other job, and while nothing holds it back). `keys`: those of
    the key space holding the job (fleetd.backend.spaces.Spaces.locate), whose claims
    read that space's quarantines, paused queues and limit counts."""
    if job.status is not JobStatus.PENDING or job.worker:
        return None
    if job.run_at_ms is not None and client.zscore(keys.delayed, job.id) is not None:
        return None  # waiting for its run_at, which the answer shows
    held = read_quarantine(client, keys, job.type, job.company_id)
    if held is not None:
        return held.reason()
    if client.sismember(keys.queues_paused, job.queue):
        return f"queue {job.queue!r} is paused (fleetd queues resume {job.queue})"
    workers = [d for d in daemons if "worker" in d.get("roles", ())]
    serving = [d for d in workers if job.queue in served_by(d)]
    # With no worker at all, the handler's reason stands (and the no_worker alert).
    unserved = job.queue if workers and not serving else None
    handled = any(job.type in d.get("job_types", ()) for d in serving)
    fields = limits.for_job(job.type, job.company_id, job.queue)
    running: dict[str, int] = {}
    started: dict[str, int] = {}
    if fields:
        sec, usec = client.time()
        now = int(sec) * 1000 + int(usec) // 1000
        pipe = client.pipeline(transaction=False)
        for name, lim in fields:
            pipe.hget(keys.limits_running, name)
            pipe.zcount(keys.limits_rate(name), now - int(lim.per * 1000), "+inf")
        got = pipe.execute()
        for i, (name, _lim) in enumerate(fields):
            running[name] = int(got[2 * i] or 0)
            started[name] = int(got[2 * i + 1])
    return waiting_reason(
        limits, job.type, job.company_id, running, started, handled, unserved, job.queue
    )
