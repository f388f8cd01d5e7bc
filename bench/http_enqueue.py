"""Enqueue over HTTP: requests/s and latency with 50 concurrent connections.

Owns: starting a throwaway redis-server on a free 127.0.0.1 port (tests/redis_server.py;
never the machine's Redis on 6379) and one `fleetd run` subprocess on a free loopback
port per role set — `api` (the API alone) and `worker,scheduler,api` (the default: the
workers drain the noop jobs as they come) — then POSTing `noop` enqueues over 50
keep-alive connections for a fixed time, after a warm-up.

The load comes from `wrk` when it is installed (`apt-get install wrk`: C, one thread,
~0.05 ms of CPU a request, so the daemon keeps the machine's cores), else from httpx
in this process (one task per connection, ~2 ms of CPU a request: on a 2-core box the
client then takes more CPU than the daemon and the figure is a floor). Either way the
client shares the machine with the daemon and Redis.

Prints one `name: value unit` line per figure, per role set; `#` lines say how.
With `--processes N` the daemon is N processes under one supervisor sharing the port
(`[daemon] processes`); its CPU figure is theirs summed.

Run: `.venv/bin/python bench/http_enqueue.py [--roles api|default|both]
[--connections C] [--seconds S] [--client wrk|httpx] [--processes N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import httpx
import jwt
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from redis_server import RedisServer

SECRET = "bench-secret-" + "b" * 60
DEFAULT_CONNECTIONS = 50
# 10 s per role set: long enough to average out the batcher's and the GC's swings
# (±5% between runs here), short enough to run both role sets in half a minute.
DEFAULT_SECONDS = 10.0
# Load before the clock starts: connections open, token cache and JIT-free Python paths
# warm, Redis scripts loaded.
WARMUP_SECONDS = 2.0
START_TIMEOUT = 20.0
PATH = "/api/v1/admin/jobs/enqueue"
BODY = {"type": "noop", "data": {"vehicle_id": "veh-1"}, "priority": 5, "tags": ["bench"]}
ROLE_SETS = {"api": "api", "default": "worker,scheduler,api"}

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"

function done(summary, latency, requests)
  for _, p in ipairs({{50, 90, 99, 99.9}}) do
    io.write(string.format("pct %g %d\\n", p, latency:percentile(p)))
  end
  io.write(string.format("pct max %d\\n", latency.max))
  io.write(string.format("pct mean %d\\n", latency.mean))
end
"""


@dataclass
class Result:
    requests: int
    wall: float
    errors: int
    ms: dict[str, float]  # "50", "99", "max", "mean" → milliseconds
    sent: int = 0  # every request while the CPU clock ran (the warm-up too, for httpx)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its live children: `--processes N` runs N daemons under
    one supervisor, whose own share is near zero."""
    # Every thread's list: trio starts processes from its worker threads.
    tasks = Path(f"/proc/{pid}/task").glob("*/children")
    children = {int(c) for task in tasks for c in task.read_text().split()}
    return cpu_seconds(pid) + sum(cpu_seconds(c) for c in children)


def token() -> str:
    now = int(time.time())
    return jwt.encode({"sub": "bench", "role": "admin", "iat": now, "exp": now + 3600}, SECRET)


def start_daemon(
    redis_url: str, state: Path, roles: str, settings: Mapping[str, str] = MappingProxyType({})
) -> tuple[subprocess.Popen[bytes], str]:
    """`fleetd run --roles ROLES` on its own state dir, quiet, with these FLEETD_* settings
    on top; its API's URL once it serves (bench/overload.py starts its daemon here too)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETD_")}
    env |= {
        "FLEETD_CONFIG": str(Path(__file__).resolve().parent.parent / "tests" / "empty.toml"),
        "FLEETD_REDIS_URL": redis_url,
        "FLEETD_REDIS_NAMESPACE": "bench",
        "FLEETD_DAEMON_STATE_DIR": str(state),
        "FLEETD_DAEMON_LOG_LEVEL": "warning",
        "FLEETD_HTTP_LISTEN": "127.0.0.1:0",
        "FLEETD_AUTH_SECRET": SECRET,
        **settings,
    }
    log = (state.parent / "daemon.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetd.cli", "run", "--roles", roles],
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
    tail = (state.parent / "daemon.log").read_text(errors="replace").splitlines()[-20:]
    raise SystemExit("daemon did not start:\n" + "\n".join(tail))


# -- wrk -------------------------------------------------------------------------------


def _wrk_ms(text: str) -> float:
    return int(text) / 1000  # wrk reports microseconds


