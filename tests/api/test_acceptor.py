"""The admin API's accept loop (fleetd.api.acceptor) and the probe shortcut
(fleetd.api.probes.ProbeShortcut), without a daemon: a listening socket, raw clients.

What they pin: one wake-up accepts a batch of pending connections, not one; a probe
whose request is already there is answered inside that accept, before any task runs,
and a keep-alive one goes on to hypercorn with its request consumed; the shortcut takes
only what h11 would parse as a plain `GET /healthz`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

from fleetd.api.acceptor import ACCEPT_BATCH, Acceptor
from fleetd.api.listeners import bind_listeners
from fleetd.api.probes import ProbeShortcut

PROBE = b"GET /healthz HTTP/1.1\r\nHost: fleetd\r\n\r\n"
CLOSING_PROBE = b"GET /healthz HTTP/1.1\r\nHost: fleetd\r\nConnection: close\r\n\r\n"
ENQUEUE = b"POST /api/v1/admin/jobs/enqueue HTTP/1.1\r\nHost: fleetd\r\n\r\n"
READYZ = b"GET /readyz HTTP/1.1\r\nHost: fleetd\r\n\r\n"
ANSWER_BODY = b'\r\n\r\n{"status":"ok"}\n'


@contextmanager
def listening() -> Iterator[tuple[socket.socket, tuple[str, int]]]:
    (sock,) = bind_listeners(["127.0.0.1:0"], 4096)
    try:
        yield sock, sock.getsockname()
    finally:
        sock.close()


def connect(address: tuple[str, int], n: int) -> list[socket.socket]:
    """`n` clients, connected (queued by the kernel: nobody accepts yet)."""
    return [socket.create_connection(address, timeout=5) for _ in range(n)]


def received_now(client: socket.socket) -> bytes:
    """What the server has sent `client` so far, without waiting ("" if nothing)."""
    client.settimeout(None)  # MSG_DONTWAIT then fails at once instead of polling
    data = b""
    while True:
        try:
            chunk = client.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return data
        if not chunk:
            return data + b"<EOF>"
        data += chunk


async def test_one_wake_up_accepts_a_batch_of_pending_connections() -> None:
    served: list[trio.abc.Stream] = []

    async def serve_stream(stream: trio.abc.Stream) -> None:
        served.append(stream)

    with listening() as (sock, address):
        clients = connect(address, ACCEPT_BATCH + 44)
        try:
            acceptor = Acceptor(sock, serve_stream)
            async with trio.open_nursery() as nursery:
                # hypercorn's worker took one per scheduling round; this takes them all.
                assert acceptor.accept_batch(nursery) == ACCEPT_BATCH
                assert acceptor.accept_batch(nursery) == 44
                assert acceptor.accept_batch(nursery) == 0
            assert len(served) == ACCEPT_BATCH + 44
        finally:
            for client in clients:
                client.close()


async def test_a_probe_already_sent_is_answered_inside_the_accept() -> None:
    served: list[bytes] = []

    async def serve_stream(stream: trio.abc.Stream) -> None:
        served.append(bytes(await stream.receive_some()))  # hypercorn's first read

    with listening() as (sock, address):
        enqueue, closing, keep_alive, silent = connect(address, 4)
        try:
            enqueue.sendall(ENQUEUE)
            closing.sendall(CLOSING_PROBE)
            keep_alive.sendall(PROBE)
            acceptor = Acceptor(sock, serve_stream, shortcut=ProbeShortcut(None))
            async with trio.open_nursery() as nursery:
                assert acceptor.accept_batch(nursery) == 4
                # No task has run yet: both probes have their whole answers already.
                answer = received_now(closing)
                assert answer.startswith(b"HTTP/1.1 200 \r\n"), answer
                assert answer.endswith(b"Connection: close" + ANSWER_BODY + b"<EOF>"), answer
                answer = received_now(keep_alive)
                assert answer.endswith(ANSWER_BODY) and b"onnection" not in answer, answer
                assert received_now(enqueue) == b""
                # The keep-alive probe's connection goes on: its next request is
                # hypercorn's, the probe's bytes are not. A connection that had sent
                # nothing yet is hypercorn's too, whatever it sends.
                keep_alive.sendall(READYZ)
                silent.sendall(PROBE)
            assert sorted(served) == sorted([ENQUEUE, READYZ, PROBE])
        finally:
            for client in (enqueue, closing, keep_alive, silent):
                client.close()


@pytest.mark.parametrize(
    ("request_head", "keep_alive"),
    [
        (PROBE, True),
        (b"GET /healthz HTTP/1.1\r\nhost: x\r\nConnection: keep-alive, Close\r\n\r\n", False),
        (b"GET /healthz HTTP/1.0\r\n\r\n", False),
        (b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False),  # as h11
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: kube-probe/1.29\r\n\r\n", True),
        # Not plain probes: h11, hypercorn and quart decide.
        (b"GET /healthz HTTP/1.1\r\n\r\n", None),  # no Host: h11 answers 400
        (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", None),
        (b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n", None),
        (b"GET /healthz?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n", None),
        (b"GET /healthz/ HTTP/1.1\r\nHost: x\r\n\r\n", None),
        (b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", None),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", None),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n", None),
        (b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", None),  # malformed header
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", None),  # head not complete
        (PROBE + PROBE, None),  # pipelined
        (b"GET /healthz HTTP/1.1\nHost: x\n\n", None),
    ],
)
def test_the_shortcut_takes_only_plain_probes(request_head: bytes, keep_alive: bool | None) -> None:
    assert ProbeShortcut(None).match(request_head) is keep_alive
