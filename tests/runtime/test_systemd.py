"""systemd integration: the notify protocol against a real datagram socket, and the unit.

A fake $NOTIFY_SOCKET (a real AF_UNIX datagram socket, as systemd's) listens around a
real `fleetd run` subprocess: READY=1 only after start-up, WATCHDOG=1 at half of
$WATCHDOG_USEC, STATUS= lines, RELOADING=1 + MONOTONIC_USEC then READY=1 on SIGHUP,
STOPPING=1 on SIGTERM. In process: the watchdog stops when the trio loop is stuck.
The unit passes `systemd-analyze verify` without a warning.
"""

from __future__ import annotations

import itertools
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from conftest import fleetd_env
from daemons import Fleet, run_cli, wait_for
from notify_socket import NotifyListener

from fleetd.config import Config
from fleetd.runtime.systemd import Notifier

SYSTEMD_DIR = Path(__file__).parents[2] / "systemd"
# The tests' watchdog: 1 s, so pings every 0.5 s (a loaded CI host can hold a ping up
# by a good fraction of a second; systemd would only act after the whole second).
WATCHDOG_USEC = 1_000_000


@pytest.fixture
def listener() -> Iterator[NotifyListener]:
    sock = NotifyListener()
    try:
        yield sock
    finally:
        sock.close()


def test_daemon_notify_sequence(config: Config, listener: NotifyListener, fleet: Fleet) -> None:
    env = fleetd_env(config) | {
        "NOTIFY_SOCKET": str(listener.path),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
    }
    d = fleet.start(env, ready=False)

    def seen(line: str, after: int = 0) -> int:
        d.assert_alive()
        i = listener.index(line, after)
        return i + 1 if i >= 0 else 0  # 0 = not yet (falsy for wait_for)

    ready = wait_for(lambda: seen("READY=1"), 20, "READY=1", d.tail) - 1
    assert " ready:" in d.log(), "READY=1 came before the daemon logged it was ready"
    # READY carries the first status line: the queue counts, so Redis was up by then.
    ready_msg = listener.messages[ready][1]
    assert any(m.startswith("STATUS=processing 0, pending 0") for m in ready_msg), ready_msg

    # Watchdog: pings every WATCHDOG_USEC / 2, from the start.
    time.sleep(2.6)
    pings = [t for t, msg in listener.messages if "WATCHDOG=1" in msg]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert len(pings) >= 5, pings
    assert max(gaps) < WATCHDOG_USEC / 1e6, gaps  # never late enough to trip systemd

    # STATUS= is refreshed (every 2 s) when the counts change.
    assert run_cli(env, "enqueue", "noop", "--run-at", "2099-01-01T00:00:00Z").returncode == 0
    wait_for(lambda: "STATUS=processing 0, pending 1" in listener.lines(), 10, "STATUS", d.tail)

    d.send(signal.SIGHUP)
    reloading = wait_for(lambda: seen("RELOADING=1", ready + 1), 10, "RELOADING=1", d.tail) - 1
    msg = listener.messages[reloading][1]
    assert any(m.startswith("MONOTONIC_USEC=") for m in msg), msg
    wait_for(lambda: seen("READY=1", reloading + 1), 10, "READY=1 after the reload", d.tail)

    d.send(signal.SIGTERM)
    stopping = wait_for(lambda: seen("STOPPING=1"), 10, "STOPPING=1", d.tail) - 1
    assert d.wait_exit(10) == 0
    assert any(m.startswith("STATUS=stopping") for m in listener.messages[stopping][1])
    lines = listener.lines()
    assert not any(line.startswith("READY=1") for line in lines[lines.index("STOPPING=1") :])


def test_outside_systemd_nothing_is_sent() -> None:
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval is None
    n.ready("x")  # no socket, no error
    n.stopping()


def test_watchdog_of_another_process_is_not_pinged(listener: NotifyListener) -> None:
    env = {"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
    assert Notifier(env).watchdog_interval is None


def test_abstract_socket_address() -> None:
    assert Notifier({"NOTIFY_SOCKET": "@fleetd/notify"}).address == "\0fleetd/notify"


async def test_watchdog_stops_while_the_trio_loop_is_stuck(listener: NotifyListener) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "100000"})

    async def status() -> str:
        return "ok"

    async with trio.open_nursery() as nursery:
        await nursery.start(n.run, status)
        n.ready()
        await trio.sleep(0.3)
        stuck_from = time.monotonic()
        time.sleep(0.5)  # noqa: ASYNC251 — the point: a handler blocking the loop
        stuck_to = time.monotonic()
        await trio.sleep(0.3)
        nursery.cancel_scope.cancel()
    await trio.sleep(0.1)  # the listener thread catches up
    pings = [t for t, msg in listener.messages if "WATCHDOG=1" in msg]
    # Sent ones are in the socket's buffer at once: none is stamped inside the stall
    # beyond the listener's own lag, and pings resume after it.
    during = [t for t in pings if stuck_from + 0.1 < t < stuck_to]
    assert not during, (during, stuck_from, stuck_to)
    assert any(t > stuck_to for t in pings)
    assert ["STATUS=ok"] in [msg for _, msg in listener.messages]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart's binary exists: point it at a stand-in.
    binary = tmp_path / "fleetd"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    unit = tmp_path / "fleetd.service"
    text = (SYSTEMD_DIR / "fleetd.service").read_text()
    unit.write_text(text.replace("/usr/bin/fleetd", str(binary)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    # verify exits 0 on unknown keys; every warning it prints is a mistake in the unit.
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def test_unit_settings() -> None:
    unit = (SYSTEMD_DIR / "fleetd.service").read_text()
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=fleetd",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "User=fleetd",
    ):
        assert f"\n{line}\n" in unit, line
    stop = int(unit.split("\nTimeoutStopSec=")[1].split("s")[0])
    assert stop > Config.default().worker.shutdown_timeout + Config.default().http.shutdown_timeout
    assert "fleetd" in (SYSTEMD_DIR / "fleetd.sysusers").read_text().split()
