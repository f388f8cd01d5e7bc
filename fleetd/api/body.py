"""Reading request bodies: size, media type, JSON syntax, nesting and number limits.

Owns the checks every JSON body passes before a view sees it, each with its own status:
- larger than `[http] max_body_size` → 413 (Content-Length checked before reading;
  a chunked body is cut off while it is read);
- a body that is not `application/json` → 415; so is one with a `Content-Encoding`
  other than identity (gzip, br…): no coding is decoded, and reading the coded bytes as
  JSON would take a body the client did not mean (or refuse a good one as "not UTF-8");
- not JSON, or NaN / Infinity (not JSON, though Python accepts them) → 400;
- nested deeper than `[http] max_json_depth` → 400 (a deep body costs the parser
  recursion and every later walk over it);
- integers beyond ±2^63 → 422 with the field path: other services (Go's int64, JS
  doubles) cannot hold them, so they would be corrupted downstream.
"""

from __future__ import annotations

import json
from typing import Any

from quart import request
from werkzeug.exceptions import RequestEntityTooLarge

from fleetd.api.errors import ApiError
from fleetd.jobs.model import FieldError, ValidationError

__all__ = ["BodyLimits", "check_tree", "read_json", "read_optional_json"]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
JSON_TYPES = ("application/json",)


class BodyLimits:
    """The limits of one app (from [http])."""

    def __init__(self, max_size: int, max_depth: int) -> None:
        self.max_size = max_size
        self.max_depth = max_depth


def _reject_constant(name: str) -> Any:
    raise ApiError(400, "invalid_json", f"{name} is not valid JSON")


def _path(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out or "body"


def check_tree(value: Any, max_depth: int) -> None:
    """Depth and integer range of a parsed body, iteratively (no recursion)."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict | list):
            if len(where) >= max_depth:
                raise ApiError(
                    400,
                    "nesting_too_deep",
                    f"JSON nested deeper than {max_depth} levels",
                    {"max_depth": max_depth, "at": _path(where)},
                )
            items = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend((v, [*where, k]) for k, v in items)
        elif (
            isinstance(node, int)
            and not isinstance(node, bool)
            and not INT64_MIN <= node <= INT64_MAX
        ):
            raise ValidationError.of([FieldError(_path(where), "integer out of 64-bit range")])


def _too_large(message: str, limits: BodyLimits) -> ApiError:
    return ApiError(413, "payload_too_large", message, {"max_bytes": limits.max_size})


# What `Content-Encoding` may say: nothing is decoded.
IDENTITY = ("", "identity")


def _unsupported(header: str, message: str, **headers: str) -> ApiError:
    """415 naming the request header at fault."""
    details = {"fields": [{"field": header, "message": message}]}
    return ApiError(415, "unsupported_media_type", message, details, headers=headers)


def _check_coding() -> None:
    coding = request.headers.get("Content-Encoding")
    if coding is not None and coding.strip().lower() not in IDENTITY:
        raise _unsupported(
            "Content-Encoding",
            f"Content-Encoding {coding[:40]!r} is not supported: send the body uncompressed",
            **{"Accept-Encoding": "identity"},
        )


async def _raw_body(limits: BodyLimits) -> bytes:
    length = request.content_length
    if length is not None and length > limits.max_size:
        raise _too_large(f"body of {length} bytes is over the limit of {limits.max_size}", limits)
    try:
        data = await request.get_data(cache=False, as_text=False)
    except RequestEntityTooLarge:
        raise _too_large(f"body is over the limit of {limits.max_size} bytes", limits) from None
    raw = data if isinstance(data, bytes) else data.encode()
    if raw:
        _check_coding()
    return raw


def _parse(raw: bytes, limits: BodyLimits) -> Any:
    mimetype = request.mimetype
    if mimetype not in JSON_TYPES:
        raise _unsupported(
            "Content-Type",
            f"send the body as application/json, not {mimetype or 'no Content-Type'}",
        )
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "invalid_json", f"body is not valid JSON: {exc.msg}", {"position": exc.pos}
        ) from None
    except RecursionError:
        raise ApiError(
            400,
            "nesting_too_deep",
            f"JSON nested deeper than {limits.max_depth} levels",
            {"max_depth": limits.max_depth},
        ) from None
    except ValueError as exc:  # e.g. an integer literal of more than 4300 digits
        raise ApiError(400, "invalid_json", f"body is not usable JSON: {exc}") from None
    check_tree(value, limits.max_depth)
    return value


async def read_json(limits: BodyLimits) -> Any:
    """The request's JSON body (required)."""
    raw = await _raw_body(limits)
    if not raw.strip():
        raise ApiError(400, "invalid_json", "a JSON body is required")
    return _parse(raw, limits)


async def read_optional_json(limits: BodyLimits) -> Any:
    """The JSON body if one was sent, else None (POST …/reset, …/cleanup)."""
    raw = await _raw_body(limits)
    if not raw.strip():
        return None
    return _parse(raw, limits)
