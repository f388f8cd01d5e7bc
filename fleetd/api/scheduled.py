"""Scheduled-job endpoints of the admin API, under /api/v1/admin/jobs/scheduled.

Owns create (POST), list (GET, cursor pages oldest first: fleetd.schedules.pages),
scheduler stats, get one (GET /{id}, an extension),
update (PUT, partial: the fields given change, the rest stay) and delete. Bodies come
from fleetd.schedules.model, the same `fleetd schedules … --json` prints. A company-bound
token creates its company's schedules and sees, changes and deletes only those; another
company's schedule answers 404. Names are unique per company, so two companies may both
use one; schedule ids are unique across the namespace, so a company-bound token cannot
choose one on create (422 on `id`): a taken id would answer 409 and tell it another
company has a schedule of that id. Platform admins may choose ids.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, StringConstraints
from quart import Blueprint, g, jsonify, request

from fleetd.api import bodies, responses
from fleetd.api.body import read_json
from fleetd.api.context import admin, audited, bind_company, principal, redis, state
from fleetd.api.inputs import Limit, Query, parse
from fleetd.api.operations import documented
from fleetd.backend.redis_link import SyncClient
from fleetd.jobs.model import ValidationError as Invalid
from fleetd.jobs.validation import explained
from fleetd.schedules import model as schedules
from fleetd.schedules import pages
from fleetd.schedules.model import ScheduledJob, ScheduleSpec
from fleetd.schedules.store import ScheduleNotFound

__all__ = ["bp"]

bp = Blueprint("scheduled", __name__, url_prefix="/api/v1/admin/jobs/scheduled")

T = TypeVar("T")

# Ids longer than this are never valid (as for jobs); refused without a Redis hop.
MAX_ID = 128

# Why a company-bound create may not name its schedule's id (see the module docstring).
CHOSEN_ID = (
    "a company-bound token cannot choose a schedule's id (ids are unique across all "
    "companies); leave it out and fleetd assigns one (names are unique per company)"
)

# next_cursor of the previous page: "<creation ms>.<schedule id>" (fleetd.schedules.pages).
Cursor = Annotated[
    Annotated[str, StringConstraints(pattern=pages.CURSOR_PATTERN)] | None,
    explained("must be the next_cursor of the previous page"),
    BeforeValidator(lambda v: None if v == "" else v),
]


class ListQuery(Query):
    """GET /jobs/scheduled."""

    limit: Limit = pages.DEFAULT_PAGE
    cursor: Cursor = None
    """next_cursor of the previous page"""


def _company_body(body: Any, creating: bool) -> dict[str, Any]:
    """The body with the caller's company applied (forced for company-bound tokens)."""
    if not isinstance(body, Mapping):
        raise Invalid("body", "must be a JSON object")
    out = dict(body)
    company = bind_company(out.get("company_id"))
    if company is not None and creating and out.get("id") is not None:
        raise Invalid("id", CHOSEN_ID)
    if company is not None and (creating or "company_id" in out):
        out["company_id"] = company
    if creating and not out.get("user_id"):
        out["user_id"] = principal().subject
    return out


def _visible(client: SyncClient, schedule_id: str) -> ScheduledJob:
    company = principal().company_id
    job = None if len(schedule_id) > MAX_ID else state().schedules.get(client, schedule_id)
    if job is None or (company is not None and job.company_id != company):
        raise ScheduleNotFound(f"no schedule {schedule_id!r}")
    return job


async def _on_visible(schedule_id: str, action: Callable[[SyncClient], T]) -> T:
    """Run `action` in one Redis hop on a schedule this caller may see (else 404)."""
    g.audit_target = schedule_id

    def run(client: SyncClient) -> T:
        _visible(client, schedule_id)
        return action(client)

    return await redis(run)


@bp.post("")
@documented(
    "Create a scheduled job",
    {201: (bodies.ScheduledJobResponse, "Created")},
    "409",
    body=ScheduleSpec,
    tag="scheduled",
)
@admin
@audited("schedule.create")
async def create() -> Any:
    st = state()
    body = _company_body(await read_json(st.limits), creating=True)
    job = await redis(lambda c: st.schedules.add(c, body))
    g.audit_target = job.id
    g.audit_detail = {"name": job.name, "job_type": job.job_type, "schedule": job.schedule}
    response, status = responses.answer(schedules.scheduled_job_body(job), 201)
    response.headers["Location"] = f"{bp.url_prefix}/{job.id}"
    return response, status


@bp.get("")
@documented(
    "Scheduled jobs, oldest first, a page at a time: follow next_cursor until null",
    {200: (bodies.ScheduledJobList, "OK")},
    query=ListQuery,
    tag="scheduled",
)
@admin
async def list_all() -> Any:
    q = parse(ListQuery, request.args.to_dict())
    keys = state().schedules.keys
    company = principal().company_id
    page = await redis(
        lambda c: pages.list_page(keys, c, company_id=company, limit=q.limit, cursor=q.cursor)
    )
    return responses.answer(bodies.ScheduledJobList.of(page.schedules, q.limit, page.next_cursor))


@bp.get("/stats")
@documented("Scheduler statistics", {200: (bodies.SchedulerStats, "OK")}, tag="scheduled")
@admin
async def stats() -> Any:
    st = state()
    company = principal().company_id
    return jsonify(schedules.stats_body(await redis(lambda c: st.schedules.stats(c, company))))


@bp.get("/<schedule_id>")
@documented("One scheduled job", {200: (bodies.ScheduledJobResponse, "OK")}, "404", tag="scheduled")
@admin
async def get_one(schedule_id: str) -> Any:
    job = await redis(lambda c: _visible(c, schedule_id))
    return responses.answer(schedules.scheduled_job_body(job))


@bp.put("/<schedule_id>")
@documented(
    "Change some fields of a scheduled job",
    {200: (bodies.ScheduledJobResponse, "OK")},
    "404 409",
    body=ScheduleSpec,
    partial=True,
    tag="scheduled",
)
@admin
@audited("schedule.update")
async def update(schedule_id: str) -> Any:
    st = state()
    g.audit_target = schedule_id
    changes = _company_body(await read_json(st.limits), creating=False)
    job = await _on_visible(schedule_id, lambda c: st.schedules.update(c, schedule_id, changes))
    g.audit_detail = {"fields": sorted(changes)}
    return responses.answer(schedules.scheduled_job_body(job))


@bp.delete("/<schedule_id>")
@documented("Delete a scheduled job", {200: (bodies.ScheduleDeleted, "OK")}, "404", tag="scheduled")
@admin
@audited("schedule.delete")
async def delete(schedule_id: str) -> Any:
    st = state()
    await _on_visible(schedule_id, lambda c: st.schedules.remove(c, schedule_id))
    return jsonify(responses.schedule_deleted_body(schedule_id))
