"""The live events feed of the admin API: `GET /api/v1/admin/jobs/events` (WebSocket).

Owns:
- the handshake, refused with the JSON error (docs/ARCHITECTURE.md#http-api) before
  anything is accepted: the Origin check (a browser page of another site must not ride
  an admin's ticket: only the API's own origin and `[http] allowed_origins` pass; no
  Origin header — a service, `fleetd events` — passes), the caller (`Authorization: Bearer` or a
  `?ticket=`, see fleetd.api.tickets; the app's auth hook runs these), the filter,
  `last_event_id` (an event id, fleetd.runtime.cursor) and `batch` (the frame mode) of
  the query string (422 naming the field) and the hub's readiness (503). A ticket is
  redeemed last, so a handshake refused for its query or a hub not ready yet leaves it
  usable;
- `POST /api/v1/admin/jobs/events/ticket` (201 `{"ticket", "expires_at"}`);
- a plain HTTP GET of the feed: 426 with `Upgrade: websocket`;
- starting the session (fleetd.api.ws_session): more than `[events] max_subscribers`
  sessions, more than a company token's `company_share` of them, or a daemon already
  stopping, are accepted and closed at once (1013 with REASON_FULL or
  REASON_COMPANY_FULL, 1001).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, g, jsonify, websocket

from fleetd.api import bodies, tickets
from fleetd.api.auth import Principal, authorization
from fleetd.api.context import ApiState, admin, admin_or_ticket, principal, redis, state
from fleetd.api.errors import ApiError
from fleetd.api.inputs import EventsQuery
from fleetd.api.operations import documented
from fleetd.api.ws_filters import parse_batch, parse_filter
from fleetd.api.ws_session import (
    CLOSE_GOING_AWAY,
    CLOSE_TRY_AGAIN,
    REASON_COMPANY_FULL,
    REASON_FULL,
    Session,
)
from fleetd.jobs.model import FieldError, ValidationError
from fleetd.runtime.cursor import Cursor
from fleetd.runtime.events import EventHub, HubClosed, HubFull

__all__ = ["authenticate", "bp", "check_origin"]

bp = Blueprint("events", __name__, url_prefix="/api/v1/admin/jobs")


def check_origin(allowed: tuple[str, ...]) -> None:
    """403 unless the handshake has no Origin, or the API's own, or an allowed one."""
    origin = websocket.headers.get("Origin")
    if origin is None or "*" in allowed:
        return
    scheme = "https" if websocket.scheme in ("wss", "https") else "http"
    own = f"{scheme}://{websocket.headers.get('Host', '')}"
    norm = origin.strip().rstrip("/").lower()
    if norm == own.lower() or norm in {a.rstrip("/").lower() for a in allowed}:
        return
    raise ApiError.forbidden(
        f"origin {origin[:100]!r} may not open this WebSocket (see [http] allowed_origins)"
    )


async def authenticate(st: ApiState, tickets_too: bool) -> tuple[Principal, float]:
    """(caller, token exp) of a handshake: the bearer token if there is one, else the
    ticket — redeemed (it cannot serve again) only once the checks that need no caller
    have passed (`_query`, `_hub`), so that a refused handshake does not spend it."""
    header = authorization(websocket.headers)
    ticket = websocket.args.get("ticket")
    if header or not tickets_too or ticket is None:
        return st.verifier.verify_until(header)
    _query()
    _hub(st)
    return await redis(lambda c: tickets.redeem(c, st.ops.keys, ticket))


# Validates the filter's values (422) before a ticket is redeemed; the company rule,
# which needs the caller, comes after (parse_filter with the real caller).
_ANYONE = Principal(subject="", company_id=None)


# Parameters that name one value: given twice, which one was meant is a guess (the
# filters' type, status and job_id are lists, repeatable on purpose).
_SINGLE = ("company_id", "last_event_id", "batch", "ticket")
_BAD_ID = (
    "must be an event id: a stream id such as 1700000000000-0, followed with queue "
    "spaces by ',<queue>=<stream id>' parts (1700000000000-0,bulk=1700000000000-5), "
    "each queue once"
)


def _query() -> tuple[dict[str, Any], str | None, bool]:
    args = websocket.args
    twice = [FieldError(n, "given more than once; give it once") for n in _SINGLE
             if len(args.getlist(n)) > 1]  # fmt: skip
    if twice:
        raise ValidationError.of(twice)
    raw = {name: args.getlist(name) for name in ("type", "status", "job_id", "company_id")}
    resume = args.get("last_event_id")
    if resume is not None and Cursor.parse(resume) is None:
        raise ValidationError.of([FieldError("last_event_id", _BAD_ID)])
    batch = args.get("batch")
    batch_on = batch is not None and parse_batch(batch)
    parse_filter(raw, _ANYONE)
    return raw, resume, batch_on


def _hub(st: ApiState) -> EventHub:
    """The hub, once it has read the stream (503 before: no position to start from)."""
    if st.hub is None or st.hub.position is None:
        raise ApiError.unavailable("the events stream has not been read yet")
    return st.hub


@bp.websocket("/events")
@documented(
    "Live job events (WebSocket; see docs/EVENTS.md for the messages)",
    {
        101: (
            None,
            "Switching to the WebSocket protocol. Auth: bearer token or ?ticket=; filters: "
            "type, status, job_id, company_id (repeatable or comma-separated); resume: "
            "last_event_id. A refused handshake answers 401, 403, 422 or 503 with the "
            "error body.",
        )
    },
    "426",
    query=EventsQuery,
)
@admin_or_ticket
async def events_feed() -> None:
    st = state()
    who = principal()
    raw, resume, batch = _query()
    flt = parse_filter(raw, who)
    hub = _hub(st)
    try:
        sub = hub.open(flt, batch=batch, owner=who.company_id)
    except (HubFull, HubClosed) as exc:
        await websocket.accept()
        if isinstance(exc, HubFull):
            why = REASON_FULL if exc.company is None else REASON_COMPANY_FULL
            await websocket.close(CLOSE_TRY_AGAIN, f"{why}; try again later")
        else:
            await websocket.close(CLOSE_GOING_AWAY, "server shutting down")
        return
    try:
        session = Session(websocket._get_current_object(), hub, sub, st.link, who)  # type: ignore[attr-defined]
        await session.run(g.token_exp, resume)
    finally:
        hub.leave(sub)


@bp.get("/events")
@documented("The events WebSocket asked for with plain HTTP", {}, "426", query=EventsQuery)
@admin
async def events_over_http() -> Response:
    raise ApiError(
        426,
        "upgrade_required",
        "this is a WebSocket endpoint: connect with ws:// or wss://",
        headers={"Upgrade": "websocket"},
    )


@bp.post("/events/ticket")
@documented(
    "A single-use ticket to open the events WebSocket (browsers)",
    {201: (bodies.Ticket, "Issued")},
)
@admin
async def events_ticket() -> Any:
    st = state()
    who, exp = principal(), g.token_exp  # both from the app's auth hook
    ttl = st.config.events.ticket_ttl
    ticket = await redis(lambda c: tickets.issue(c, st.ops.keys, who, exp, ttl))
    return jsonify(ticket.body()), 201
