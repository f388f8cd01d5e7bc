"""Real `fleetd` subprocesses for the system and CLI tests.

Owns:
- ``Fleet``: starts `fleetd run` daemons (``python -m fleetd.cli run``), each logging
  stdout+stderr to its own file, and kills whatever is left at teardown;
- ``FleetdProcess``: one daemon — wait until its log says ``ready:``, signal it, wait
  for its exit, read its CPU time from /proc, quote its log tail in failures;
- ``run_cli`` / ``cli_json``: one `fleetd …` command, stdin closed unless given;
- ``wait_for``: every wait in these tests is bounded and fails with context.

Configuration goes through the environment only (``FLEETD_<SECTION>_<KEY>``, built with
``settings()``), as an operator would set it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from fleetd.api.server import HTTP_FILE

T = TypeVar("T")

FLEETD = [sys.executable, "-m", "fleetd.cli"]
# The daemon logs "fleetd <id> ready: <roles>, …" once every service has started.
READY_MARK = " ready:"
# A cold start (imports + connect) takes ~0.5 s here; 20 s only matters on a starved box.
START_TIMEOUT = 20.0
# An idle daemon stops in ~0.5 s after SIGTERM; teardown gives it this long, then SIGKILL.
TEARDOWN_GRACE = 3.0
# One CLI command takes ~0.4 s (imports); a hung one fails the test instead of the run.
CLI_TIMEOUT = 30.0
# Lines of a daemon's log quoted when a test fails.
LOG_TAIL_LINES = 40
POLL = 0.02


def settings(**values: object) -> dict[str, str]:
    """``settings(worker_lease="2s")`` → ``{"FLEETD_WORKER_LEASE": "2s"}``."""
    return {f"FLEETD_{key.upper()}": str(value) for key, value in values.items()}


def wait_for(
    check: Callable[[], T],
    timeout: float,
    what: str,
    context: Callable[[], str] = lambda: "",
    interval: float = POLL,
) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{context()}")
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name (which may hold spaces) start at field 3 (state);
    # utime and stime are fields 14 and 15.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def run_cli(
    env: Mapping[str, str],
    *args: str,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = CLI_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run `fleetd <args>` to completion; its output is captured as text."""
    return subprocess.run(
        [*FLEETD, *args],
        env=dict(env),
        cwd=cwd,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli_json(env: Mapping[str, str], *args: str, stdin: str | None = None) -> Any:
    """Run `fleetd <args> --json` (add --json yourself) expecting exit 0; the parsed body."""
    done = run_cli(env, *args, stdin=stdin)
    assert done.returncode == 0, f"fleetd {' '.join(args)}: exit {done.returncode}\n{done.stderr}"
    return json.loads(done.stdout)


class FleetdProcess:
    """One `fleetd run` subprocess and its log file."""

    def __init__(
        self, name: str, env: Mapping[str, str], log_path: Path, args: tuple[str, ...], cwd: Path
    ) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [*FLEETD, "run", *args],
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        state = "running" if self.alive else f"exited {self.proc.returncode}"
        body = "\n".join(self.log().splitlines()[-lines:])
        return f"--- daemon {self.name} (pid {self.pid}, {state}), log tail ---\n{body}"

    def wait_ready(self, timeout: float = START_TIMEOUT) -> FleetdProcess:
        def ready() -> bool:
            if READY_MARK in self.log():
                return True
            if not self.alive:
                raise AssertionError(f"daemon {self.name} exited before ready\n{self.tail()}")
            return False

        wait_for(ready, timeout, f"daemon {self.name} to log '{READY_MARK}'", self.tail)
        return self

    def assert_alive(self) -> None:
        """Fail now, with the log, if the daemon has exited (use inside wait_for checks)."""
        assert self.alive, f"daemon {self.name} exited\n{self.tail()}"

    def send(self, sig: signal.Signals) -> None:
        assert self.alive, f"daemon {self.name} is not running\n{self.tail()}"
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL (a crash) and reap."""
        if self.alive:
            self.proc.kill()
        self.proc.wait()

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"daemon {self.name} still running {timeout:g}s later\n{self.tail()}"
            ) from None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self, grace: float = TEARDOWN_GRACE) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds: never leaves a process behind."""
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()


class Fleet:
    """The daemons of one test: started on demand, all stopped at teardown."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.procs: list[FleetdProcess] = []

    def start(
        self, env: Mapping[str, str], *args: str, name: str = "", ready: bool = True
    ) -> FleetdProcess:
        name = name or f"d{len(self.procs) + 1}"
        proc = FleetdProcess(name, env, self.workdir / f"{name}.log", args, self.workdir)
        self.procs.append(proc)
        return proc.wait_ready() if ready else proc

    def tails(self) -> str:
        return "\n".join(p.tail() for p in self.procs)

    def api_url(self, state_dir: Path) -> str:
        """The admin API's first URL, as a daemon with this state directory recorded it
        in http.json (port 0 picks a free port)."""
        http_file = state_dir / HTTP_FILE

        def recorded() -> list[str]:
            if not http_file.exists():
                return []
            urls: list[str] = json.loads(http_file.read_text())["urls"]
            return urls

        return wait_for(recorded, 10, "http.json", self.tails)[0]

    def close(self) -> None:
        for proc in self.procs:
            proc.stop()
