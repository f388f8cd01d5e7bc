"""`fleetd run` with `[daemon] processes` > 1: one parent supervising N ordinary daemons.

    supervisor (a trio loop; runs no jobs and never talks to Redis)
    ├── listeners   binds every [http] listen address once; each child accepts from
    │               the same sockets (passed down as file descriptors)
    ├── relay       the children's $NOTIFY_SOCKET (fleetd.runtime.notify_relay)
    ├── systemd     the only Notifier that talks to systemd: READY=1 once every child
    │               is ready, STATUS= with the children's counts, WATCHDOG=1 only while
    │               every child pings, RELOADING=1…READY=1 around SIGHUP, STOPPING=1
    ├── signals     TERM/INT: stop (forwarded; a second one too), HUP: reload every
    │               child, USR1: every child logs its state
    └── slot 1…N    start a child (`fleetd run --supervisor <pid>`), wait for it, start
                    it again when it dies unexpectedly (≥ RESTART_INTERVAL apart)

Each child is a complete daemon with its own id (host:pid:random) in `worker/metrics`,
its own Redis link, worker pool, scheduler and API on the shared sockets; the scheduler
and the reaper are already safe with many daemons. A child that dies is replaced, and
the jobs it was running come back through their leases (the reaper of any child).

Why one set of sockets passed down rather than SO_REUSEPORT in each child: the accept
queue belongs to the socket, which the parent and the other children keep open, so a
child's death resets no queued connection (with SO_REUSEPORT the connections queued on
the dead child's socket are reset); the child that is free accepts first, instead of a
hash queueing a connection behind a busy child; port 0 and unix: addresses work as
they are; and a taken port is one start-up error, before any child starts.

Lifecycle: start → every slot starts its child → all READY → READY=1 → (restarts,
reloads) → TERM: STOPPING=1, forwarded, the parent's copies of the sockets closed,
children drain → exit 0 once every child exited (1 if one failed while draining). A
child that exits before the supervisor was ever ready fails the start: the others are
stopped and `fleetd run` exits with its code (a broken config or plugin would only
crash-loop).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import trio

from fleetd.api.listeners import LISTEN_BACKLOG, HttpError, bind_listeners, clear_stale_sockets
from fleetd.config import Config
from fleetd.runtime.daemon import DaemonError
from fleetd.runtime.notify_relay import NotifyRelay
from fleetd.runtime.systemd import Notifier

__all__ = ["Supervisor", "resolve_processes", "self_command"]

log = logging.getLogger("fleetd.supervisor")

# A slot starts its child at most once a second: a child that crashes at once costs a
# start-up (~0.5-1 s of CPU for imports and connecting) per second, not a busy loop.
RESTART_INTERVAL = 1.0
# This many starts of one slot within CRASH_LOOP_WINDOW are logged as a crash loop (an
# error, once per window): at one start a second, 5 starts is 5 deaths in a minute.
CRASH_LOOP_STARTS = 5
CRASH_LOOP_WINDOW = 60.0
# A child reloads in milliseconds (one file read); past this the supervisor says it is
# ready again anyway (systemd would otherwise wait on RELOADING) and logs who was late.
RELOAD_TIMEOUT = 10.0


def resolve_processes(value: int | str) -> int:
    """`[daemon] processes` as a number: "auto" is the CPUs this process may run on
    (its affinity mask: a container pinned to 2 of 64 cores gets 2)."""
    if value != "auto":
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def self_command() -> list[str]:
    """The command that starts this same fleetd again: `python -m fleetd.cli` as
    itself; otherwise the interpreter and the script it runs, which is the console
    script or the one-file binary (a shiv zipapp: sys.argv[0] is the file, and the
    interpreter unpacks and runs it again)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name.startswith("fleetd."):
        return [sys.executable, "-m", spec.name.removesuffix(".__main__")]
    return [sys.executable, os.path.abspath(sys.argv[0])]


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


@dataclass(eq=False)
class Child:
    """One slot and the process currently in it."""

    slot: int
    proc: trio.Process | None = None
    ready: bool = False
    was_ready: bool = False
    status: str = ""
    pinged: float = 0.0  # trio time of its last WATCHDOG=1 (or of its start)
    reloaded: trio.Event = field(default_factory=trio.Event)
    starts: deque[float] = field(default_factory=lambda: deque(maxlen=CRASH_LOOP_STARTS))

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.alive:
            self.proc.send_signal(sig)


