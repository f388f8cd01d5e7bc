"""Start latency of a bypassed critical job: from the request's arrival to handler entry,
and the daemon's CPU per bypassed request.

Owns: a throwaway redis-server on a free 127.0.0.1 port (tests/redis_server.py; never
the machine's Redis on 6379) and one in-process daemon (roles api and worker,
`[worker] concurrency` 2, both slots kept busy by long jobs), with a handler that notes
the trio clock when it is entered. Each request's arrival is noted by a `before_request`
hook of the API's app (after the HTTP parsing and routing, before the view reads the
body). The requests come from a child process (`CLIENT`: one keep-alive connection,
one request at a time), so the bench process's CPU time (`time.process_time`, every
thread) is the daemon's alone: `*_cpu_us` is it per request. Requests are sequential,
and each job is started before the next request is sent, so arrival i pairs with
handler entry i.

1. `bypass_*`: `"priority": "critical", "bypass": true` with Redis up — land.lua stores
   the job claimed by this daemon, the pool adopts it, the handler starts (the figure
   includes the one Redis round trip of land.lua);
2. `queued_*` (for comparison): a critical job without bypass, the pool idle (the long
   jobs cancelled): enqueue, wake-up, claim, handler entry;
3. `bypass_down_*`: the same with Redis SIGKILLed: the job runs inline in the request
   (no Redis call: the link knows it is down).

`--against REV` compares with another revision, interleaved: REV's `fleetd` and
`plugins` are exported (`git archive`) to a temporary directory, and `--rounds` times
this tree and REV each run the bypass series (1) in a child process of their own, in
turn (which goes first alternates); the samples of every round are pooled per tree.
Only the daemon's code differs: both run this bench's code.

Prints one `name: value unit` line per figure; `#` lines say how, with the load average
(`/proc/loadavg`) before and after: the machine is shared.

Run: `.venv/bin/python bench/bypass.py [--requests 300]`, or
`.venv/bin/python bench/bypass.py --against HEAD~1 [--rounds 4] [--requests 300]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# The client: sequential POSTs over one keep-alive connection (argv: url, token header,
# body JSON, count). httpx, as the rest of the bench and the tests.
CLIENT = """
import json, sys, time, httpx
url, auth, body, n = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
with httpx.Client(headers={"Authorization": auth}, timeout=10) as http:
    for _ in range(n):
        r = http.post(url, json=body)
        if r.status_code >= 300:
            sys.exit(f"{r.status_code} {r.text}")
        time.sleep(PAUSE)
""".replace("PAUSE", "0.002")  # the previous job has finished: its critical slot is free
# Requests of each series that are not measured (imports, caches, connections).
WARM_UP = 20


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def report(name: str, samples: list[float], cpu: float | None = None) -> None:
    us = [s * 1e6 for s in samples]
    print(f"{name}_p50: {pct(us, 50):.0f} us")
    print(f"{name}_p99: {pct(us, 99):.0f} us")
    print(f"{name}_max: {max(us):.0f} us")
    if cpu is not None:
        print(f"{name}_cpu_us: {cpu * 1e6:.0f} us per request (daemon process, all threads)")


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


async def measure(n: int, parts: tuple[str, ...]) -> dict[str, Any]:
    """Run the series named in `parts` against a fresh Redis and daemon: per series,
    its latency samples (s) and the daemon's CPU per request (s)."""
    import httpx
    import trio
    from api_client import PREFIX, api_config, auth
    from conftest import make_config
    from quart import request
    from redis_server import RedisServer

    from fleetd.engine import build_registry
    from fleetd.jobs.context import JobContext
    from fleetd.jobs.handlers import HandlerDefaults, JobHandler
    from fleetd.runtime.daemon import Daemon

    class Stamp(JobHandler):
        job_type = "stamp"
        defaults = HandlerDefaults(sync_fallback=True)

        def __init__(self) -> None:
            self.entered: list[float] = []

        async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
            if not data.get("sleep"):
                self.entered.append(trio.current_time())
            await trio.sleep(float(data.get("sleep", 0)))
            return {}

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        cfg = api_config(make_config(server.url, "bench", Path(tmp) / "state"))
        cfg = dataclasses.replace(
            cfg,
            daemon=dataclasses.replace(cfg.daemon, roles=("api", "worker"), log_jobs=False),
            # Slots to spare: a job that has not finished when the next request comes
            # would be queued behind the long jobs instead.
            worker=dataclasses.replace(cfg.worker, concurrency=2, critical_slots=4),
        )
        registry = build_registry(cfg)
        stamp = Stamp()
        registry.register(stamp, source="bench")
        daemon = Daemon(cfg, registry=registry)
        arrivals: list[float] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            assert daemon.http is not None

            @daemon.http.app.before_request
            async def arrived() -> None:
                if request.path.endswith("/enqueue"):
                    arrivals.append(trio.current_time())

            url = daemon.http.urls[0]

            async def series(body: dict[str, Any], count: int) -> tuple[list[float], float]:
                arrivals.clear()
                stamp.entered.clear()
                cpu = time.process_time()
                argv = [sys.executable, "-c", CLIENT, f"{url}{PREFIX}/enqueue",
                        auth()["Authorization"], json.dumps(body), str(count)]  # fmt: skip
                await trio.run_process(argv)
                with trio.fail_after(10):
                    while len(stamp.entered) < count:
                        await trio.sleep(0.001)
                cpu = time.process_time() - cpu
                samples = [e - a for a, e in zip(arrivals, stamp.entered, strict=True)]
                return samples[WARM_UP:], cpu / count

            async with httpx.AsyncClient(base_url=url, headers=auth(), timeout=10) as http:
                long = {"type": "stamp", "data": {"sleep": 600}}
                busy = [(await http.post(f"{PREFIX}/enqueue", json=long)).json() for _ in range(2)]
                bypass = {"type": "stamp", "priority": "critical", "bypass": True}
                if "bypass" in parts:
                    out["bypass"] = await series(bypass, n + WARM_UP)
                for job in busy:
                    await http.delete(f"{PREFIX}/{job['job_id']}")
                if "queued" in parts:
                    await trio.sleep(0.5)
                    out["queued"] = await series({"type": "stamp", "priority": "critical"},
                                                 n + WARM_UP)  # fmt: skip
                if "bypass_down" in parts:
                    server.kill()
                    await trio.sleep(0.5)
                    down = {**bypass, "fallback": "sync"}
                    for _ in range(3):  # the link learns that Redis is gone
                        await http.post(f"{PREFIX}/enqueue", json=down)
                    out["bypass_down"] = await series(down, n + WARM_UP)
            daemon.request_stop()
    return out


