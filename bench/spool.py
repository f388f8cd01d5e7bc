"""The enqueue spool during a Redis outage: enqueue latency into it, and replay rate.

Owns: a throwaway redis-server on a free 127.0.0.1 port (tests/redis_server.py; never
the machine's Redis on 6379) and one `fleetd run --roles api` subprocess
(bench/http_enqueue.start_daemon), then:

1. `http_*`: Redis SIGKILLed, N single enqueues POSTed one after another over one
   keep-alive connection, each timed from send to answer (202 `spooled`): the latency a
   caller sees during an outage, SQLite's fsync'd commit included;
2. `http_concurrent_*`: the same with C connections at once (requests/s);
3. `file_add_*`: `JobSpool.add` of one row, in this process (the commit alone); and
   `share_add_*`: the same for a company's row on a spool of 20,000 rows of 10
   companies, with `[spool] company_share` 0.5 (the company's count read through its
   index) and with 1 (no share checked), alternating, on one file each;
4. `replay_*`: Redis restarted, the daemon's replayer drains what the API spooled
   (time from Redis answering to the spool being empty, read from `/metrics`), and
   `replay_all` in this process over a spool of R rows (jobs/s, one round trip per
   `[spool] replay_batch` = 500).

Prints one `name: value unit` line per figure; `#` lines say how. The machine is
shared: quote `/proc/loadavg` with the figures.

Run: `.venv/bin/python bench/spool.py [--requests N] [--connections C] [--rows R]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_enqueue import start_daemon, token
from redis_server import RedisServer

from fleetd.audit.store import AuditCaps, AuditStore
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.spool import JobSpool, replay_all

PATH = "/api/v1/admin/jobs/enqueue"
BODY = {"type": "noop", "data": {"vehicle_id": "veh-1"}, "priority": 5, "tags": ["bench"]}


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def spool_depth(client: httpx.Client) -> int:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("fleetd_spool_jobs "):
            return int(float(line.split()[1]))
    raise SystemExit("no fleetd_spool_jobs on /metrics")


async def concurrent(url: str, headers: dict[str, str], n: int, connections: int) -> float:
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        left = [n]

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                r = await client.post(PATH, json=BODY)
                assert r.status_code == 202, r.text

        start = time.monotonic()
        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                nursery.start_soon(worker)
        return n / (time.monotonic() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--rows", type=int, default=20_000)
    a = ap.parse_args()
    print(f"# loadavg at start: {Path('/proc/loadavg').read_text().strip()}")
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        proc, url = start_daemon(server.url, Path(tmp) / "state", "api")
        headers = {"Authorization": f"Bearer {token()}"}
        try:
            with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                assert client.post(PATH, json=BODY).status_code == 201
                server.kill()
                client.post(PATH, json=BODY)  # the link learns Redis is gone
                samples = []
                for _ in range(a.requests):
                    start = time.perf_counter()
                    r = client.post(PATH, json=BODY)
                    samples.append((time.perf_counter() - start) * 1000)
                    assert r.status_code == 202, r.text
                print(f"# {a.requests} single enqueues, one connection, Redis SIGKILLed")
                print(f"http_p50: {pct(samples, 50):.2f} ms")
                print(f"http_p99: {pct(samples, 99):.2f} ms")
                print(f"http_mean: {statistics.fmean(samples):.2f} ms")
                rate = trio.run(concurrent, url, headers, a.requests, a.connections)
                print(f"http_concurrent_rate: {rate:.0f} requests/s ({a.connections} connections)")
                depth = spool_depth(client)
                server.start()
                start = time.monotonic()
                while spool_depth(client) > 0:
                    time.sleep(0.01)
                took = time.monotonic() - start
                print(f"# the daemon's replayer: {depth} spooled jobs, from Redis back to empty")
                print(f"replay_daemon: {depth / took:.0f} jobs/s ({took:.2f} s, incl. noticing)")
        finally:
            proc.terminate()
            proc.wait(10)
        in_process(Path(tmp), server.url, a.rows)
    print(f"# loadavg at end: {Path('/proc/loadavg').read_text().strip()}")


def in_process(tmp: Path, redis_url: str, rows: int) -> None:
    spool = JobSpool(tmp / "bench-spool.db", max_jobs=10**7, max_bytes=10**10)
    cfg = Config.default()
    redis = dataclasses.replace(cfg.redis, url=redis_url, namespace="bench-replay")
    cfg = dataclasses.replace(cfg, redis=redis)
    engine = Engine.build(cfg, daemon=True)
    for script in engine.scripts.all():
        script.load(engine.link.client)
    prepared = [engine.ops.prepare(BODY) for _ in range(rows)]
    samples = []
    for row in prepared[:2000]:
        start = time.perf_counter()
        spool.add([row], door="http", subject="bench")
        samples.append((time.perf_counter() - start) * 1000)
    print("# JobSpool.add of one row (SQLite WAL, synchronous=FULL: one fsync)")
    print(f"file_add_p50: {pct(samples, 50):.2f} ms")
    print(f"file_add_p99: {pct(samples, 99):.2f} ms")
    for start in range(2000, rows, 1000):
        spool.add(prepared[start : start + 1000], door="http", subject="bench")
    share_cost(tmp, engine)
    store = AuditStore(engine.keys, engine.scripts, AuditCaps(10**6, 10**6, 10**6))
    sent, took = engine.link.run_sync(lambda c: replay_all(c, spool, engine.ops, store, 500))
    print(f"# replay_all of {sent} rows in this process, 500 per round trip, audited")
    print(f"replay_rate: {sent / took:.0f} jobs/s")
    engine.close()


def share_cost(tmp: Path, engine: Engine) -> None:
    spools = {
        share: JobSpool(
            tmp / f"share-{share}.db", max_jobs=10**7, max_bytes=10**10, company_share=share
        )
        for share in (0.5, 1.0)
    }
    fill = [engine.ops.prepare({**BODY, "company_id": f"c{i % 10}"}) for i in range(20_000)]
    for spool in spools.values():
        for at in range(0, len(fill), 1000):
            spool.add(fill[at : at + 1000], door="http", subject="bench")
    samples: dict[float, list[float]] = {share: [] for share in spools}
    for i in range(1000):
        for share, spool in spools.items():
            row = engine.ops.prepare({**BODY, "company_id": f"c{i % 10}"})
            start = time.perf_counter()
            spool.add([row], door="http", subject="bench")
            samples[share].append((time.perf_counter() - start) * 1000)
    print("# JobSpool.add of one company's row, 20,000 rows of 10 companies spooled")
    for share, name in ((0.5, "share_add"), (1.0, "share_add_off")):
        print(f"{name}_p50: {pct(samples[share], 50):.3f} ms")
        print(f"{name}_p99: {pct(samples[share], 99):.3f} ms")


if __name__ == "__main__":
    main()
