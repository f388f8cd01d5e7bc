"""The quart-trio application of the admin API: routes, auth, audit and limits wired.

Owns building the app for one ApiState:
- routing that never guesses: no merged slashes (`//api/…` is not `/api/…`), no
  redirects for a trailing slash, case-sensitive paths — such paths answer 404;
- the auth hook: each view's decision (`@public`, `@admin`, `@metrics_access`) is
  enforced before the view runs; a view without a decision is refused (default deny);
  WebSocket handshakes likewise (`@admin_or_ticket` too), after the Origin check of
  fleetd.api.ws, and refused with the JSON error before anything is accepted;
- the audit hook: after every call of an `@audited` view, an entry with its outcome;
- request metrics (route template, not raw path, as label: bounded cardinality);
- JSON errors for everything (fleetd.api.errors), answers that encode whatever a
  stored value holds (`_Json`), the body-size limit, and no static
  folder (the dashboard's files come from fleetd.api.web, an allow-list), no automatic
  OPTIONS answers, no Server header.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from quart import Response, g, request, websocket
from quart.json.provider import DefaultJSONProvider
from quart.typing import ResponseTypes
from quart_trio import QuartTrio

from fleetd.api import openapi, routes, ws
from fleetd.api.audit import http_entry
from fleetd.api.auth import Principal, authorization
from fleetd.api.context import (
    AUTH_ADMIN,
    AUTH_METRICS,
    AUTH_PUBLIC,
    AUTH_TICKET,
    ApiState,
    audit_action,
    auth_decision,
)
from fleetd.api.errors import ApiError, error_response, install_error_handlers
from fleetd.api.shares import CompanyShares

__all__ = ["create_app"]

log = logging.getLogger("fleetd.api")


class _Json(DefaultJSONProvider):
    """jsonify for every answer of the API: a stored string that no UTF-8 encoder can
    write (a lone surrogate: another door, e.g. the CLI given a non-UTF-8 argument, may
    store one) is escaped as JSON allows (`\\udcff`) instead of failing the answer with
    a 500 — and with it the whole listing that holds it. One encode on the usual path."""

    sort_keys = False
    ensure_ascii = False

    def response(self, *args: Any, **kwargs: Any) -> Any:
        obj = self._prepare_response_obj(args, kwargs)
        try:
            data = (self.dumps(obj, separators=(",", ":")) + "\n").encode()
        except UnicodeEncodeError:
            data = (self.dumps(obj, separators=(",", ":"), ensure_ascii=True) + "\n").encode()
        return Response(data, mimetype=self.mimetype)


def create_app(st: ApiState) -> QuartTrio:
    app = QuartTrio("fleetd.api", static_folder=None)
    app.config.update(
        MAX_CONTENT_LENGTH=st.config.http.max_body_size,
        PROVIDE_AUTOMATIC_OPTIONS=False,
        JSON_SORT_KEYS=False,
        # Bodies are small and come from services on a LAN; a client that trickles one
        # for longer than this is cut off instead of holding a connection.
        BODY_TIMEOUT=30,
    )
    app.json = _Json(app)
    app.extensions["fleetd"] = st
    # GET /api/v1/openapi.json serves it (fleetd.api.probes cannot import the
    # generator: the generator reads every endpoint module).
    app.extensions["fleetd.openapi"] = openapi.document
    routes.install(app)
    install_error_handlers(app)
    shares = CompanyShares(st.config.http.max_in_flight, st.config.http.company_share)

    @app.before_request
    async def authenticate() -> Response | None:
        g.started = time.perf_counter()
        g.principal = None
        if request.routing_exception is not None:
            return None  # no route: the routing error (404, 405) is the answer
        view = app.view_functions.get(request.endpoint or "")
        decision = None if view is None else auth_decision(view)
        if decision == AUTH_PUBLIC:
            return None
        if decision == AUTH_METRICS and not st.config.http.metrics_auth:
            return None
        if decision in (AUTH_ADMIN, AUTH_METRICS):
            # exp too: POST …/events/ticket bounds its ticket by it.
            header = authorization(request.headers)
            g.principal, g.token_exp = st.verifier.verify_until(header)
            return shares.take(g.principal.company_id)
        # A route nobody decided for is refused, whoever calls (default deny).
        log.error("route %s has no auth decision: refused", request.endpoint)
        return error_response(ApiError.forbidden("this route is not open"))

    @app.teardown_request
    async def give_back(_exc: BaseException | None) -> None:
        shares.give()

    @app.before_websocket
    async def authenticate_websocket() -> Response | None:
        g.principal = None
        if websocket.routing_exception is not None:
            return None
        view = app.view_functions.get(websocket.endpoint or "")
        decision = None if view is None else auth_decision(view)
        if decision == AUTH_PUBLIC:
            return None
        if decision in (AUTH_ADMIN, AUTH_TICKET):
            ws.check_origin(st.config.http.allowed_origins)
            g.principal, g.token_exp = await ws.authenticate(st, decision == AUTH_TICKET)
            return None
        log.error("websocket route %s has no auth decision: refused", websocket.endpoint)
        return error_response(ApiError.forbidden("this route is not open"))

    @app.after_websocket
    async def end_refused(response: ResponseTypes | None) -> ResponseTypes | None:
        if response is not None:  # a refused handshake: this connection carries no more
            response.headers["Connection"] = "close"
        return response

    @app.after_request
    async def account(response: Response) -> Response:
        view = app.view_functions.get(request.endpoint or "")
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        if st.metrics is not None:
            st.metrics.requests.labels(request.method, route, str(response.status_code)).inc()
            started = g.get("started")
            if started is not None:
                st.metrics.latency.labels(route).observe(time.perf_counter() - started)
        action = None if view is None else audit_action(view)
        if action is not None and st.audit is not None:
            await _audit(st, action, response)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


async def _audit(st: ApiState, action: str, response: Response) -> None:
    p: Principal | None = g.get("principal")
    code = "ok"
    if response.status_code >= 400:
        body: Any = await response.get_json(force=True, silent=True)
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            code = str(body["error"].get("code", "error"))
        else:
            code = f"http_{response.status_code}"
    view_args = request.view_args or {}
    target = g.get("audit_target") or next(iter(view_args.values()), None)
    entry = http_entry(
        action,
        subject=p.subject if p is not None else None,
        company_id=p.company_id if p is not None else None,
        target=None if target is None else str(target),
        outcome=code,
        status=response.status_code,
        method=request.method,
        path=request.path,
        remote=request.remote_addr,
        detail=g.get("audit_detail") or {},
    )
    assert st.audit is not None
    await st.audit.submit(entry)
