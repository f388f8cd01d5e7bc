"""What every view shares: the API's state, its auth decisions, and bounded Redis calls.

Owns:
- `ApiState`: config, the API's own Redis link (its socket timeout is
  `[http] redis_timeout`, so no request waits on Redis longer than that — or, with
  `[redis] wait_replicas`, a little past `wait_timeout`: `api_redis_timeout`), the queue and
  schedule operations, the handler registry, the token verifier, the body limits, the
  audit log, the metrics and the daemon's readiness;
- the auth decision of each view — `@public`, `@admin`, `@metrics_access`, or for the
  events WebSocket `@admin_or_ticket` (a bearer token or a single-use ticket) — that
  the app's before-request and before-websocket hooks enforce. A view without one is
  refused (default deny), and a test checks every route has one;
- `state()`, `principal()`, `require_platform()` (the tenant rule for aggregate
  data: counts over every company are for platform admins only), `bind_company()` and
  `redis()` for views.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import trio
from quart import current_app, g

from fleetd.api.auth import Principal, TokenVerifier
from fleetd.api.body import BodyLimits
from fleetd.api.errors import ApiError
from fleetd.audit.entry import Action
from fleetd.backend.codec import JobRow
from fleetd.backend.redis_link import RedisLink, RedisUnavailable, SyncClient
from fleetd.config import Config
from fleetd.jobs.handlers import HandlerRegistry
from fleetd.jobs.queue import EnqueueResult, QueueOps
from fleetd.schedules.store import ScheduleOps
from fleetd.spool.file import SpoolError, SpoolFull

if TYPE_CHECKING:
    from fleetd.api.audit import AuditLog
    from fleetd.api.batcher import EnqueueBatcher
    from fleetd.api.metrics import ApiMetrics
    from fleetd.runtime.events import EventHub
    from fleetd.runtime.inline import InlineJobs
    from fleetd.spool.service import DaemonSpool

__all__ = [
    "AUTH_ADMIN",
    "AUTH_METRICS",
    "AUTH_PUBLIC",
    "AUTH_TICKET",
    "REDIS_GRACE",
    "ApiState",
    "admin",
    "admin_or_ticket",
    "audit_action",
    "audited",
    "auth_decision",
    "bind_company",
    "enqueue_rows",
    "metrics_access",
    "principal",
    "public",
    "redis",
    "require_platform",
    "require_platform_if_authenticated",
    "state",
]

log = logging.getLogger("fleetd.api")

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

AUTH_PUBLIC = "public"
AUTH_ADMIN = "admin"
AUTH_METRICS = "metrics"
AUTH_TICKET = "ticket"
_ATTR = "fleetd_auth"
_AUDIT_ATTR = "fleetd_audit"


@dataclass
class ApiState:
    config: Config
    link: RedisLink
    ops: QueueOps
    schedules: ScheduleOps
    registry: HandlerRegistry
    verifier: TokenVerifier
    limits: BodyLimits
    artifacts_root: Path
    ready: Callable[[], bool] = lambda: True
    audit: AuditLog | None = None
    metrics: ApiMetrics | None = None
    batcher: EnqueueBatcher | None = None
    hub: EventHub | None = None
    spool: DaemonSpool | None = None
    # Sync fallback and queue bypass (fleetd.runtime.inline); None in tests' bare apps.
    inline: InlineJobs | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def redis_timeout(self) -> float:
        return api_redis_timeout(self.config)


# How much longer than `[redis] wait_timeout` the API waits for an enqueue that WAITs.
WAIT_MARGIN = 1.0


def api_redis_timeout(cfg: Config) -> float:
    """`[http] redis_timeout`, raised past `[redis] wait_timeout` when enqueues WAIT for
    replicas: otherwise a WAIT that runs its course (no replica confirms) would hit the
    socket timeout first and answer `redis_unavailable` (and mark Redis unreachable)
    instead of `not_replicated`."""
    timeout = cfg.http.redis_timeout
    if cfg.redis.wait_replicas > 0:
        timeout = max(timeout, cfg.redis.wait_timeout + WAIT_MARGIN)
    return timeout


def state() -> ApiState:
    return cast(ApiState, current_app.extensions["fleetd"])


def principal() -> Principal:
    """The authenticated caller of an @admin view."""
    return cast(Principal, g.principal)


def require_platform(what: str) -> Principal:
    """The caller, who must be a platform admin (a token without company_id).

    The tenant rule for aggregate data: a number that counts every company's jobs
    (stats, throughput, /metrics, worker metrics and health, clean-up) is for platform
    admins; a company admin gets 403 there, always the same way. A company's own
    figures are served only where the data is stored by company (listings, schedules,
    audit, events): the status indexes and the daemons' counters hold no company, and
    counting one company's jobs would mean a write per transition or a scan of every
    index per request."""
    p = principal()
    if not p.platform:
        raise ApiError.forbidden(f"{what} needs a platform admin token (one without company_id)")
    return p


def require_platform_if_authenticated(what: str) -> None:
    """require_platform() for a view that may be public by config (`/metrics` with
    `[http] metrics_auth = false` has no caller to check: the operator opened it)."""
    if g.get("principal") is not None:
        require_platform(what)


def bind_company(requested: Any, field: str = "") -> str | None:
    """The company a body may name: the caller's own for a company-bound token (403 if
    the body names another; `field` prefixes the message, e.g. "jobs[3]."), else None."""
    company = principal().company_id
    if company is not None and requested not in (None, company):
        raise ApiError.forbidden(f"{field}company_id: this token is bound to company {company!r}")
    return company


# Beyond the socket timeout: a hop already under way is bounded by the socket, this
# bounds the wait for a free connection (or the batcher) on top of it.
REDIS_GRACE = 0.25


async def _bounded(call: Callable[[], Awaitable[T]]) -> T:
    st = state()
    with trio.move_on_after(st.redis_timeout + REDIS_GRACE):
        return await call()
    raise ApiError.unavailable(f"no answer within {st.redis_timeout:g}s")


async def redis(fn: Callable[[SyncClient], T]) -> T:
    """Run `fn(client)` in one Redis hop, answering 503 if Redis does not within
    `[http] redis_timeout` (the socket timeout bounds a hop already under way; the
    deadline bounds the wait for a free connection)."""
    link = state().link
    return await _bounded(lambda: link.call(fn))


async def enqueue_rows(rows: list[JobRow]) -> list[EnqueueResult]:
    """Enqueue prepared rows, sharing a Redis round trip with concurrent requests
    (fleetd.api.batcher); 503 past `[http] redis_timeout` as for `redis()`. A 503 leaves
    the outcome unknown: retry with the same Idempotency-Key. With a spool (fleetd.spool)
    the rows go there instead while Redis is away — answered `spooled` — and 503 only
    when the spool cannot take them either."""
    st = state()
    spool = st.spool
    if spool is not None and not await spool_clear(spool):
        try:
            return await _spool(rows)
        except ApiError:
            if not spool.link.ready:
                raise
            # Spooled only to keep the order behind spooled jobs, and the spool is full
            # (or broken): Redis answers, so it takes them now.
    try:
        if st.batcher is None:
            return await redis(lambda c: st.ops.enqueue_rows(c, rows))
        batcher = st.batcher
        return await _bounded(lambda: batcher.enqueue(rows))
    except (RedisUnavailable, ApiError) as exc:
        if spool is None or (isinstance(exc, ApiError) and exc.status != 503):
            raise
        # Unanswered rows may have reached Redis: a replay of one is a no-op (its id).
        return await _spool(rows, exc)


async def spool_clear(spool: DaemonSpool) -> bool:
    """Whether an enqueue may go to Redis now: not while the link knows Redis is away (no
    timeout per request during an outage); once the link has reached Redis and the
    spool is empty, waiting for both (the replay) at most `[http] redis_timeout`."""
    if spool.clear_now():
        return True  # no checkpoint on the common path
    with trio.move_on_after(state().redis_timeout):
        return await spool.wait_clear()
    return False


async def _spool(rows: list[JobRow], error: Exception | None = None) -> list[EnqueueResult]:
    spool = state().spool
    assert spool is not None
    try:
        return await spool.add(rows, door="http", subject=principal().subject)
    except SpoolError as exc:
        if not isinstance(exc, SpoolFull):
            log.warning("the spool refused an enqueue: %s", exc)
        raise ApiError.unavailable(f"the job was not spooled: {exc.public}") from None


def _decide(kind: str) -> Callable[[F], F]:
    def mark(view: F) -> F:
        setattr(view, _ATTR, kind)
        return view

    return mark


public = _decide(AUTH_PUBLIC)
admin = _decide(AUTH_ADMIN)
metrics_access = _decide(AUTH_METRICS)
admin_or_ticket = _decide(AUTH_TICKET)


def audited(action: str) -> Callable[[F], F]:
    """Record every call of this (mutating) view in the audit log, whatever its outcome;
    `action` is one of fleetd.audit.Action (checked here, at import)."""
    Action(action)

    def mark(view: F) -> F:
        setattr(view, _AUDIT_ATTR, action)
        return view

    return mark


def auth_decision(view: Callable[..., Any]) -> str | None:
    return cast(str | None, getattr(view, _ATTR, None))


def audit_action(view: Callable[..., Any]) -> str | None:
    return cast(str | None, getattr(view, _AUDIT_ATTR, None))
