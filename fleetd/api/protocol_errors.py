"""The JSON error body for requests refused below the app, by the HTTP/1.1 parser.

A request line or header h11 cannot parse (a NUL or a byte over 0x7f in the path, a
bare `GET /x` without a version, two different Content-Lengths, a body shorter than
its Content-Length followed by more bytes), or a request head over
`h11_max_incomplete_size` (16 KiB: 431), never reaches quart: hypercorn answers it
itself, with an empty body. `install_protocol_errors` makes that answer the API's
error body (docs/ARCHITECTURE.md#http-api) like every other — same status, `Connection:
close` as before — so that a client reading `error.code` never finds nothing there.

The swap is process-wide (hypercorn's H11Protocol), like fleetd.api.ws_stream's.
"""

from __future__ import annotations

import json
from itertools import chain

import h11
from hypercorn.protocol.h11 import H11Protocol

from fleetd.api.errors import error_body

__all__ = ["install_protocol_errors", "protocol_error_body"]

# Status hints h11 gives → code and message; another hint gets a generic pair.
_ERRORS = {
    400: ("bad_request", "the request is not valid HTTP/1.1: malformed request line or headers"),
    431: ("headers_too_large", "the request line and headers are too large"),
}


def protocol_error_body(status: int) -> bytes:
    code, message = _ERRORS.get(status, (f"http_{status}", "the request is not valid HTTP/1.1"))
    return (json.dumps(error_body(code, message), separators=(",", ":")) + "\n").encode()


async def _send_error_response(self: H11Protocol, status_code: int) -> None:
    body = protocol_error_body(status_code)
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"connection", b"close"),
    ]
    headers = list(chain(head, self.config.response_headers("h11")))
    await self._send_h11_event(h11.Response(status_code=status_code, headers=headers))
    await self._send_h11_event(h11.Data(data=body))
    await self._send_h11_event(h11.EndOfMessage())


def install_protocol_errors() -> None:
    """hypercorn's HTTP/1.1 protocol answers its own refusals with the error body."""
    H11Protocol._send_error_response = _send_error_response  # type: ignore[method-assign]
