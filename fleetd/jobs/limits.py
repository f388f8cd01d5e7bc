"""Why a pending job waits: the answer's `waiting` reason, from the global [limits]
(fleetd.config.limit_sections, enforced by claim.lua) and the live daemons' job types.

Sans-IO: the caller reads the counts Redis holds (`limits:running`, the rate logs) and
the daemons' heartbeats; this module only compares.
"""

from __future__ import annotations

from collections.abc import Mapping

from fleetd.config.limit_sections import Limit, Limits, parse_limit, parse_types

__all__ = ["Limit", "Limits", "parse_limit", "parse_types", "waiting_reason"]


def waiting_reason(
    limits: Limits,
    job_type: str,
    company_id: str | None,
    running: Mapping[str, int],
    started: Mapping[str, int],
    handled: bool,
) -> str | None:
    """Why a ready pending job is not being claimed, or None when nothing holds it back.
    `running` / `started`: the counts Redis holds per limit field (concurrency, starts
    within the rate's window); `handled`: a live daemon has a handler for its type."""
    if not handled:
        return f"no running daemon has a handler for job type {job_type!r}"
    for name, lim in limits.for_job(job_type, company_id):
        what = f"job type {job_type!r}" if name.startswith("t:") else f"company {company_id!r}"
        if lim.concurrency and running.get(name, 0) >= lim.concurrency:
            return (
                f"concurrency limit of {what}: {running.get(name, 0)} of {lim.concurrency} running"
            )
        if lim.starts and started.get(name, 0) >= lim.starts:
            return f"rate limit of {what}: {lim.starts} starts per {lim.per:g}s reached"
    return None
