"""Admission control of the admin API: a bounded number of requests in flight per
daemon; past it, an immediate 503 — an ASGI wrapper around the app, for hypercorn.

Without a bound, every accepted request started at once: 2,000 concurrent enqueues
queued for the same Redis hops, thread tokens and CPU, the median answer took 16–20 s,
and many clients gave up (or their connection was dropped) before any answer came. A
request that cannot start now is better answered now, with when to come back.

Owns `Admission`:
- counts HTTP requests in flight (from the app's call to its return, the response and
  any streamed body included) and answers the one past `[http] max_in_flight` at once
  with 503, `{"error": {"code": "overloaded", …}}`, `Retry-After` and no work done
  (no auth, no Redis: refusing costs ~0.2 ms of CPU, serving an enqueue ~2 ms);
- lets the probes `GET /healthz` and `GET /readyz` through uncounted, so that a load
  balancer or systemd sees a busy daemon as alive and ready rather than dead; and
  WebSocket and lifespan scopes (the events feed has its own limits, fleetd.api.ws);
- reads and drops the body of a refused request while it answers, so the connection
  stays usable for the client's retry (fleetd.api.linger delivers the answer).

No task of its own; state is one counter on the trio thread (no lock needed).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import trio
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

__all__ = ["BYPASS", "RETRY_AFTER", "Admission"]

# Answered whatever the load: liveness and readiness (no Redis call, or one bounded by
# [http] redis_timeout), so that a busy daemon is not restarted or drained for it.
BYPASS = frozenset({"/healthz", "/readyz"})
# Seconds a refused client should wait: a request in flight takes ~2-20 ms at the
# default bound, so a second lets hundreds finish; retrying sooner only adds load.
RETRY_AFTER = 1
# Body of a refused request read and dropped while answering, at most (an enqueue body
# is ~0.2-2 KB; [http] max_body_size caps what quart would read). Past it, the client
# gets the answer with `Connection: close` (fleetd.api.linger).
DRAIN_BYTES = 256 * 1024


def _refusal(limit: int) -> bytes:
    return json.dumps(
        {
            "error": {
                "code": "overloaded",
                "message": f"too many requests in flight on this daemon (limit {limit}); "
                f"retry after {RETRY_AFTER}s",
                "details": {"max_in_flight": limit, "retry_after": RETRY_AFTER},
            }
        }
    ).encode()


class Admission:
    """The ASGI app `app`, with at most `limit` HTTP requests in flight."""

    def __init__(
        self,
        app: ASGIFramework,
        limit: int,
        on_refused: Callable[[], None] = lambda: None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0
        self.on_refused = on_refused
        self._refusal = _refusal(limit)

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http" or scope["path"] in BYPASS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.on_refused()
            await self._refuse(receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        async def drain() -> None:
            read = 0
            while read <= DRAIN_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    return  # http.disconnect: the client is gone
                read += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return

        body = self._refusal
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", str(RETRY_AFTER).encode()),
                        (b"cache-control", b"no-store"),
                    ],
                    "trailers": False,
                }
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})
            nursery.cancel_scope.cancel()
