"""Overload: 2,000 concurrent enqueue connections against one daemon.

Owns: starting a throwaway redis-server on a free 127.0.0.1 port (tests/redis_server.py;
never the machine's Redis on 6379) and one `fleetd run` subprocess on a free loopback
port, then opening `--connections` TCP connections at the same instant, each sending one
`noop` enqueue (HTTP/1.1, `Connection: close`) and reading its answer. Meanwhile a
prober opens a new connection for `GET /healthz` every PROBE_INTERVAL, as a load
balancer would: in a process of its own (`--probe HOST PORT`, started by the run), so
that its figures are the daemon's and not the delays of this process' own 2,000
tasks; a second prober inside this process (the figure the issue first quoted) shows
that difference. Afterwards every job id that was acknowledged (201) is looked up in
Redis.

The client is trio on raw sockets in this process (~0.1 ms of CPU per connection, well
below the daemon's), one task per connection, all released by one event; the soft
limit of open files is raised to the hard one first (2,000 sockets, plus the prober).

Prints the counts of answers by kind — 2xx, 503 and 429 with and without Retry-After,
other statuses, resets, connections closed without an answer, connects refused or
failed, and no answer within NO_ANSWER seconds — the answer-time percentiles, the
`/healthz` percentiles during the storm (`overload_healthz_during_storm`: the prober
process; `overload_healthz_in_client`: the in-process one), whether every acknowledged
job is in Redis, the CPU the daemon, Redis and this client spent, and the load
average. The run passes (exit 0) when every connection got an HTTP answer that is 2xx
or 503/429 with Retry-After, every probe got a 200, and every acknowledged job exists.
Run: `.venv/bin/python bench/overload.py [--connections N] [--roles api|default]
[--max-in-flight N]` (the last overrides `[http] max_in_flight`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from http_enqueue import SECRET, start_daemon  # bench/ is the script's folder
from redis_server import RedisServer

NAMESPACE = "bench"
DEFAULT_CONNECTIONS = 2000
# The bound: a client that has no answer after a minute counts as unanswered.
NO_ANSWER = 60.0
# A load balancer probes every few seconds; 20 ms gives ~100+ samples in a storm of a
# few seconds, so the p99 is a measured value, not the maximum.
PROBE_INTERVAL = 0.02
PATH = "/api/v1/admin/jobs/enqueue"
BODY = json.dumps({"type": "noop", "data": {"vehicle_id": "veh-1"}, "tags": ["overload"]})
ROLE_SETS = {"api": "api", "default": "worker,scheduler,api"}
HEAD_END = b"\r\n\r\n"


@dataclass
class Probes:
    times: list[float] = field(default_factory=list)  # seconds to a whole 200
    failures: Counter[str] = field(default_factory=Counter)


@dataclass
class Storm:
    kinds: Counter[str] = field(default_factory=Counter)
    times: dict[str, list[float]] = field(default_factory=dict)  # kind → seconds
    acknowledged: list[str] = field(default_factory=list)
    in_client: Probes = field(default_factory=Probes)

    def record(self, kind: str, seconds: float) -> None:
        self.kinds[kind] += 1
        self.times.setdefault(kind, []).append(seconds)


def token() -> str:
    now = int(time.time())
    return jwt.encode({"sub": "bench", "role": "admin", "iat": now, "exp": now + 3600}, SECRET)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_open_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        new = hard if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < needed:
            raise SystemExit(f"open files limited to {new}; {needed} needed (ulimit -Hn)")


# -- one exchange on raw sockets -------------------------------------------------------


def _complete(data: bytes) -> bool:
    """Whether `data` holds a whole HTTP/1.1 answer (head and Content-Length body)."""
    head, sep, body = data.partition(HEAD_END)
    if not sep:
        return False
    match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    return match is not None and len(body) >= int(match[1])


async def exchange(host: str, port: int, request: bytes) -> tuple[str, bytes]:
    """(kind, answer): kind is "answer", "reset", "closed" (EOF before a whole answer)
    or "connect_failed". The caller bounds the time."""
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        return f"connect_failed:{type(exc).__name__}", b""
    data = b""
    try:
        async with stream:
            await stream.send_all(request)
            while not _complete(data):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return "closed", data
                data += chunk
    except trio.BrokenResourceError as exc:
        if isinstance(exc.__cause__, ConnectionResetError):
            return "reset", data
        return f"broken:{type(exc.__cause__).__name__}", data
    return "answer", data


def classify(data: bytes) -> tuple[str, str | None]:
    """(kind, acknowledged job id or None) of a whole answer."""
    head, _, body = data.partition(HEAD_END)
    status = int(head.split(b" ", 2)[1])
    retry_after = re.search(rb"(?im)^retry-after:\s*\d+\s*$", head) is not None
    if 200 <= status < 300:
        return "2xx", json.loads(body).get("job_id")
    if status in (503, 429):
        return f"{status}{'' if retry_after else '_without_retry_after'}", None
    return f"status_{status}", None


async def probing(host: str, port: int, go: trio.Event, done: trio.Event, out: Probes) -> None:
    """From `go` until `done`, a new `GET /healthz` every PROBE_INTERVAL, each on its own
    connection, not waiting for the one before (what a load balancer's health checks
    look like to the daemon); returns when every probe has its answer."""
    ask = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()

    async def probe() -> None:
        started = trio.current_time()
        kind, data = "no_answer", b""
        with trio.move_on_after(NO_ANSWER):
            kind, data = await exchange(host, port, ask)
        if kind == "answer" and data.startswith(b"HTTP/1.1 200"):
            out.times.append(trio.current_time() - started)
        else:
            out.failures[kind if kind != "answer" else data[:12].decode()] += 1

    async with trio.open_nursery() as nursery:
        await go.wait()
        while not done.is_set():
            nursery.start_soon(probe)
            await trio.sleep(PROBE_INTERVAL)


def probe_process(host: str, port: int) -> None:
    """`--probe HOST PORT`: says `ready`, probes from a line `go` on stdin until stdin
    ends, then prints the answer times and failures as JSON."""
    out = Probes()

    async def main() -> None:
        go, done = trio.Event(), trio.Event()
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))

        async def control() -> None:
            async with stdin:
                print("ready", flush=True)
                while chunk := await stdin.receive_some():
                    if b"go" in chunk:
                        go.set()
            go.set()
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(control)
            await probing(host, port, go, done, out)

    trio.run(main)
    print(json.dumps({"times": out.times, "failures": out.failures}), flush=True)


def start_prober(host: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--probe", host, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        proc.kill()
        raise SystemExit("the prober process did not start")
    return proc


def prober_results(proc: subprocess.Popen[bytes]) -> Probes:
    """The prober's figures, once its stdin was closed (its probes all answered)."""
    assert proc.stdout is not None
    body = json.loads(proc.stdout.read())
    proc.wait(10)
    return Probes(body["times"], Counter(body["failures"]))


