"""The supervisor's end of its children's notify protocol.

Owns one AF_UNIX datagram socket in the abstract namespace that every child daemon of
a supervisor (fleetd.runtime.supervisor) gets as its $NOTIFY_SOCKET. A child's
unchanged Notifier (fleetd.runtime.systemd) sends READY=1, STATUS=, WATCHDOG=1,
RELOADING=1 and STOPPING=1 there exactly as it would to systemd; the supervisor reads
them and alone talks to systemd. SO_PASSCRED makes the kernel attach the sender's pid
to each datagram (as systemd's own socket does), so a message names the child that
sent it and one from any other process is dropped.

Lifecycle: `NotifyRelay()` binds (a name unique to this process) → `messages()` yields
(pid, lines) until cancelled → `close()`.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import AsyncIterator

import trio

__all__ = ["NotifyRelay"]

# sd_notify messages are a few lines of KEY=VALUE; systemd itself reads at most one
# page less headers. Larger datagrams are truncated, which the parser tolerates.
MAX_MESSAGE = 4096
# struct ucred: pid, uid, gid as three C ints.
_UCRED = struct.Struct("3i")


class NotifyRelay:
    """An abstract-namespace datagram socket collecting the children's notify lines."""

    def __init__(self) -> None:
        if not hasattr(socket, "SO_PASSCRED"):
            raise OSError("several processes need Linux (SO_PASSCRED on AF_UNIX sockets)")
        # The abstract namespace: no file to clean up, nothing in the state directory,
        # and the name cannot outlive this process. The random part stops a guess.
        name = f"fleetd-supervisor-{os.getpid()}-{os.urandom(6).hex()}"
        self.address = "@" + name  # as $NOTIFY_SOCKET spells an abstract name
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            sock.bind("\0" + name)
        except BaseException:
            sock.close()
            raise
        self._sock = trio.socket.from_stdlib_socket(sock)

    async def messages(self) -> AsyncIterator[tuple[int, list[str]]]:
        """(sender pid, its lines) for every datagram, in arrival order."""
        space = socket.CMSG_SPACE(_UCRED.size)
        while True:
            data, ancillary, _flags, _addr = await self._sock.recvmsg(MAX_MESSAGE, space)
            pid = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _UCRED.unpack(payload[: _UCRED.size])[0]
            if pid:
                yield pid, data.decode(errors="replace").split("\n")

    def close(self) -> None:
        self._sock.close()
