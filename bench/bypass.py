"""Start latency of a bypassed critical job: from the request's arrival to handler entry.

Owns: a throwaway redis-server on a free 127.0.0.1 port (tests/redis_server.py; never
the machine's Redis on 6379) and one in-process daemon (roles api and worker,
`[worker] concurrency` 2, both slots kept busy by long jobs), with a handler that notes
the trio clock when it is entered. Each request's arrival is noted by a `before_request`
hook of the API's app (after the HTTP parsing and routing, before the view reads the
body); requests go one after another over one keep-alive connection, so arrival i
pairs with handler entry i.

1. `bypass_*`: `"priority": "critical", "bypass": true` with Redis up — land.lua stores
   the job claimed by this daemon, the pool adopts it, the handler starts (the figure
   includes the one Redis round trip of land.lua);
2. `bypass_down_*`: the same with Redis SIGKILLed: the job runs inline in the request
   (no Redis call: the link knows it is down);
3. `queued_*` (for comparison): a critical job without bypass, the pool idle (the long
   jobs cancelled): enqueue, wake-up, claim, handler entry.

Prints one `name: value unit` line per figure; `#` lines say how. The machine is
shared: quote `/proc/loadavg` with the figures.

Run: `.venv/bin/python bench/bypass.py [--requests N]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import trio
from quart import request

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import trio.lowlevel
from api_client import PREFIX, api_config, auth
from conftest import make_config
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
        self.entered.append(trio.current_time())
        await trio.sleep(float(data.get("sleep", 0)))
        return {}


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def report(name: str, samples: list[float]) -> None:
    us = [s * 1e6 for s in samples]
    print(f"{name}_p50: {pct(us, 50):.0f} us")
    print(f"{name}_p99: {pct(us, 99):.0f} us")
    print(f"{name}_max: {max(us):.0f} us")


async def series(
    http: httpx.AsyncClient, stamp: Stamp, arrivals: list[float], body: dict[str, Any], n: int,
    status: int,
) -> list[float]:  # fmt: skip
    out = []
    for _ in range(n):
        arrivals.clear()
        before = len(stamp.entered)
        r = await http.post(f"{PREFIX}/enqueue", json=body)
        assert r.status_code == status, r.text
        with trio.fail_after(10):
            while len(stamp.entered) == before:
                await trio.lowlevel.checkpoint()
        out.append(stamp.entered[before] - arrivals[0])
    return out


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        cfg = api_config(make_config(server.url, "bench", Path(tmp) / "state"))
        cfg = dataclasses.replace(
            cfg,
            daemon=dataclasses.replace(cfg.daemon, roles=("api", "worker"), log_jobs=False),
            worker=dataclasses.replace(cfg.worker, concurrency=2),
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
            async with httpx.AsyncClient(base_url=url, headers=auth(), timeout=10) as http:
                long = {"type": "stamp", "data": {"sleep": 600}}
                busy = [(await http.post(f"{PREFIX}/enqueue", json=long)).json() for _ in range(2)]
                bypass = {"type": "stamp", "priority": "critical", "bypass": True}
                await series(http, stamp, arrivals, bypass, 20, 201)  # warm-up
                print(f"# {n} bypassed critical jobs, Redis up, both pool slots busy")
                report("bypass", await series(http, stamp, arrivals, bypass, n, 201))
                for job in busy:
                    await http.delete(f"{PREFIX}/{job['job_id']}")
                queued = {"type": "stamp", "priority": "critical"}
                await trio.sleep(0.5)
                print(f"# {n} critical jobs without bypass, pool idle (enqueue, claim, run)")
                report("queued", await series(http, stamp, arrivals, queued, n, 201))
                server.kill()
                await trio.sleep(0.5)
                down = {**bypass, "fallback": "sync"}
                await series(http, stamp, arrivals, down, 3, 200)  # the link learns
                print(f"# {n} bypassed critical jobs, Redis SIGKILLed (run inline, spooled)")
                report("bypass_down", await series(http, stamp, arrivals, down, n, 200))
            daemon.request_stop()
    print(f"# loadavg: {await trio.Path('/proc/loadavg').read_text()}".strip())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    trio.run(main, parser.parse_args().requests)