class Supervisor:
    def __init__(self, cfg: Config, processes: int) -> None:
        if cfg.redis.url.startswith("memory://"):
            raise DaemonError(
                f"[daemon] processes = {processes} needs a Redis server that every "
                "process shares; redis.url = memory:// is a store inside one process. "
                "Set redis.url to a Redis server, or processes = 1"
            )
        self.cfg = cfg
        self.children = [Child(slot) for slot in range(1, processes + 1)]
        self.notifier = Notifier()
        self.exit_code = 0
        self._stopping = False
        self._announced = False  # READY=1 sent (once; again only after a reload)
        self._spawning = 0
        self._listeners: list[socket.socket] = []
        self._crash_logged: dict[int, float] = {}
        roles = ",".join(cfg.daemon.roles)
        config = ["--config", str(cfg.source)] if cfg.source is not None else []
        self.command = [*self_command(), *config, "run", "--roles", roles]
        self._env = self._child_env()

    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_PID", "WATCHDOG_USEC")}
        env["NOTIFY_SOCKET"] = ""  # set once the relay is bound
        if self.notifier.watchdog_interval is not None:
            # The children ping the supervisor at systemd's cadence; a child silent for
            # a whole period makes the supervisor stop pinging systemd.
            env["WATCHDOG_USEC"] = str(int(self.notifier.watchdog_interval * 2e6))
        return env

    # -- control ---------------------------------------------------------------------

    def request_stop(self) -> None:
        """Graceful stop of every child (forwarded again on a second request)."""
        if not self._stopping:
            self._stopping = True
            log.info("stopping %d processes gracefully", sum(c.alive for c in self.children))
            self.notifier.stopping(self._status_text())
            self._close_listeners_when_idle()
        for child in self.children:
            child.signal(signal.SIGTERM)

    def _close_listeners_when_idle(self) -> None:
        # The children hold their own copies; closing ours at once makes a connection
        # made after the stop refused, not queued until the last child exits. Not while
        # a child is being started: it inherits these descriptors.
        if self._stopping and self._spawning == 0:
            for sock in self._listeners:
                sock.close()
            self._listeners = []

    async def _reload(self) -> None:
        waiting = [c for c in self.children if c.alive and c.ready]
        log.info("SIGHUP: reloading %d processes", len(waiting))
        self.notifier.reloading()
        for child in waiting:
            child.reloaded = trio.Event()
            # Only ready children: one still starting has no handler yet and would die.
            child.signal(signal.SIGHUP)
        with trio.move_on_after(RELOAD_TIMEOUT):
            for child in waiting:
                await child.reloaded.wait()
        late = [c.slot for c in waiting if not c.reloaded.is_set()]
        if late:
            log.warning("reload: process(es) %s did not confirm within %gs", late, RELOAD_TIMEOUT)
        if not self._stopping:
            self.notifier.ready(self._status_text())

    def state(self) -> dict[str, Any]:
        return {
            "supervisor": os.getpid(),
            "children": [
                {"slot": c.slot, "pid": c.pid if c.alive else None,
                 "ready": c.ready, "status": c.status}
                for c in self.children
            ],
        }  # fmt: skip

    async def _signals(self, nursery: trio.Nursery) -> None:
        sigs = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1]
        with trio.open_signal_receiver(*sigs) as receiver:
            async for signum in receiver:
                if signum in (signal.SIGTERM, signal.SIGINT):
                    log.info("received %s: stopping gracefully", signal.Signals(signum).name)
                    self.request_stop()
                elif signum == signal.SIGHUP and not self._stopping:
                    nursery.start_soon(self._reload)
                elif signum == signal.SIGUSR1:
                    log.info("state: %s", json.dumps(self.state()))
                    for child in self.children:
                        if child.ready:
                            child.signal(signal.SIGUSR1)

    # -- systemd ---------------------------------------------------------------------

    def _status_text(self) -> str:
        n = len(self.children)
        if self._stopping:
            head = f"stopping: {sum(c.alive for c in self.children)}/{n} processes draining"
        else:
            head = f"{sum(c.ready for c in self.children)}/{n} processes ready"
        parts = [f"#{c.slot} {c.status}" for c in self.children if c.alive and c.status]
        return "; ".join([head, *parts])

    async def _status(self) -> str:
        return self._status_text()

    def _healthy(self) -> bool:
        """Every slot has a live child that pinged within one watchdog period."""
        period = 2 * (self.notifier.watchdog_interval or 0.0)
        now = trio.current_time()
        return all(c.alive and now - c.pinged <= period for c in self.children)

    async def _relay(self, relay: NotifyRelay) -> None:
        async for pid, lines in relay.messages():
            child = next((c for c in self.children if c.alive and c.pid == pid), None)
            if child is None:
                continue  # a child that already exited, or not one of ours
            for line in lines:
                key, _, value = line.partition("=")
                if key == "READY":
                    self._child_ready(child)
                elif key == "STATUS":
                    child.status = value
                elif key == "WATCHDOG":
                    child.pinged = trio.current_time()
                elif key == "STOPPING":
                    child.ready = False

    def _child_ready(self, child: Child) -> None:
        if not child.ready and child.was_ready and not self._stopping:
            log.info("process %d (pid %d) is ready again", child.slot, child.pid)
        child.ready = child.was_ready = True
        child.reloaded.set()
        if not self._announced and not self._stopping and all(c.ready for c in self.children):
            self._announced = True
            self.notifier.ready(self._status_text())
            pids = ", ".join(str(c.pid) for c in self.children)
            log.info("fleetd supervisor ready: %d processes, pids %s", len(self.children), pids)

    # -- slots -----------------------------------------------------------------------

    async def _pace(self, child: Child) -> None:
        """At most one start per RESTART_INTERVAL; a crash loop is logged once a window."""
        if child.starts:
            await trio.sleep_until(child.starts[-1] + RESTART_INTERVAL)
            now = trio.current_time()
            full = len(child.starts) == CRASH_LOOP_STARTS
            logged = self._crash_logged.get(child.slot, -CRASH_LOOP_WINDOW)
            if full and now - child.starts[0] < CRASH_LOOP_WINDOW <= now - logged:
                self._crash_logged[child.slot] = now
                log.error(
                    "process %d is crash-looping: %d starts in %.0fs",
                    child.slot, CRASH_LOOP_STARTS, now - child.starts[0],
                )  # fmt: skip
        child.starts.append(trio.current_time())

    async def _spawn(self, child: Child) -> trio.Process:
        fds = [sock.fileno() for sock in self._listeners]
        extra = ["--supervisor", str(os.getpid())]
        if fds:
            extra += ["--listen-fds", ",".join(map(str, fds))]
        self._spawning += 1
        try:
            # Its own process group: a terminal's Ctrl-C reaches the supervisor only,
            # which forwards it once (twice would stop the child's jobs at once).
            proc = await trio.lowlevel.open_process(
                [*self.command, *extra], env=self._env, stdin=subprocess.DEVNULL,
                pass_fds=fds, process_group=0,
            )  # fmt: skip
        finally:
            self._spawning -= 1
            self._close_listeners_when_idle()
        child.proc, child.ready, child.status = proc, False, ""
        child.pinged = trio.current_time()  # one watchdog period to start pinging
        log.info("process %d started: pid %d", child.slot, proc.pid)
        return proc

    async def _keep(self, child: Child) -> None:
        """Run the slot's child; start it again when it dies, until the stop."""
        while not self._stopping:
            await self._pace(child)
            if self._stopping:
                return
            proc = await self._spawn(child)
            if self._stopping:
                proc.send_signal(signal.SIGTERM)  # started while the stop was requested
            code = await proc.wait()
            was_ready, child.ready = child.was_ready, False
            child.reloaded.set()
            what = f"process {child.slot} (pid {proc.pid}) {_describe_exit(code)}"
            if self._stopping:
                if code != 0 and was_ready:
                    log.warning("%s while stopping", what)
                    self.exit_code = 1
                return
            if not self._announced:
                log.error("%s before fleetd was ready: stopping", what)
                self.exit_code = code if code > 0 else 1
                self.request_stop()
                return
            log.warning("%s; starting it again", what)

    # -- run -------------------------------------------------------------------------

    async def run(self) -> int:
        """Supervise until every child exited after a stop; the exit code."""
        if "api" in self.cfg.daemon.roles:
            try:
                clear_stale_sockets(self.cfg.http.listen)
                self._listeners = bind_listeners(self.cfg.http.listen, LISTEN_BACKLOG)
            except HttpError as exc:
                raise DaemonError(str(exc)) from None
        relay = NotifyRelay()
        self._env["NOTIFY_SOCKET"] = relay.address
        healthy = self._healthy if self.notifier.watchdog_interval is not None else None
        try:
            async with trio.open_nursery() as services:
                services.start_soon(self._signals, services)
                await services.start(self.notifier.run, self._status, healthy)
                services.start_soon(self._relay, relay)
                log.info("fleetd supervisor (pid %d) starting %d processes",
                         os.getpid(), len(self.children))  # fmt: skip
                async with trio.open_nursery() as slots:
                    for child in self.children:
                        slots.start_soon(self._keep, child)
                services.cancel_scope.cancel()
        finally:
            relay.close()
            self._stopping = True
            self._close_listeners_when_idle()
        log.info("fleetd supervisor stopped (exit code %d)", self.exit_code)
        return self.exit_code
