"""hypercorn's WebSocket stream with the two things fleetd needs that it lacks.

Owns `FleetdWSStream`, put in place of hypercorn's WSStream (for HTTP/1.1 and HTTP/2
connections) by `install_ws_stream`:

- keepalive: a ping every `[events] ping_interval`, and a peer that has not answered
  the previous ping when the next is due is cut off. hypercorn sends pings
  (`websocket_ping_interval`) but ignores the pongs, and ASGI shows neither to the app,
  so a half-open connection (a laptop gone to sleep, a NAT that forgot the flow) would
  hold its session until TCP gives up — up to ~15 minutes. The cut closes the TCP
  connection without a close frame (the peer is not reading: a frame written to a full
  socket would wait forever); the app sees a disconnect and its session ends. Each ping
  is sent by its own task, for the same reason.
- compression only when `[events] compression` is on: hypercorn always accepts
  permessage-deflate, which browsers always offer, and then compresses every frame once
  per subscriber; with it off the offer is dropped from the request before the
  handshake is answered (the client simply gets no extension, as the RFC allows);
- bytes a client sends after its handshake was refused (a 401 answered, the connection
  about to close) are dropped. hypercorn answers them with a second response, which h11
  refuses with an exception that takes the whole server down: one bad client could stop
  the API.

The swap is process-wide (and trio only, like fleetd); the interval is each server's
own (its hypercorn Config).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.protocol import h2, h11
from hypercorn.protocol.events import Body, Data, Request, StreamClosed
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from wsproto.events import Event, Ping, Pong

__all__ = ["FleetdWSStream", "install_ws_stream"]

_ANSWERED = (ASGIWebsocketState.RESPONSE, ASGIWebsocketState.HTTPCLOSED)
_EXTENSIONS = b"sec-websocket-extensions"
# Set on the server's hypercorn Config by install_ws_stream (each server its own).
_COMPRESSION = "fleetd_websocket_compression"


class _PongWatch:
    """A wsproto connection that tells its stream about each pong it parses."""

    def __init__(self, inner: Any, stream: FleetdWSStream) -> None:
        self._inner = inner
        self._stream = stream

    def events(self) -> Iterator[Event]:
        for event in self._inner.events():
            if isinstance(event, Pong):
                self._stream.unanswered = False
            yield event

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class FleetdWSStream(WSStream):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unanswered = False
        self._gone = trio.Event()  # the connection ended: the ping task must not linger

    async def handle(self, event: StreamEvent) -> None:
        if isinstance(event, Body | Data) and self.state in _ANSWERED:
            return  # the handshake was refused; the connection closes when the app is done
        if isinstance(event, Request) and not getattr(self.config, _COMPRESSION, False):
            headers = [(k, v) for k, v in event.headers if k.lower() != _EXTENSIONS]
            event = dataclasses.replace(event, headers=headers)
        try:
            await super().handle(event)
        finally:
            if isinstance(event, StreamClosed):
                self._gone.set()

    async def _send_pings(self) -> None:
        # hypercorn starts this right after the handshake when its interval is set.
        self.connection = _PongWatch(self.connection, self)  # type: ignore[assignment]
        interval = self.config.websocket_ping_interval
        assert interval is not None
        while True:
            # Not at once, and never once the app closed: trio-websocket (what
            # `fleetd events` uses) fails on a ping that crosses its own close frame.
            with trio.move_on_after(interval):
                await self._gone.wait()
            if self.closed or self.state is not ASGIWebsocketState.CONNECTED:
                return
            if self.unanswered:
                # Tells the app (disconnect) and closes the socket.
                await self.send(StreamClosed(stream_id=self.stream_id))
                return
            self.unanswered = True
            self.task_group.spawn(self._send_wsproto_event, Ping())


def install_ws_stream(hc: HyperConfig, ping_interval: float, compression: bool = False) -> None:
    """Serve WebSockets of servers run with `hc` through FleetdWSStream, pinging every
    `ping_interval` seconds, accepting permessage-deflate only with `compression`."""
    hc.websocket_ping_interval = ping_interval
    setattr(hc, _COMPRESSION, compression)
    h11.WSStream = FleetdWSStream  # type: ignore[attr-defined]
    h2.WSStream = FleetdWSStream  # type: ignore[attr-defined]
