"""Errors of the admin API: one exception type, one JSON body (docs/ARCHITECTURE.md#http-api).

Owns `ApiError` (status, code, message, details, extra headers), the body
`{"error": {"code", "message", "details"}}`, and the translation of everything else a
request can raise — fleetd's ValidationError (422 with every field path), schedule
lookups (404, 409), Redis being unreachable (503 with Retry-After), Werkzeug's routing
and body-size errors, and any bug (500, logged with its traceback, never shown) — into
that body. Nothing the API sends is HTML or a traceback.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from quart import Quart, Response
from werkzeug.exceptions import HTTPException

from fleetd.backend.redis_link import RedisCommandError, RedisUnavailable
from fleetd.jobs.errors import NotReplicated, QuotaExceeded
from fleetd.jobs.model import ValidationError
from fleetd.jobs.sealing import EncryptionUnavailable
from fleetd.schedules.store import ScheduleConflict, ScheduleNotFound

__all__ = ["ApiError", "error_response", "install_error_handlers"]

log = logging.getLogger("fleetd.api")

# Seconds a client should wait before retrying after a 503: the link reconnects with a
# capped backoff starting at 0.1 s, so a short outage is over well within this.
RETRY_AFTER = 2

# Werkzeug's HTTP statuses → our codes (the rest fall back to "http_<status>").
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "quota_exceeded",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answer: raise it anywhere in a request."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.headers = dict(headers or {})

    @classmethod
    def unavailable(cls, why: str) -> ApiError:
        return cls(
            503,
            "redis_unavailable",
            f"Redis is unreachable: {why}",
            headers={"Retry-After": str(RETRY_AFTER)},
        )

    @classmethod
    def not_found(cls, what: str) -> ApiError:
        return cls(404, "not_found", what)

    @classmethod
    def forbidden(cls, why: str) -> ApiError:
        return cls(403, "forbidden", why)

    @classmethod
    def conflict(cls, why: str, details: Mapping[str, Any] | None = None) -> ApiError:
        return cls(409, "conflict", why, details)


def error_body(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": dict(details or {})}}


def error_response(err: ApiError) -> Response:
    """`err` as its JSON body. Its message and details may quote what the caller sent
    (a field path made of the body's keys): a lone surrogate there, which no UTF-8
    encoder writes, is escaped (`\\udXXX`, as JSON allows), never a 500."""
    from quart import jsonify

    body = error_body(err.code, err.message, err.details)
    try:
        response = jsonify(body)
    except UnicodeEncodeError:
        response = Response(json.dumps(body, ensure_ascii=True), mimetype="application/json")
    response.status_code = err.status
    for name, value in err.headers.items():
        response.headers[name] = value
    response.headers["Cache-Control"] = "no-store"
    return response


def validation_error(exc: ValidationError) -> ApiError:
    fields = [{"field": e.field, "message": e.message} for e in exc.errors]
    message = "; ".join(map(str, exc.errors))
    return ApiError(422, "validation_failed", message, {"fields": fields})


def install_error_handlers(app: Quart) -> None:
    """Every exception a view can raise becomes the JSON error body."""

    @app.errorhandler(ApiError)
    async def _api(err: ApiError) -> Response:
        return error_response(err)

    @app.errorhandler(ValidationError)
    async def _validation(exc: ValidationError) -> Response:
        return error_response(validation_error(exc))

    @app.errorhandler(EncryptionUnavailable)
    async def _no_keys(exc: EncryptionUnavailable) -> Response:
        log.error("%s", exc)
        return error_response(ApiError(500, "encryption_unavailable", str(exc)))

    @app.errorhandler(ScheduleNotFound)
    async def _schedule_missing(exc: ScheduleNotFound) -> Response:
        return error_response(ApiError.not_found(str(exc)))

    @app.errorhandler(ScheduleConflict)
    async def _schedule_conflict(exc: ScheduleConflict) -> Response:
        return error_response(ApiError.conflict(str(exc)))

    @app.errorhandler(QuotaExceeded)
    async def _quota(exc: QuotaExceeded) -> Response:
        details = {"company_id": exc.company_id, "quota": exc.quota, "limit": exc.limit,
                   "retry_after": math.ceil(exc.retry_after)}  # fmt: skip
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
        return error_response(ApiError(429, "quota_exceeded", str(exc), details, headers))

    @app.errorhandler(NotReplicated)
    async def _not_replicated(exc: NotReplicated) -> Response:
        details = {"acked": exc.acked, "wait_replicas": exc.wanted}
        headers = {"Retry-After": str(RETRY_AFTER)}
        return error_response(ApiError(503, "not_replicated", str(exc), details, headers))

    @app.errorhandler(RedisUnavailable)
    async def _redis_down(exc: RedisUnavailable) -> Response:
        # Redis's own words name its address and refused credentials: the daemon's log
        # has them (the link logs each outage), a caller gets what to do.
        log.debug("answered 503: %s", exc)
        return error_response(ApiError.unavailable("retry after a while"))

    @app.errorhandler(RedisCommandError)
    async def _redis_error(exc: RedisCommandError) -> Response:
        log.error("Redis refused a command: %s", exc)
        return error_response(ApiError(500, "internal_error", "Redis refused a command"))

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 404:
            message = "no such endpoint"
        headers: dict[str, str] = {}
        if status == 405 and exc.response is None:
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                headers["Allow"] = ", ".join(sorted(allowed))
        return error_response(
            ApiError(status, _CODES.get(status, f"http_{status}"), message, headers=headers)
        )

    @app.errorhandler(Exception)
    async def _bug(exc: Exception) -> Response:
        log.exception("internal error answering a request")
        return error_response(ApiError(500, "internal_error", "internal error (logged)"))
