"""Operations endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document,
and the audit log listing.

Owns `GET /healthz` (the process serves; no auth, no Redis), `GET /readyz` (Redis
answers within `[http] redis_timeout` and every service of the daemon has started; 503
with the failing checks otherwise; no auth), `GET /metrics` (Prometheus text, every
company's counts: a platform admin token unless `[http] metrics_auth = false`; a
company-bound token gets 403), `GET /api/v1/openapi.json` (public: it
describes the API, it holds no data) and `GET /api/v1/admin/jobs/audit`.

Also owns `ProbeShortcut`: the answer to a plain `GET /healthz` given by the accept
loop (fleetd.api.acceptor) straight from the connection's first bytes, the same bytes
the route sends, counted in the same metrics: during a storm of connections a probe then
costs ~10 µs once accepted, instead of waiting for its turn through h11, hypercorn's
tasks and quart (seconds when 2,000 connections are being served). Anything that is
not exactly such a request — another path or method, a query, a body, an upgrade, a
malformed or incomplete head, TLS, bytes not there yet when the connection is
accepted — goes the normal way.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any
from wsgiref.handlers import format_date_time

import trio
from quart import Blueprint, Response, current_app, jsonify, request

from fleetd.api import bodies, responses
from fleetd.api.context import (
    REDIS_GRACE,
    admin,
    metrics_access,
    principal,
    public,
    redis,
    require_platform_if_authenticated,
    state,
)
from fleetd.api.errors import RETRY_AFTER, ApiError
from fleetd.api.inputs import AuditQuery, parse_query
from fleetd.api.metrics import CONTENT_TYPE, ApiMetrics
from fleetd.api.operations import documented
from fleetd.backend.redis_link import RedisUnavailable

__all__ = ["LIVENESS", "ProbeShortcut", "bp"]

log = logging.getLogger("fleetd.api")

bp = Blueprint("probes", __name__)

# The body of GET /healthz, served by the route and by the shortcut.
LIVENESS = {"status": "ok"}


@bp.get("/healthz")
@documented("Liveness", {200: (bodies.Liveness, "OK")}, tag="operations")
@public
async def healthz() -> Any:
    return jsonify(LIVENESS)


@bp.get("/readyz")
@documented(
    "Readiness: Redis reachable and every service started",
    {200: (bodies.Readiness, "OK")},
    "503",
    tag="operations",
)
@public
async def readyz() -> Any:
    st = state()
    checks: dict[str, str] = {
        "services": "started" if st.ready() else "not running (starting or stopping)"
    }
    with trio.move_on_after(st.redis_timeout + REDIS_GRACE) as scope:
        try:
            await st.link.call(lambda c: c.ping())
            checks["redis"] = "ok"
        except Exception as exc:  # any failure means "not ready"
            # The reason is for the daemon's log, not for whoever probes (the probe is
            # public; Redis's errors name its address and refused credentials).
            log.debug("readiness: Redis unreachable: %s", exc)
            checks["redis"] = "unreachable"
    if scope.cancelled_caught:
        checks["redis"] = f"no answer within {st.redis_timeout:g}s"
    if checks["redis"] != "ok" or not st.ready():
        failing = ", ".join(k for k, v in checks.items() if v not in ("ok", "started"))
        raise ApiError(
            503,
            "not_ready",
            f"not ready: {failing}",
            {"checks": checks},
            headers={"Retry-After": str(RETRY_AFTER)},
        )
    return jsonify({"status": "ready", "checks": checks})


@bp.get("/metrics")
@documented(
    "Prometheus metrics (platform admins; auth per [http] metrics_auth)",
    {200: (str, "Prometheus text format")},
    tag="operations",
    media="text/plain",
)
@metrics_access
async def metrics() -> Any:
    require_platform_if_authenticated("cluster-wide metrics (every company's jobs)")
    st = state()
    assert st.metrics is not None
    try:
        snapshot = await redis(st.metrics.read_redis)
    except (ApiError, RedisUnavailable) as exc:
        if isinstance(exc, ApiError) and exc.status != 503:
            raise
        snapshot = []  # Redis away: this daemon's own series (its spool first) still count
    st.metrics.redis_up.set(1 if snapshot else 0)
    return Response(st.metrics.render(snapshot), content_type=CONTENT_TYPE)


@bp.get("/api/v1/openapi.json")
@documented("This document", {200: (dict[str, Any], "OK")}, tag="operations")
@public
async def openapi() -> Any:
    return jsonify(current_app.extensions["fleetd.openapi"]())


@bp.get("/api/v1/admin/jobs/audit")
@documented(
    "Audit log of mutating calls, newest first", {200: (bodies.AuditList, "OK")}, query=AuditQuery
)
@admin
async def audit() -> Any:
    st = state()
    assert st.audit is not None
    log = st.audit
    q = parse_query(AuditQuery, request.args)
    filters = q.filters()
    company = principal().company_id
    if company is not None:  # a company-bound token reads its own company's entries only
        filters["company_id"] = company
    entries, next_cursor = await redis(
        lambda c: log.read(
            c,
            limit=q.limit,
            cursor=q.cursor,
            since_ms=q.since,
            until_ms=q.until,
            filters=filters,
        )
    )
    # Through answer(): an entry no UTF-8 encoder can write (another door stored a lone
    # surrogate) is sent degraded, alone, as rows are.
    return responses.answer(responses.audit_body(entries, next_cursor))


# -- the shortcut -----------------------------------------------------------------------

_PROBE_LINE = re.compile(rb"GET /healthz HTTP/1\.([01])\r\n")
# A header line as h11 (hypercorn's HTTP/1.1 parser) accepts it: a token, a colon, a
# value of visible characters with inner spaces; anything else is h11's to refuse.
_VCHAR = rb"[\x21-\x7e\x80-\xff]"
_HEADER = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(" + _VCHAR + rb"+(?:[ \t]+" + _VCHAR + rb"+)*)?[ \t]*"
)
# Headers after which the request is not a plain probe: a body, an upgrade (h2c,
# WebSocket) or a 100-continue is hypercorn's to handle.
_NOT_PLAIN = frozenset({b"content-length", b"transfer-encoding", b"upgrade", b"expect"})


class ProbeShortcut:
    """`GET /healthz` recognised in the raw bytes of a request, and its answer: the
    route's status, headers (hypercorn's Date included unless `date` is off) and
    body, and h11's `Connection: close` where h11 would close."""

    def __init__(self, metrics: ApiMetrics | None, *, date: bool = True) -> None:
        self.metrics = metrics
        self.date = date
        body = (json.dumps(LIVENESS, separators=(",", ":")) + "\n").encode()
        self._head = (
            b"HTTP/1.1 200 \r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\ncache-control: no-store\r\n" % len(body)
        )
        self._body = body

    def match(self, data: bytes) -> bool | None:
        """None unless `data` is exactly one whole `GET /healthz` request head that
        h11 accepts; else whether the connection stays open after the answer."""
        line = _PROBE_LINE.match(data)
        if line is None or not data.endswith(b"\r\n\r\n"):
            return None
        hosts = 0
        connection: set[bytes] = set()
        for raw in data[line.end() : -2].split(b"\r\n")[:-1]:  # each line ends in CRLF
            header = _HEADER.fullmatch(raw)
            if header is None:
                return None
            name = header[1].lower()
            if name in _NOT_PLAIN:
                return None
            if name == b"host":
                hosts += 1
            elif name == b"connection":
                connection.update(t.strip().lower() for t in (header[2] or b"").split(b","))
        http10 = line[1] == b"0"
        if hosts > 1 or (hosts == 0 and not http10):
            return None  # h11 refuses it (400)
        return not http10 and b"close" not in connection

    def answer(self, keep_alive: bool) -> bytes:
        """The answer to the request `match` took, counted like the route's."""
        started = time.perf_counter()
        head = self._head
        if self.date:
            head += b"date: %s\r\n" % format_date_time(time.time()).encode()
        if not keep_alive:
            head += b"Connection: close\r\n"
        if self.metrics is not None:
            self.metrics.requests.labels("GET", "/healthz", "200").inc()
            self.metrics.latency.labels("/healthz").observe(time.perf_counter() - started)
        return head + b"\r\n" + self._body
