"""The admin API's listening sockets: bound here, or inherited from a supervisor.

Owns binding every `[http] listen` address (host:port, or unix:/path) with the listen
backlog, clearing a unix socket a dead daemon left behind, and adopting sockets a
parent process bound and passed down (`fleetd run` with `[daemon] processes` > 1: the
supervisor binds once, every child daemon accepts from the same sockets). No quart or
hypercorn here, so the supervisor binds without importing the API.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "LISTEN_BACKLOG",
    "HttpError",
    "adopt_listeners",
    "bind_listeners",
    "clear_stale_sockets",
]

# Connections the kernel completes and queues for accept() on each listener (one queue
# that a supervisor's children share). hypercorn's default of 100 overflowed when 2,000
# clients connected at once: the kernel dropped their handshakes' last ACK, clients
# retransmitted for up to a minute and some were reset. The kernel caps this at
# net.core.somaxconn (4096 by default since Linux 5.4).
LISTEN_BACKLOG = 4096


class HttpError(Exception):
    """The API cannot start (an address is taken, a TLS or key file does not load)."""


def _listen(bind: str, backlog: int) -> socket.socket:
    """A listening socket for `host:port` or `unix:/path`, closed again on any error
    (hypercorn's own create_sockets leaks the socket of a failed bind)."""
    if bind.startswith("unix:"):
        family: int = socket.AF_UNIX
        address: Any = bind[len("unix:") :]
    else:
        host, _, port = bind.rpartition(":")
        info = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        family, address = info[0][0], info[0][4]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _clear_stale_socket(path: Path) -> None:
    """Remove a unix socket left by a dead daemon; refuse one somebody listens on."""
    if not path.exists():
        return
    if not path.is_socket():
        raise HttpError(f"http.listen unix:{path}: exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise HttpError(f"http.listen unix:{path}: another process listens there")


def clear_stale_sockets(binds: Sequence[str]) -> None:
    for bind in binds:
        if bind.startswith("unix:"):
            _clear_stale_socket(Path(bind[len("unix:") :]))


def bind_listeners(binds: Sequence[str], backlog: int) -> list[socket.socket]:
    """Listen on every address now, in order (a taken one raises HttpError naming it and
    closes the ones already bound)."""
    opened: list[socket.socket] = []
    for bind in binds:
        try:
            opened.append(_listen(bind, backlog))
        except OSError as exc:
            for sock in opened:
                sock.close()
            raise HttpError(f"http.listen: cannot listen on {bind}: {exc}") from None
    return opened


def adopt_listeners(fds: Sequence[int], binds: Sequence[str]) -> list[socket.socket]:
    """The listening sockets a supervisor bound for `binds` and passed down as `fds`
    (same order); each must be a listening stream socket."""
    if len(fds) != len(binds):
        raise HttpError(f"inherited {len(fds)} listening socket(s) for {len(binds)} address(es)")
    adopted: list[socket.socket] = []
    for fd, bind in zip(fds, binds, strict=True):
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise HttpError(f"http.listen {bind}: inherited fd {fd} unusable: {exc}") from None
        adopted.append(sock)
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            for s in adopted:
                s.close()
            raise HttpError(f"http.listen {bind}: inherited fd {fd} is not listening")
        sock.set_inheritable(False)
        sock.setblocking(False)
    return adopted
