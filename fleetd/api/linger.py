"""Answers sent before the request body was read: delivered, then the connection closed
gracefully (RFC 9112 §9.6) — an ASGI wrapper around the app, for hypercorn.

The API refuses some requests before reading their bodies: a Content-Length over
`[http] max_body_size` (413), a missing token (401). Left to quart-trio and hypercorn,
such an answer was written, then the unread rest of the body made the connection a
zombie: hypercorn started to close it, but quart-trio cancelled that close when it saw
the stream end, so the server went on reading and discarding the body, unbounded, and a
keep-alive client that sent its next request on that connection waited forever for the
answer. Closing at once instead (what the close meant to do) makes the kernel send a
reset while the client is still writing, which can destroy the answer before the
client reads it. This wrapper:

1. when the app starts an answer before the body ended, lets the body arrive (quart
   reads and drops it) for up to DRAIN_BYTES / DRAIN_SECONDS: a client that had
   already written it all gets the answer on a connection that stays usable;
2. otherwise sends the answer with `Connection: close`, complete but for its final
   (empty) part, and keeps reading for up to LINGER_BYTES / LINGER_SECONDS, or until
   the client closes or its body ends — the staged close of RFC 9112 §9.6 — then ends
   the answer, and hypercorn closes the connection;
3. for every HTTP answer, holds back the app's `http.disconnect` while the last part
   is being sent. quart-trio cancels the request's tasks on it, and the stream ends
   inside that send, so the cancel interrupted hypercorn's own work there: the close of
   (2), and on a reused connection the re-arming of the keep-alive idle timer (idle
   connections were then never reaped after their first request).

WebSocket and lifespan scopes pass through untouched.
"""

from __future__ import annotations

from typing import Any, cast

import trio
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)

__all__ = ["DRAIN_BYTES", "DRAIN_SECONDS", "LINGER_BYTES", "LINGER_SECONDS", "Lingering"]

# Body still read before an early answer so that the connection stays usable: what a
# client has usually written already (the kernel buffers ~1-4 MB on each side of a
# loopback or LAN connection). Reading it costs ~1 ms per MB here.
DRAIN_BYTES = 4 * 1024 * 1024
# ...and how long an early answer waits for it at most: a client uploading slower than
# ~8 MB/s gets its answer on a connection that then closes.
DRAIN_SECONDS = 0.5
# After an answer with `Connection: close`, how much more body is read and dropped while
# the client takes the answer, and for how long; past either the connection is closed.
LINGER_BYTES = 64 * 1024 * 1024
LINGER_SECONDS = 2.0


class _Request:
    """What the wrapper knows about one request's body and its client."""

    __slots__ = ("changed", "complete", "finishing", "gone", "received")

    def __init__(self) -> None:
        self.received = 0
        self.complete = False  # the body's last message arrived
        self.gone = False  # the client went away (or the stream ended)
        self.finishing = False  # the answer's last part is being sent
        self.changed = trio.Event()

    async def wait_for_end(self, max_bytes: int, seconds: float) -> None:
        """Until the body ended or the client went away, within the bounds."""
        limit = self.received + max_bytes
        with trio.move_on_after(seconds):
            while not (self.complete or self.gone) and self.received < limit:
                await self.changed.wait()


class Lingering:
    """The ASGI app `app`, with early answers delivered and closed gracefully."""

    def __init__(self, app: ASGIFramework) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        req = _Request()
        close = False

        async def tracked_receive() -> ASGIReceiveEvent:
            while True:
                message = await receive()
                if message["type"] == "http.request":
                    req.received += len(message.get("body", b""))
                    req.complete = not message.get("more_body", False)
                elif message["type"] == "http.disconnect":
                    req.gone = True
                req.changed.set()
                req.changed = trio.Event()
                if req.finishing and message["type"] == "http.disconnect":
                    continue  # see (3) above: the request's tasks end after the send
                return message

        async def guarded_send(event: ASGISendEvent) -> None:
            nonlocal close
            message: dict[str, Any] = dict(event)
            kind = message["type"]
            if kind == "http.response.start" and not (req.complete or req.gone):
                await req.wait_for_end(DRAIN_BYTES, DRAIN_SECONDS)
                if not (req.complete or req.gone):
                    close = True
                    headers = [
                        h for h in message.get("headers", ()) if h[0].lower() != b"connection"
                    ]
                    message["headers"] = [*headers, (b"connection", b"close")]
            elif kind == "http.response.body" and not message.get("more_body", False):
                if close:
                    await send(cast(ASGISendEvent, {**message, "more_body": True}))
                    await req.wait_for_end(LINGER_BYTES, LINGER_SECONDS)
                    message = {"type": "http.response.body", "body": b"", "more_body": False}
                req.finishing = True
            await send(cast(ASGISendEvent, message))

        await self.app(scope, tracked_receive, guarded_send)