def run_wrk(url: str, connections: int, seconds: float, workdir: Path) -> Result:
    script = workdir / "enqueue.lua"
    body = json.dumps(json.dumps(BODY))  # a Lua string literal is a JSON string here
    script.write_text(WRK_SCRIPT.format(body=body, token=token()))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), url + PATH]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if match is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    wall = float(match[2]) / (1000 if match[3] == "ms" else 1)
    errors = sum(
        int(m[1])
        for m in re.finditer(r"(?:Non-2xx or 3xx responses:|connect|read|write|timeout) (\d+)", out)
    )
    ms = {m[1]: _wrk_ms(m[2]) for m in re.finditer(r"^pct (\S+) (\d+)$", out, re.M)}
    return Result(int(match[1]), wall, errors, ms, int(match[1]))


# -- httpx -----------------------------------------------------------------------------


async def _httpx_load(url: str, connections: int, seconds: float) -> Result:
    headers = {"Authorization": f"Bearer {token()}"}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    latencies: list[float] = []
    errors = sent = 0
    timed = False
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:

        async def worker(stop_at: float) -> None:
            nonlocal errors, sent
            while trio.current_time() < stop_at:
                started = time.perf_counter()
                r = await client.post(PATH, json=BODY)
                elapsed = time.perf_counter() - started
                sent += 1
                if r.status_code != 201:
                    errors += 1
                elif timed:
                    latencies.append(elapsed)

        begin = time.perf_counter()
        async with trio.open_nursery() as nursery:
            stop_at = trio.current_time() + WARMUP_SECONDS + seconds
            for _ in range(connections):
                nursery.start_soon(worker, stop_at)
            await trio.sleep(WARMUP_SECONDS)
            timed, begin = True, time.perf_counter()
        wall = time.perf_counter() - begin
    latencies.sort()
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(p / 100 * n))] * 1000

    ms = {"50": pct(50), "90": pct(90), "99": pct(99), "99.9": pct(99.9)}
    ms |= {"max": latencies[-1] * 1000, "mean": statistics.fmean(latencies) * 1000}
    return Result(n, wall, errors, ms, sent)


# -- one role set ----------------------------------------------------------------------


def measure(server: RedisServer, workdir: Path, name: str, a: argparse.Namespace) -> None:
    info = server.command("INFO", "server")
    info = info.decode() if isinstance(info, bytes) else str(info)
    redis_pid = int(info.split("process_id:")[1].split()[0])
    proc, url = start_daemon(
            server.url, workdir / f"state-{name}", ROLE_SETS[name],
            {"FLEETD_DAEMON_PROCESSES": str(a.processes)},
        )  # fmt: skip
    try:
        if a.client == "wrk":
            run_wrk(url, a.connections, WARMUP_SECONDS, workdir)
        cpu0, redis0, own0 = tree_cpu_seconds(proc.pid), cpu_seconds(redis_pid), time.process_time()
        if a.client == "wrk":
            r = run_wrk(url, a.connections, a.seconds, workdir)
        else:
            r = trio.run(_httpx_load, url, a.connections, a.seconds)
        daemon_cpu = tree_cpu_seconds(proc.pid) - cpu0
        redis_cpu = cpu_seconds(redis_pid) - redis0
        client_cpu = time.process_time() - own0  # httpx only; wrk is a child process
    finally:
        proc.terminate()
        proc.wait(10)
    n = max(r.sent, 1)
    print(f"# roles {ROLE_SETS[name]}, processes {a.processes}: {a.connections} connections, "
          f"{r.requests} requests in {r.wall:.1f} s via {a.client}, cpus {os.cpu_count()}, "
          f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"http_enqueue_{name}_rate: {r.requests / r.wall:,.0f} requests/s")
    for p in ("50", "90", "99", "99.9", "max"):
        if p in r.ms:
            label = p.replace(".", "_") if p == "max" else "p" + p.replace(".", "")
            print(f"http_enqueue_{name}_{label}: {r.ms[p]:.1f} ms")
    print(f"http_enqueue_{name}_errors: {r.errors}")
    print(f"http_enqueue_{name}_daemon_cpu: {daemon_cpu / n * 1e3:.3f} ms/request "
          f"({daemon_cpu / r.wall:.0%} of one core)")  # fmt: skip
    print(f"http_enqueue_{name}_redis_cpu: {redis_cpu / n * 1e3:.3f} ms/request")
    if a.client == "httpx":
        print(f"# client CPU {client_cpu / n * 1e3:.2f} ms/request")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--roles", choices=("api", "default", "both"), default="both")
    p.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    p.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    p.add_argument("--client", choices=("wrk", "httpx"), default=None)
    p.add_argument("--processes", type=int, default=1, help="[daemon] processes (default 1)")
    a = p.parse_args()
    if a.client is None:
        a.client = "wrk" if shutil.which("wrk") else "httpx"
    elif a.client == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    names = ["api", "default"] if a.roles == "both" else [a.roles]
    with tempfile.TemporaryDirectory(prefix="fleetd-http-bench-") as tmp:
        workdir = Path(tmp)
        with RedisServer(workdir / "redis") as server:
            for name in names:
                measure(server, workdir, name, a)


if __name__ == "__main__":
    main()
