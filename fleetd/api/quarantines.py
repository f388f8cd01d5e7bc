"""Quarantine endpoints of the admin API (fleetd.jobs.quarantine).

Owns `GET /api/v1/admin/quarantines` (the held job types and companies: every one for
a platform admin, its own company's for a company-bound token) and
`DELETE /api/v1/admin/quarantines/{job_type}[/{company_id}]` (release: claims serve
the part again and its held jobs run; platform admins only, audited as
`quarantine.release`). A part of no company is released without the company segment.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, g, jsonify

from fleetd.api import bodies
from fleetd.api.context import admin, audited, principal, redis, require_platform, state
from fleetd.api.errors import ApiError
from fleetd.api.operations import documented
from fleetd.jobs.quarantine import list_quarantines, release

__all__ = ["bp"]

bp = Blueprint("quarantines", __name__, url_prefix="/api/v1/admin/quarantines")


@bp.get("")
@documented(
    "Quarantined job types and companies", {200: (bodies.QuarantineList, "OK")}, tag="operations"
)
@admin
async def quarantines() -> Any:
    p, spaces = principal(), state().ops.spaces
    found = await redis(lambda c: list_quarantines(c, spaces, p.company_id, every=p.platform))
    items = [q.to_dict() for q in found]
    return jsonify(bodies.QuarantineList(quarantines=items, count=len(items)).jsonable())  # type: ignore[arg-type]


@bp.delete("/<job_type>")
@bp.delete("/<job_type>/<company_id>")
@documented(
    "Release a quarantined job type of a company: its held jobs run (platform admins)",
    {200: (bodies.QuarantineReleased, "OK")},
    "404",
    tag="operations",
)
@admin
@audited("quarantine.release")
async def release_quarantine(job_type: str, company_id: str | None = None) -> Any:
    require_platform("releasing a quarantine")
    st = state()
    g.audit_target = f"{job_type}/{company_id or ''}"
    spaces = st.ops.spaces  # released in every key space (fleetd.backend.spaces)
    got = await redis(lambda c: release(c, spaces, job_type, company_id))
    if got is None:
        raise ApiError.not_found(
            f"job type {job_type!r} of company {company_id or ''!r} is not quarantined"
        )
    g.audit_detail = {"failures": got.failures, "kinds": got.kinds}
    return jsonify(bodies.QuarantineReleased(released=got.to_dict()).jsonable())  # type: ignore[arg-type]
