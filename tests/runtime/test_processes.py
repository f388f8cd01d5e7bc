"""`[daemon] processes = N`: one `fleetd run` supervising N daemons, end to end.

Real `fleetd run` subprocesses against a real redis-server, a real notify socket: two
children are two daemons in worker/metrics and both drain jobs; HTTP connections on the
one port are accepted by both children; READY=1 is sent once, after both are up, and
the watchdog pings only while every child pings; a SIGKILLed child is replaced and its
running jobs come back through their leases; SIGTERM drains every child and exits 0;
SIGHUP reloads every child; a child failing at start fails the start; memory:// is
refused with more than one process.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import fleetd_env
from daemons import Fleet, FleetdProcess, cli_json, run_cli, settings, wait_for
from notify_socket import NotifyListener
from test_system import FAST_RECOVERY, all_completed, enqueue, events, get_jobs, stats

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus
from fleetd.runtime.supervisor import resolve_processes

TWO = settings(daemon_processes=2)
SUPERVISOR_READY = "supervisor ready:"
# Two children start in ~1-2 s here; 30 s only matters on a starved box.
START_TIMEOUT = 30.0
# The tests' watchdog: 1 s, so pings every 0.5 s (children and supervisor alike).
WATCHDOG_USEC = 1_000_000


@pytest.fixture
def listener() -> Iterator[NotifyListener]:
    sock = NotifyListener()
    try:
        yield sock
    finally:
        sock.close()


def start(fleet: Fleet, env: dict[str, str], name: str = "S") -> FleetdProcess:
    proc = fleet.start(env, name=name, ready=False)

    def ready() -> bool:
        proc.assert_alive()
        return SUPERVISOR_READY in proc.log()

    wait_for(ready, START_TIMEOUT, "the supervisor to be ready", proc.tail)
    return proc


def daemons(engine: Engine) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = engine.link.run_sync(engine.ops.daemons)
    return found


def child_pids(engine: Engine) -> set[int]:
    return {int(d["pid"]) for d in daemons(engine)}


def server_pids(port: int, clients: list[socket.socket], candidates: set[int]) -> list[int]:
    """For each client connection to `port`, the pid among `candidates` holding the
    server's end (found through /proc/net/tcp and the candidates' descriptors)."""
    inodes: dict[int, int] = {}  # client's port -> inode of the server's socket
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], int(fields[9])
        if int(local.split(":")[1], 16) == port:
            inodes[int(remote.split(":")[1], 16)] = inode
    owner: dict[int, int] = {}
    for pid in candidates:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd) if fd.is_symlink() else ""
            if target.startswith("socket:["):
                owner[int(target[8:-1])] = pid
    return [owner.get(inodes.get(c.getsockname()[1], -1), 0) for c in clients]


def get_healthz(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: fleetd\r\n\r\n")
    data = b""
    while b'{"status":"ok"}' not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_processes_auto_is_the_cpus_this_process_may_use() -> None:
    assert resolve_processes("auto") == len(os.sched_getaffinity(0))
    assert resolve_processes(3) == 3


def test_memory_store_is_refused_with_several_processes(config: Config) -> None:
    env = fleetd_env(config) | settings(redis_url="memory://")
    done = run_cli(env, "run", "--processes", "2")
    assert done.returncode == 2, done.stderr
    assert "memory://" in done.stderr and "processes = 1" in done.stderr, done.stderr
    bad = run_cli(env, "run", "--processes", "0")
    assert bad.returncode == 2
    assert 'must be an integer from 1 to 256 or "auto"' in bad.stderr, bad.stderr


@pytest.mark.slow
def test_two_children_are_two_daemons_that_drain_share_the_port_and_ready_once(
    config: Config, engine: Engine, fleet: Fleet, listener: NotifyListener
) -> None:
    env = fleetd_env(config) | TWO | {
        "NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": str(WATCHDOG_USEC),
    }  # fmt: skip
    s = start(fleet, env)

    # READY=1 once, after both children logged they were ready, with the count.
    wait_for(lambda: listener.index("READY=1") >= 0, 10, "READY=1", s.tail)
    log = s.log()
    ready_lines = [
        line for line in log.splitlines() if "fleetd.daemon:" in line and " ready: " in line
    ]
    assert len(ready_lines) == 2, log  # the children's "fleetd <id> ready: <roles>"
    assert log.index(SUPERVISOR_READY) > max(log.index(line) for line in ready_lines)
    ready = listener.messages[listener.index("READY=1")][1]
    assert any(line.startswith("STATUS=2/2 processes ready") for line in ready), ready

    # Two distinct daemons in worker/metrics, neither of them the supervisor.
    body = cli_json(env, "workers", "--json")
    ids = [d["daemon_id"] for d in body["daemons"]]
    pids = child_pids(engine)
    assert len(ids) == len(set(ids)) == 2 and len(pids) == 2 and s.pid not in pids, body

    # Both drain: 400 short jobs end up shared between the two.
    job_ids = enqueue(engine, [{"type": "noop", "data": {"sleep_ms": 5}}] * 400)
    wait_for(all_completed(engine, job_ids), 60, "every job completed", s.tail)

    def both_processed() -> list[int]:
        counts = [d["metrics"]["jobs_processed"] for d in daemons(engine)]
        return counts if len(counts) == 2 and sum(counts) == 400 else []

    counts = wait_for(both_processed, 10, "both heartbeats to count the jobs", s.tail)
    assert min(counts) > 0, counts

    # One port, both children: 40 connections opened at once are accepted by both.
    port = int(fleet.api_url(config.state_dir).rsplit(":", 1)[1])
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(40)]
    try:
        answers = [get_healthz(c) for c in clients]
        assert all(a.startswith(b"HTTP/1.1 200") for a in answers), answers[:3]
        owners = server_pids(port, clients, pids)
    finally:
        for c in clients:
            c.close()
    assert set(owners) == pids, owners

    # The watchdog pings only while every child pings: a stopped child stops them.
    stopped = min(pids)
    os.kill(stopped, signal.SIGSTOP)
    try:
        time.sleep(2 * WATCHDOG_USEC / 1e6)  # one period to notice, one to observe
        since = time.monotonic()
        time.sleep(WATCHDOG_USEC / 1e6)
        late = [t for t, msg in listener.messages if "WATCHDOG=1" in msg and t > since]
        assert not late, "the supervisor pinged while a child was stuck"
    finally:
        os.kill(stopped, signal.SIGCONT)
    resumed = time.monotonic()
    wait_for(
        lambda: any(t > resumed and "WATCHDOG=1" in m for t, m in listener.messages),
        5, "pings once the child runs again", s.tail,
    )  # fmt: skip

    s.send(signal.SIGTERM)
    assert s.wait_exit(20) == 0
    lines = listener.lines()
    assert lines.count("READY=1") == 1 and "STOPPING=1" in lines, lines


@pytest.mark.slow
def test_sigkilled_child_is_replaced_and_its_running_jobs_recovered(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    env = (
        fleetd_env(config)
        | TWO
        | FAST_RECOVERY
        | settings(worker_concurrency=2, daemon_heartbeat_interval="500ms")
    )
    s = start(fleet, env)
    ids = enqueue(engine, [{"type": "noop", "data": {"sleep_ms": 3000, "n": i}} for i in range(4)])

    def running_in_both() -> list[dict[str, Any]]:
        found = daemons(engine)
        return found if len(found) == 2 and all(d["running"] == 2 for d in found) else []

    victim = int(wait_for(running_in_both, 15, "2 jobs running in each child", s.tail)[0]["pid"])
    os.kill(victim, signal.SIGKILL)

    # Replaced: a new child (a new pid) joins the survivor, and says so in the log.
    def replaced() -> set[int]:
        s.assert_alive()
        pids = child_pids(engine)
        return pids if len(pids) == 2 and victim not in pids else set()

    wait_for(replaced, 20, "a new child in place of the killed one", s.tail)
    assert f"(pid {victim}) was killed by SIGKILL; starting it again" in s.log()

    # The killed child's 2 jobs come back through their leases and complete.
    wait_for(all_completed(engine, ids), 30, "every job completed", s.tail)
    stalled = {e["job_id"] for e in events(engine, "job.stalled")}
    assert len(stalled) == 2, stalled
    jobs = get_jobs(engine, ids)
    assert all(jobs[i].stalls == 1 for i in stalled)
    assert stats(engine)["completed"] == 4

    s.send(signal.SIGTERM)
    assert s.wait_exit(20) == 0


@pytest.mark.slow
def test_sigterm_drains_every_child_and_exits_zero(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    env = fleetd_env(config) | TWO | settings(worker_concurrency=2, worker_shutdown_timeout="10s")
    s = start(fleet, env)
    ids = enqueue(engine, [{"type": "noop", "data": {"sleep_ms": 2000, "n": i}} for i in range(4)])

    def running_in_both() -> list[dict[str, Any]]:
        found = daemons(engine)
        return found if len(found) == 2 and all(d["running"] == 2 for d in found) else []

    pids = {int(d["pid"]) for d in wait_for(running_in_both, 15, "jobs in each child", s.tail)}
    s.send(signal.SIGTERM)
    assert s.wait_exit(20) == 0
    # Every child finished its running jobs: none released, none left behind.
    jobs = get_jobs(engine, ids)
    assert all(j.status is JobStatus.COMPLETED and j.attempts == 1 for j in jobs.values()), jobs
    assert not events(engine, "job.stalled")
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids)
    assert s.log().count(" stopped") >= 2


@pytest.mark.slow
def test_sighup_reloads_every_child(
    config: Config, engine: Engine, fleet: Fleet, listener: NotifyListener, tmp_path: Path
) -> None:
    conf = tmp_path / "fleetd.toml"
    conf.write_text("[worker]\nconcurrency = 2\n")
    env = fleetd_env(config) | TWO | settings(daemon_heartbeat_interval="200ms")
    env |= {"FLEETD_CONFIG": str(conf), "NOTIFY_SOCKET": str(listener.path)}
    s = start(fleet, env)

    def concurrency() -> list[int]:
        return sorted(d["concurrency"] for d in daemons(engine))

    wait_for(lambda: concurrency() == [2, 2], 10, "both children at concurrency 2", s.tail)

    conf.write_text("[worker]\nconcurrency = 3\n")
    s.send(signal.SIGHUP)
    wait_for(lambda: concurrency() == [3, 3], 10, "both children at concurrency 3", s.tail)
    assert s.log().count("reload: concurrency 2 → 3") == 2
    reloading = wait_for(lambda: listener.index("RELOADING=1") + 1, 10, "RELOADING=1", s.tail)
    wait_for(lambda: listener.index("READY=1", reloading) >= 0, 10, "READY=1 again", s.tail)

    s.send(signal.SIGTERM)
    assert s.wait_exit(20) == 0


def test_child_failing_at_start_fails_the_start(config: Config, fleet: Fleet) -> None:
    # The children check the TLS files (the supervisor only binds): each exits 2.
    env = (
        fleetd_env(config)
        | TWO
        | settings(http_tls_cert="/nonexistent/cert.pem", http_tls_key="/nonexistent/key.pem")
    )
    s = fleet.start(env, ready=False)
    assert s.wait_exit(START_TIMEOUT) == 2
    assert "TLS file not found" in s.log()
    assert "exited with code 2 before fleetd was ready: stopping" in s.log()
