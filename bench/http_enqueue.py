"""Enqueue over HTTP: requests/s and latency with 50 concurrent connections.

Owns: starting a throwaway redis-server on a free 127.0.0.1 port (tests/redis_server.py;
never the machine's Redis on 6379) and one `fleetd run --roles api` subprocess on a free
loopback port, then POSTing `noop` enqueues from this process over 50 keep-alive
connections (httpx on trio, one task per connection), bounded in count and time. The
client and the daemon share the machine's cores, so the figure is a floor for a
daemon with a host of its own.

Prints one `name: value unit` line per figure. Run:
`.venv/bin/python bench/http_enqueue.py [--requests N] [--connections C] [--seconds S]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jwt
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from redis_server import RedisServer

SECRET = "bench-secret-" + "b" * 60
# 20k requests: ~10 s at the expected rate; the time cap stops a slow run regardless.
DEFAULT_REQUESTS = 20_000
DEFAULT_CONNECTIONS = 50
DEFAULT_SECONDS = 60.0
WARMUP = 500
START_TIMEOUT = 20.0
BODY = {"type": "noop", "data": {"vehicle_id": "veh-1"}, "priority": 5, "tags": ["bench"]}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_daemon(redis_url: str, state: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETD_")}
    env |= {
        "FLEETD_CONFIG": str(Path(__file__).resolve().parent.parent / "tests" / "empty.toml"),
        "FLEETD_REDIS_URL": redis_url,
        "FLEETD_REDIS_NAMESPACE": "bench",
        "FLEETD_DAEMON_STATE_DIR": str(state),
        "FLEETD_DAEMON_LOG_LEVEL": "warning",
        "FLEETD_HTTP_LISTEN": "127.0.0.1:0",
        "FLEETD_AUTH_SECRET": SECRET,
    }
    log = (state.parent / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetd.cli", "run", "--roles", "api"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_TIMEOUT
    http_file = state / "http.json"
    while time.monotonic() < deadline:
        if http_file.exists():
            return proc, str(json.loads(http_file.read_text())["urls"][0])
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"daemon did not start; see {state.parent / 'daemon.log'}")


async def load(url: str, requests: int, connections: int, seconds: float) -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "bench", "role": "admin", "iat": now, "exp": now + 3600}, SECRET)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    latencies: list[float] = []
    errors = 0
    remaining = requests + WARMUP
    deadline = trio.current_time() + seconds

    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0 and trio.current_time() < deadline:
                remaining -= 1
                warm = remaining >= requests
                started = time.perf_counter()
                r = await client.post("/api/v1/admin/jobs/enqueue", json=BODY)
                elapsed = time.perf_counter() - started
                if r.status_code != 201:
                    errors += 1
                elif not warm:
                    latencies.append(elapsed)

        begin = 0.0
        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                nursery.start_soon(worker)
            # The clock starts after the warm-up requests are out.
            while remaining >= requests and trio.current_time() < deadline:
                await trio.sleep(0.001)
            begin = time.perf_counter()
        wall = time.perf_counter() - begin

    latencies.sort()
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(p / 100 * n))] * 1000

    print(f"# {connections} connections, {n} timed requests (+{WARMUP} warm-up), "
          f"cpus {os.cpu_count()}, python {sys.version.split()[0]}")  # fmt: skip
    print(f"http_enqueue_rate: {n / wall:,.0f} requests/s")
    print(f"http_enqueue_p50: {pct(50):.1f} ms")
    print(f"http_enqueue_p99: {pct(99):.1f} ms")
    print(f"http_enqueue_max: {latencies[-1] * 1000:.1f} ms")
    print(f"http_enqueue_mean: {statistics.fmean(latencies) * 1000:.1f} ms")
    print(f"http_enqueue_errors: {errors}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=DEFAULT_REQUESTS)
    p.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    p.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetd-http-bench-") as tmp:
        workdir = Path(tmp)
        with RedisServer(workdir / "redis") as server:
            proc, url = start_daemon(server.url, workdir / "state")
            try:
                cpu0, own0 = cpu_seconds(proc.pid), time.process_time()
                trio.run(load, url, a.requests, a.connections, a.seconds)
                done = a.requests + WARMUP
                daemon_ms = (cpu_seconds(proc.pid) - cpu0) / done * 1e3
                client_ms = (time.process_time() - own0) / done * 1e3
                print(f"# CPU per request: daemon {daemon_ms:.2f} ms, client {client_ms:.2f} ms")
            finally:
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
