"""systemd's notify protocol: READY, WATCHDOG, STATUS, RELOADING and STOPPING.

Owns the datagram socket to $NOTIFY_SOCKET (sd_notify(3): one AF_UNIX datagram of
newline-separated KEY=VALUE lines; a leading '@' names an abstract socket) and two
trio tasks:

- the watchdog ping, WATCHDOG=1 every half of $WATCHDOG_USEC. It is a trio task on
  purpose: when the trio loop is stuck (a handler blocking the thread, a deadlock) the
  pings stop and systemd restarts the service, which is what the watchdog is for (a
  supervisor, fleetd.runtime.supervisor, pings only while every child pings it);
- the status line, STATUS=<text> refreshed every STATUS_INTERVAL from a callback
  ("processing 3, pending 120"), sent only when it changed.

Lifecycle: run() → both tasks started, the daemon sends ready() once every service
started → reloading()/ready() around each SIGHUP → stopping() at a graceful stop →
cancelled with the daemon's nursery. Outside systemd ($NOTIFY_SOCKET unset) every call
is a no-op; a send that fails is logged once and never stops the daemon. The child
daemons of a supervisor speak the same protocol to the supervisor's socket
(fleetd.runtime.notify_relay), which alone talks to systemd.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

import trio

__all__ = ["Notifier"]

log = logging.getLogger("fleetd.systemd")

# How often the STATUS= line is recomputed (one Redis round trip for the counts):
# `systemctl status` is read by people, so a few seconds stale is fine.
STATUS_INTERVAL = 2.0
# While starting (waiting for Redis), each ping also asks systemd for this many ping
# intervals more of TimeoutStartSec: waiting for Redis is normal, a stuck loop is not.
EXTEND_PINGS = 3

StatusFn = Callable[[], Awaitable[str]]
HealthFn = Callable[[], bool]


def _address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace
    if value.startswith("/"):
        return value
    return None  # vsock and other families: not used by systemd for services


class Notifier:
    """One daemon's channel to systemd (a no-op outside systemd)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval: float | None = None
        pid = env.get("WATCHDOG_PID", "")
        usec = env.get("WATCHDOG_USEC", "")
        # WATCHDOG_PID names the process systemd watches: maybe not this one (a child).
        mine = not pid or pid == str(os.getpid())
        if self.address and mine and usec.isdigit() and int(usec) > 0:
            self.watchdog_interval = int(usec) / 1e6 / 2
        self._sock: socket.socket | None = None
        self._failed = False
        self._ready = False
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> None:
        if self.address is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)  # a full socket drops a ping, never blocks
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("systemd notify to %s failed: %s", self.address.lstrip("\0"), exc)
                self._failed = True

    # -- the daemon's state changes ---------------------------------------------------

    def ready(self, status: str = "") -> None:
        self._ready = True
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        # systemd ≥ 253 (Type=notify-reload) wants MONOTONIC_USEC with RELOADING=1.
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={now_usec}")

    def stopping(self, status: str = "stopping") -> None:
        self._ready = False
        self.send("STOPPING=1", f"STATUS={status}")

    def status(self, text: str) -> None:
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- service ----------------------------------------------------------------------

    async def run(
        self,
        status: StatusFn,
        healthy: HealthFn | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """`healthy`: when given, a watchdog ping is sent only while it answers True (the
        supervisor's children: systemd restarts the service when one stays stuck)."""
        try:
            async with trio.open_nursery() as tasks:
                if self.enabled:
                    if self.watchdog_interval is not None:
                        tasks.start_soon(self._ping, self.watchdog_interval, healthy)
                    tasks.start_soon(self._refresh, status)
                task_status.started()
        finally:
            self.close()

    async def _ping(self, interval: float, healthy: HealthFn | None) -> None:
        extend = f"EXTEND_TIMEOUT_USEC={int(interval * EXTEND_PINGS * 1e6)}"
        while True:
            if healthy is None or healthy():
                self.send("WATCHDOG=1", *(() if self._ready else (extend,)))
            await trio.sleep(interval)

    async def _refresh(self, status: StatusFn) -> None:
        while True:
            self.status(await status())
            await trio.sleep(STATUS_INTERVAL)