def run_here(n: int) -> None:
    import trio

    print(f"# loadavg before: {loadavg()}")
    got = trio.run(measure, n, ("bypass", "queued", "bypass_down"))
    print(f"# {n} bypassed critical jobs, Redis up, both pool slots busy")
    report("bypass", *got["bypass"])
    print(f"# {n} critical jobs without bypass, pool idle (enqueue, claim, run)")
    report("queued", *got["queued"])
    print(f"# {n} bypassed critical jobs, Redis SIGKILLed (run inline, spooled)")
    report("bypass_down", *got["bypass_down"])
    print(f"# loadavg after: {loadavg()}")


def one_round(n: int) -> None:
    """A child of --against: the bypass series only, as JSON on stdout."""
    import trio

    samples, cpu = trio.run(measure, n, ("bypass",))["bypass"]
    print(json.dumps({"samples": samples, "cpu": cpu}))


def export(rev: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "fleetd", "plugins"],
        capture_output=True, check=True,
    )  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


def against(rev: str, n: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        export(rev, Path(tmp))
        trees = {rev: Path(tmp), "this tree": ROOT}
        pooled: dict[str, tuple[list[float], list[float]]] = {t: ([], []) for t in trees}
        print(f"# loadavg before: {loadavg()}")
        for r in range(rounds):
            # Alternate which tree goes first: the first child of a round runs on
            # colder caches (a bias of up to 2x at p50 seen here with the same code).
            order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
            for name, tree in order:
                paths = [str(tree), str(tree / "plugins"), str(ROOT / "tests")]
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
                argv = [sys.executable, __file__, "--one-round", "--requests", str(n)]
                done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
                if done.returncode:
                    sys.exit(f"{name}, round {r + 1}: exit {done.returncode}\n{done.stderr}")
                got = json.loads(done.stdout.strip().splitlines()[-1])
                pooled[name][0].extend(got["samples"])
                pooled[name][1].append(got["cpu"])
                p50 = pct(got["samples"], 50) * 1e6
                print(f"# round {r + 1}, {name}: p50 {p50:.0f} us, cpu {got['cpu'] * 1e6:.0f} us"
                      f" per request, loadavg {loadavg()}")  # fmt: skip
        for name, (samples, cpus) in pooled.items():
            print(f"# {name}: {len(samples)} bypassed critical jobs, Redis up, {rounds} rounds")
            report(f"bypass[{name}]", samples, sum(cpus) / len(cpus))
        print(f"# loadavg after: {loadavg()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--against", metavar="REV", help="interleave with this git revision")
    parser.add_argument("--rounds", type=int, default=4, help="with --against")
    parser.add_argument("--one-round", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_round:
        one_round(args.requests)
    elif args.against:
        against(args.against, args.requests, args.rounds)
    else:
        run_here(args.requests)
