"""Flow control benchmarks: the cost of [limits] on a drain, and fair share under a backlog.

Starts its own redis-server (tests/redis_server.py, loopback, AOF off) and an in-process
Daemon per phase (concurrency 50, claim_batch 100), one namespace each:

    .venv/bin/python bench/flow_control.py             # N = 20,000 per drain, ~1 min
    .venv/bin/python bench/flow_control.py --quick     # N = 2,000, backlog 5,000

Phases:
- `drain_plain`: N noop jobs of 10 companies, no [limits] (the claim skips every check);
- `drain_limits`: the same with limits configured that never bind (noop=100000 running
  and 10^6 starts per 1 s, company_concurrency 100000, company_rate 10^6/1s): what
  checking and counting them costs per job;
- `drain_bound`: the same with a per-company concurrency of 5 (10 companies → 50 running,
  the daemon's concurrency): limits that bind exactly at capacity;
- `drain_quarantined`: as drain_plain, with one part quarantined (noop of company
  `held`, 1,000 jobs that wait: fleetd.jobs.quarantine) — the claim reads the
  quarantined parts' names each time and skips that part;
- `drain_queues`: the same N jobs spread over 3 named queues (`default`, `mail`,
  `bulk`), the daemon serving all three in strict order (`[worker] queues`): what a
  claim walking 3 queue indexes (and the paused-set check per queue) costs per job;
- `drain_queue_limits`: drain_queues with a `[limits] queues` entry per queue that never
  binds (100000 running, 10^6 starts per 1 s each): what a queue's own limit costs;
- `fair`: company A's backlog (50,000 noop) drains while company B enqueues one job every
  100 ms; B's wait (`started_at - created_at`, Redis ms) as p50/p99/max, and how many of
  A's jobs were still pending when B's last job started (a FIFO queue would make B wait
  for the whole backlog).

Prints one `name: value unit` line per figure, and the load average before and after.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from redis_server import RedisServer
from throughput import (
    client_engine,
    emit,
    fresh_namespace,
    loadavg,
    make_config,
    quantile,
    redis_now_ms,
)

from fleetd.config import Config
from fleetd.config.limit_sections import LimitsConfig
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus
from fleetd.jobs.quarantine import Strikes, count_failures
from fleetd.runtime.daemon import Daemon

CONCURRENCY = 50
COMPANIES = 10
LOOSE = LimitsConfig(
    types=("noop=100000,1000000/1s",),
    company_concurrency=100_000,
    company_rate="1000000/1s",
)
BOUND = LimitsConfig(company_concurrency=CONCURRENCY // COMPANIES)
QUEUES = ("default", "mail", "bulk")
LOOSE_QUEUES = LimitsConfig(queues=tuple(f"{q}=100000,1000000/1s" for q in QUEUES))
B_EVERY = 0.1
TIMEOUT = 300.0


def with_limits(cfg: Config, limits: LimitsConfig | None) -> Config:
    return cfg if limits is None else dataclasses.replace(cfg, limits=limits)


async def _wait(engine: Engine, done: int) -> None:
    with trio.move_on_after(TIMEOUT):
        while (await engine.queue.stats())["completed"] < done:
            await trio.sleep(0.02)


HELD = 1_000


def hold_a_part(engine: Engine) -> None:
    """Quarantine noop of company `held` (as repeated crashes would) with HELD jobs."""
    reqs = [{"type": "noop", "company_id": "held"}] * HELD
    engine.link.run_sync(engine.ops.enqueue_rows, engine.ops.prepare_many(reqs))
    crashes = [(f"x{i}", 1, "noop", "held", "crash") for i in range(3)]
    engine.link.run_sync(lambda c: count_failures(c, engine.scripts, Strikes(3, 600_000), crashes))


def drain(
    url: str, state: Path, n: int, name: str, limits: LimitsConfig | None,
    queues: Sequence[str] = (), held: bool = False,
) -> float:  # fmt: skip
    cfg = with_limits(make_config(url, fresh_namespace(name), state, concurrency=CONCURRENCY),
                      limits)  # fmt: skip
    if queues:
        cfg = dataclasses.replace(cfg, worker=dataclasses.replace(cfg.worker, queues=tuple(queues)))
    engine = client_engine(cfg)
    try:
        if held:
            hold_a_part(engine)
        reqs = [{"type": "noop", "company_id": f"c{i % COMPANIES}"} for i in range(n)]
        for i, req in enumerate(reqs if queues else ()):
            req["queue"] = queues[i % len(queues)]
        engine.link.run_sync(engine.ops.enqueue_rows, engine.ops.prepare_many(reqs))
        start_ms = redis_now_ms(engine)

        async def main() -> None:
            daemon = Daemon(cfg)
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                await _wait(engine, n)
                daemon.request_stop()

        trio.run(main)
        c = engine.link.client
        last = c.zrevrange(engine.keys.status(JobStatus.COMPLETED), 0, 0, withscores=True)
        done = int(c.zcard(engine.keys.status(JobStatus.COMPLETED)))
    finally:
        engine.close()
    if done < n:
        print(f"{name}: FAILED only {done}/{n} completed")
        return 0.0
    rate = n / (max(1, int(last[0][1]) - start_ms) / 1000)
    emit(name, rate, "jobs/s", f"concurrency {CONCURRENCY}, {COMPANIES} companies")
    return rate


def fair(url: str, state: Path, backlog: int) -> None:
    cfg = make_config(url, fresh_namespace("fair"), state, concurrency=CONCURRENCY)
    engine = client_engine(cfg)
    b_ids: list[str] = []
    a_left: list[int] = []
    try:
        reqs: list[dict[str, Any]] = [{"type": "noop", "company_id": "A"}] * backlog
        for i in range(0, backlog, 10_000):
            rows = engine.ops.prepare_many(reqs[i : i + 10_000])
            engine.link.run_sync(engine.ops.enqueue_rows, rows)
        stop = threading.Event()

        def company_b() -> None:
            b = client_engine(cfg)
            try:
                while not stop.is_set():
                    row = b.ops.prepare({"type": "noop", "company_id": "B"})
                    b_ids.extend(r.job_id for r in b.link.run_sync(b.ops.enqueue_rows, [row]))
                    a_left.append(int(b.link.client.zcard(b.keys.status(JobStatus.PENDING))))
                    time.sleep(B_EVERY)
            finally:
                b.close()

        async def main() -> None:
            daemon = Daemon(cfg)
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                thread = threading.Thread(target=company_b)
                thread.start()
                try:
                    await _wait(engine, backlog)
                finally:
                    stop.set()
                    await trio.to_thread.run_sync(thread.join)
                await _wait(engine, backlog + len(b_ids))
                daemon.request_stop()

        trio.run(main)
        c = engine.link.client
        pipe = c.pipeline(transaction=False)
        for job_id in b_ids:
            pipe.hmget(engine.keys.job(job_id), "created_at", "started_at")
        waits = [int(s) - int(cr) for cr, s in pipe.execute() if s]
    finally:
        engine.close()
    if not waits:
        print("fair: FAILED no job of B started")
        return
    emit("fair_b_wait_p50", quantile(waits, 0.5), "ms", f"{len(waits)} jobs of B")
    emit("fair_b_wait_p99", quantile(waits, 0.99), "ms", f"A's backlog {backlog}")
    emit("fair_b_wait_max", max(waits), "ms")
    emit("fair_a_pending_at_b_enqueue_max", max(a_left), "jobs", "A's backlog B overtook")


@contextmanager
def fresh_server(path: Path) -> Iterator[str]:
    with RedisServer(path, aof=False) as server:
        if not server.url.startswith("redis://127.0.0.1:"):
            raise SystemExit(f"refusing to benchmark a non-loopback Redis: {server.url}")
        yield server.url


def wait_replicas(work: Path, n: int) -> None:
    """One enqueue at a time (the CLI's path), with [redis] wait_replicas 0 and 1, a
    primary and one replica on loopback."""
    with fresh_server(work / "primary") as url:
        port = url.rsplit(":", 1)[1].split("/")[0]
        extra = ("--replicaof", "127.0.0.1", port)
        with RedisServer(work / "replica", aof=False, extra_args=extra) as replica:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                info = replica.command("INFO", "replication")
                if isinstance(info, bytes) and b"master_link_status:up" in info:
                    break
                time.sleep(0.05)
            for wanted in (0, 1, 0, 1):
                cfg = make_config(url, fresh_namespace("wait"), work / "state")
                cfg = dataclasses.replace(cfg, redis=dataclasses.replace(
                    cfg.redis, wait_replicas=wanted, wait_timeout=5.0))  # fmt: skip
                engine = client_engine(cfg)
                try:
                    rows = [engine.ops.prepare({"type": "noop"}) for _ in range(n)]
                    start = time.perf_counter()
                    for row in rows:
                        engine.link.run_sync(engine.ops.enqueue_rows, [row])
                    took = time.perf_counter() - start
                finally:
                    engine.close()
                emit(f"enqueue_one_wait{wanted}", took / n * 1e6, "us/job",
                     f"{n / took:.0f} jobs/s, one replica on loopback")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--jobs", type=int, default=0)
    p.add_argument("--backlog", type=int, default=0)
    p.add_argument(
        "--phases",
        default="drain_plain,drain_limits,drain_bound,drain_quarantined,drain_queues,"
        "drain_queue_limits,fair,wait",
        help="comma-separated",
    )
    args = p.parse_args(argv)
    n = args.jobs or (2_000 if args.quick else 20_000)
    backlog = args.backlog or (5_000 if args.quick else 50_000)
    phases = args.phases.split(",")
    print(f"# loadavg before: {loadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fleetd-bench-") as tmp:
        work = Path(tmp)
        rates: dict[str, float] = {}
        # Each phase on a fresh redis-server: a drain after another one in the same server
        # measured 40-60% slower here whatever it ran (the first one's 20,000 jobs stay).
        for name, limits in (("drain_plain", None), ("drain_limits", LOOSE),
                             ("drain_bound", BOUND)):  # fmt: skip
            if name in phases:
                with fresh_server(work / name) as url:
                    rates[name] = drain(url, work / "state", n, name, limits)
        if "drain_quarantined" in phases:
            with fresh_server(work / "drain_quarantined") as url:
                rates["drain_quarantined"] = drain(
                    url, work / "state", n, "drain_quarantined", None, held=True
                )
        for name, limits in (("drain_queues", None), ("drain_queue_limits", LOOSE_QUEUES)):
            if name in phases:
                with fresh_server(work / name) as url:
                    rates[name] = drain(url, work / "state", n, name, limits, QUEUES)
        if rates.get("drain_plain"):
            for name in ("drain_limits", "drain_bound", "drain_quarantined", "drain_queues",
                         "drain_queue_limits"):  # fmt: skip
                if rates.get(name):
                    goal = "" if name == "drain_queues" else "; goal >= 70"
                    emit(f"{name}_share", 100 * rates[name] / rates["drain_plain"], "%",
                         f"of drain_plain{goal}")  # fmt: skip
        if "fair" in phases:
            with fresh_server(work / "fair") as url:
                fair(url, work / "state", backlog)
        if "wait" in phases:
            wait_replicas(work, 500 if args.quick else 3000)
    print(f"# loadavg after: {loadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