async def storm(
    host: str, port: int, connections: int, stats: Storm, prober: subprocess.Popen[bytes]
) -> float:
    """All connections at once; returns the storm's wall time. `prober` (the prober
    process) is told to start with the storm and to stop after it."""
    request = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token()}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n"
        f"Connection: close\r\n\r\n{BODY}"
    ).encode()
    go = trio.Event()
    done = trio.Event()
    assert prober.stdin is not None

    async def one() -> None:
        await go.wait()
        started = trio.current_time()
        kind, data = "no_answer", b""
        with trio.move_on_after(NO_ANSWER):
            kind, data = await exchange(host, port, request)
        job_id = None
        if kind == "answer":
            kind, job_id = classify(data)
        stats.record(kind, trio.current_time() - started)
        if job_id is not None:
            stats.acknowledged.append(job_id)

    async with trio.open_nursery() as outer:
        outer.start_soon(probing, host, port, go, done, stats.in_client)
        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                nursery.start_soon(one)
            await trio.sleep(0.2)  # every task is parked on `go`
            begin = trio.current_time()
            prober.stdin.write(b"go\n")  # a few bytes into an empty pipe: never blocks
            prober.stdin.flush()
            go.set()
        wall = trio.current_time() - begin
        prober.stdin.close()
        done.set()
    return wall


