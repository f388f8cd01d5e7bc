"""The admin API's accept loop: connections taken from the listening sockets in
batches, probes answered on the spot, every other connection handed to hypercorn.

Why not hypercorn's own worker: it accepts through trio's `serve_listeners`, one
connection per scheduling round, and a round runs every busy connection's task once.
With 2,000 enqueue connections opened at once (bench/overload.py) every `/healthz`
probe sent meanwhile waited in the kernel's accept queue behind them: p50 1.9 s, p99
3.5 s here (5.6 s in the issue), where a load balancer or systemd gives up after
1–5 s. With this loop: p50 ~60 ms, p99 ~170–270 ms; the storm takes 1.5–1.8 s instead
of 3.6–3.8 s, and the daemon half the CPU.

Owns `serve()`, hypercorn 0.18's trio `worker_serve` for our own listening sockets:
lifespan start-up, one accept loop per socket, each connection served by hypercorn's
`TCPServer` (HTTP/1.1 and h2, TLS, keep-alive reaping, the app with fleetd.api.linger
and fleetd.api.admission — unchanged), and hypercorn's graceful stop.

The accept loop (`Acceptor`): when its socket is readable, accept without blocking
until the queue is empty or ACCEPT_BATCH connections were taken, start a task for
each, and wait again — one per wake-up when other processes accept from the same
socket (SHARED_ACCEPT_BATCH). A new plain (not TLS) connection whose first bytes
already hold a whole `GET /healthz` gets its answer inside the accept itself
(fleetd.api.probes.ProbeShortcut): no task, no parsing by h11, no quart — ~10 µs
however many connections are being served.

Lifecycle: `serve(..., task_status)` calls `task_status.started(urls)` once listening
→ the shutdown trigger fires → the listening sockets close → connections in flight get
`graceful_timeout` ([http] shutdown_timeout) → lifespan shutdown → return.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.config import Sockets
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr

__all__ = ["ACCEPT_BATCH", "SHARED_ACCEPT_BATCH", "Acceptor", "Shortcut", "serve"]

log = logging.getLogger("fleetd.http.accept")

# Connections accepted per wake-up of one accept loop, at most. An accept costs ~5 µs
# here and starting its task ~20 µs, so a full batch is ~6 ms of work on the trio
# thread; the 2,000 connections of the overload bench are taken in 8 wake-ups instead
# of 2,000 scheduling rounds. The bound keeps one wake-up from starving the
# connections already being served.
ACCEPT_BATCH = 256
# ...unless several processes accept from the socket (`[daemon] processes` > 1): then
# one per wake-up, as hypercorn did. A process awake in its loop beats a sleeping
# sibling to the queue, and with batches took whole bursts alone (40 connections
# opened one after the other all landed in one child in 3 runs of 8); one at a time,
# the process busy with the connection it took leaves the next to its sibling.
SHARED_ACCEPT_BATCH = 1
# Bytes of a new connection looked at for a probe: a probe's request head is ~40–300
# bytes; a longer head (or one not there yet) goes to hypercorn like any request.
PEEK_BYTES = 1024
# accept() errors that concern one connection (reset or refused before we took it;
# trio's SocketListener skips the same ones): skip it and go on.
SKIPPED_ERRNOS = frozenset(
    getattr(errno, name)
    for name in [
        "EPERM",
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
    ]
    if hasattr(errno, name)
)
# ...and those that say the process is out of descriptors or memory: the pending
# connections stay queued in the kernel; retry after CAPACITY_PAUSE (trio's value).
CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
CAPACITY_PAUSE = 0.1


class Shortcut(Protocol):
    """Answers some requests from their raw bytes (fleetd.api.probes.ProbeShortcut)."""

    def match(self, data: bytes) -> bool | None:
        """Whether `data` is exactly one request this answers: None if not, else
        whether the connection stays open after the answer (keep-alive)."""

    def answer(self, keep_alive: bool) -> bytes:
        """The whole answer to the request `match` took."""


class Acceptor:
    """The accept loop of one listening socket (non-blocking, listening).

    With a `shortcut` (plain sockets only: TLS bytes cannot be read before the
    handshake, which is hypercorn's), a connection whose first request is already
    there when it is accepted and is one the shortcut takes gets its answer there and
    then. Under load that is every probe: a connection waits in the kernel's queue for
    a scheduling round or more (~100 ms in a storm), a client sends its request within
    a round trip of connecting (~0.1 ms here). On an idle daemon a probe may be
    accepted before its bytes come; hypercorn and quart answer it, in ~2 ms."""

    def __init__(
        self,
        sock: socket.socket,
        serve_stream: Callable[[trio.abc.Stream], Awaitable[None]],
        *,
        tls: ssl.SSLContext | None = None,
        shortcut: Shortcut | None = None,
        batch: int = ACCEPT_BATCH,
    ) -> None:
        self.sock = sock
        self.serve_stream = serve_stream
        self.tls = tls
        self.shortcut = shortcut if tls is None else None
        self.batch = batch

    async def run(self, handlers: trio.Nursery) -> None:
        """Accept until cancelled (then the socket is closed); each connection is
        served by a task in `handlers`."""
        try:
            while True:
                await trio.lowlevel.wait_readable(self.sock)
                try:
                    self.accept_batch(handlers)
                except OSError as exc:
                    if exc.errno not in CAPACITY_ERRNOS:
                        raise
                    log.error("accept: %s; retrying in %g s", exc.strerror or exc, CAPACITY_PAUSE)
                    await trio.sleep(CAPACITY_PAUSE)
        finally:
            self.sock.close()

    def accept_batch(self, handlers: trio.Nursery) -> int:
        """Accept what is pending, up to `batch` connections; returns how many.
        Synchronous: no other task runs meanwhile."""
        taken = 0
        while taken < self.batch:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in SKIPPED_ERRNOS:
                    continue
                raise
            taken += 1
            self._start(conn, handlers)
        return taken

    def _start(self, conn: socket.socket, handlers: trio.Nursery) -> None:
        answered = None
        if self.shortcut is not None:
            first = _answer_probe(conn, self.shortcut)
            if isinstance(first, _Closed):
                return
            answered = first
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
        if self.tls is not None:
            stream = trio.SSLStream(stream, self.tls, server_side=True, https_compatible=True)
        handlers.start_soon(self._serve, stream, answered)

    async def _serve(self, stream: trio.abc.Stream, answered: _Answered | None) -> None:
        try:
            if answered is not None:
                await stream.send_all(answered.unsent)  # the rest of a probe's answer
                if not answered.keep_alive:
                    return
            await self.serve_stream(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away before the rest of a probe's answer
        finally:
            await trio.aclose_forcefully(stream)


@dataclass(frozen=True, slots=True)
class _Answered:
    """A probe answered; the connection goes on to hypercorn (keep-alive), or is
    closed once `unsent` — the part of the answer the socket did not take at once —
    is sent."""

    unsent: bytes
    keep_alive: bool


class _Closed:
    """The connection was answered and closed, or found reset: nothing to serve."""


_CLOSED = _Closed()


def _answer_probe(conn: socket.socket, shortcut: Shortcut) -> _Answered | _Closed | None:
    """Answers the connection's first request now if it is there and `shortcut` takes
    it; None (nothing read) if not. Synchronous: a probe costs ~10 µs however busy the
    loop is."""
    try:
        data = conn.recv(PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None  # not sent yet: hypercorn reads it when it comes
    except OSError:  # reset by the client
        conn.close()
        return _CLOSED
    keep_alive = shortcut.match(data)
    if keep_alive is None:
        return None  # hypercorn reads it (b"": the client closed; it sees that too)
    answer = shortcut.answer(keep_alive)
    try:
        conn.recv(len(data))  # the probe's bytes, now read for real (all there: peeked)
        sent = conn.send(answer, socket.MSG_DONTWAIT)
    except BlockingIOError:
        sent = 0  # a socket buffer that cannot take ~200 bytes; the task sends them
    except OSError:
        conn.close()
        return _CLOSED
    if sent == len(answer) and not keep_alive:
        conn.close()  # the probe was all it sent: nothing unread, so a plain FIN
        return _CLOSED
    return _Answered(answer[sent:], keep_alive)


async def serve(
    app: AppWrapper,
    config: HyperConfig,
    sockets: Sockets,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    shortcut: Shortcut | None = None,
    shared: bool = False,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on the listening `sockets` until `shutdown_trigger` returns; hypercorn
    0.18's `worker_serve` (hypercorn/trio/run.py) with our accept loops. `shared`: other
    processes accept from the same sockets. Calls `task_status.started(urls)` once
    listening."""
    config.set_statsd_logger_class(StatsdLogger)
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(app, config, lifespan_state)
    context = WorkerContext(None)  # no [http] max_requests: a worker never retires
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as handlers:
            tcp_server = partial(
                TCPServer, app, config, context, ConnectionState(lifespan_state.copy())
            )

            async def serve_stream(stream: trio.abc.Stream) -> None:
                await tcp_server(stream)  # type: ignore[arg-type]  # plain or TLS

            batch = SHARED_ACCEPT_BATCH if shared else ACCEPT_BATCH
            acceptors, urls = _acceptors(config, sockets, serve_stream, shortcut, batch)
            for url in urls:
                await config.log.info(f"Running on {url}")
            task_status.started(urls)
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(raise_shutdown, context.terminate.wait)
                    for acceptor in acceptors:
                        nursery.start_soon(acceptor.run, handlers)
            except BaseExceptionGroup as error:
                _, other_errors = error.split((ShutdownError, KeyboardInterrupt))
                if other_errors is not None:
                    raise other_errors from None
            finally:
                # Idle keep-alive connections close now; the others get the grace.
                await context.terminated.set()
                handlers.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


def _acceptors(
    config: HyperConfig,
    sockets: Sockets,
    serve_stream: Callable[[trio.abc.Stream], Awaitable[None]],
    shortcut: Shortcut | None,
    batch: int,
) -> tuple[list[Acceptor], list[str]]:
    tls = config.create_ssl_context() if sockets.secure_sockets else None
    acceptors: list[Acceptor] = []
    urls: list[str] = []
    listening: Sequence[tuple[socket.socket, ssl.SSLContext | None]] = [
        *((sock, tls) for sock in sockets.secure_sockets),
        *((sock, None) for sock in sockets.insecure_sockets),
    ]
    for sock, context in listening:
        acceptor = Acceptor(sock, serve_stream, tls=context, shortcut=shortcut, batch=batch)
        acceptors.append(acceptor)
        scheme = "https" if context is not None else "http"
        urls.append(f"{scheme}://{repr_socket_addr(sock.family, sock.getsockname())}")
    return acceptors, urls