# -- report ----------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def percentiles(name: str, values: list[float]) -> None:
    if not values:
        print(f"{name}: none")
        return
    cells = "  ".join(f"p{p:g} {pct(values, p):.0f}" for p in (50, 90, 99))
    print(f"{name}: {cells}  max {max(values) * 1000:.0f}  (ms, n={len(values)})")


def missing_jobs(server: RedisServer, job_ids: list[str]) -> list[str]:
    conn = server.connect()
    try:
        return [
            i for i in job_ids if conn.command("EXISTS", f"fleetd:{{{NAMESPACE}}}:job:{i}") != 1
        ]
    finally:
        conn.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    p.add_argument("--roles", choices=tuple(ROLE_SETS), default="default")
    p.add_argument("--max-in-flight", type=int, default=None)
    p.add_argument("--probe", nargs=2, metavar=("HOST", "PORT"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.probe:
        probe_process(a.probe[0], int(a.probe[1]))
        return
    raise_open_files(a.connections + 256)
    with (
        tempfile.TemporaryDirectory(prefix="fleetd-overload-") as tmp,
        RedisServer(Path(tmp) / "redis") as server,
    ):
        info = server.command("INFO", "server")
        info = info.decode() if isinstance(info, bytes) else str(info)
        redis_pid = int(info.split("process_id:")[1].split()[0])
        settings = {"FLEETD_DAEMON_LOG_JOBS": "false"}
        if a.max_in_flight is not None:
            settings["FLEETD_HTTP_MAX_IN_FLIGHT"] = str(a.max_in_flight)
        proc, url = start_daemon(server.url, Path(tmp) / "state", ROLE_SETS[a.roles], settings)
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        stats = Storm()
        load_before = os.getloadavg()
        try:
            cpu0, redis0 = cpu_seconds(proc.pid), cpu_seconds(redis_pid)
            own0 = time.process_time()
            prober = start_prober(host, port)
            try:
                wall = trio.run(storm, host, port, a.connections, stats, prober)
                client_cpu = time.process_time() - own0
                daemon_cpu = cpu_seconds(proc.pid) - cpu0
                redis_cpu = cpu_seconds(redis_pid) - redis0
                probes = prober_results(prober)
            finally:
                prober.kill()
        finally:
            proc.terminate()
            proc.wait(10)
        missing = missing_jobs(server, stats.acknowledged)
    load_after = os.getloadavg()
    limit = "default" if a.max_in_flight is None else a.max_in_flight
    print(f"# {a.connections} connections at once, roles {ROLE_SETS[a.roles]}, "
          f"max_in_flight {limit}, cpus {os.cpu_count()}, "
          f"python {sys.version.split()[0]}")  # fmt: skip
    print(f"# load average before {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} "
          f"{load_after[2]:.2f}")  # fmt: skip
    print(f"overload_wall: {wall:.2f} s")
    for kind, n in sorted(stats.kinds.items()):
        print(f"overload_{kind}: {n}")
    answered = [t for k, ts in stats.times.items() if k in ("2xx", "503", "429") for t in ts]
    percentiles("overload_answer_time", answered)
    for kind in ("2xx", "503", "429"):
        if kind in stats.times:
            percentiles(f"overload_answer_time_{kind}", stats.times[kind])
    percentiles("overload_healthz_during_storm", probes.times)
    percentiles("overload_healthz_in_client", stats.in_client.times)
    failures = probes.failures + stats.in_client.failures
    for kind, n in sorted(failures.items()):
        print(f"overload_healthz_failed_{kind}: {n}")
    print(f"overload_acknowledged: {len(stats.acknowledged)}")
    print(f"overload_acknowledged_missing_in_redis: {len(missing)}")
    print(f"overload_cpu: daemon {daemon_cpu:.2f} s  redis {redis_cpu:.2f} s  "
          f"client {client_cpu:.2f} s")  # fmt: skip
    good = {"2xx", "503", "429"}
    bad = {k: n for k, n in stats.kinds.items() if k not in good}
    ok = not bad and not missing and not failures
    print(f"overload_verdict: {'pass' if ok else 'FAIL'}" + (f" {bad}" if bad else ""))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
