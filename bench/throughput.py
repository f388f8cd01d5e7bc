"""fleetd throughput and latency benchmark against a private, real redis-server.

Owns: starting a throwaway redis-server on a free 127.0.0.1 port (tests/redis_server.py,
AOF off; never the machine's Redis on 6379), then measuring with `noop` jobs, one
namespace per phase so phases never see each other's jobs:

1. enqueue one at a time: the CLI's path (plain Python, `link.run_sync`) and the trio
   path (`await queue.enqueue`, one thread hop per job);
2. bulk enqueue: all N rows in one `enqueue_rows` call (it chunks internally);
3. drain: N jobs pre-enqueued, then an in-process `Daemon` under `trio.run` at each
   concurrency, timed until all N are completed;
4. enqueue→start latency at light load: a separate process enqueues at a fixed rate
   while a daemon (concurrency 5) runs.

Prints one `name: value unit` line per figure, a `#` header with machine facts and the
config, and a final `targets:` line. Run: `.venv/bin/python bench/throughput.py [--quick]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import trio

# The test suite's redis-server helper (tests/ is not a package).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from redis_server import RedisServer

from fleetd import __version__
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.context import JobContext
from fleetd.jobs.handlers import HandlerRegistry
from fleetd.jobs.model import JobStatus
from fleetd.plugins.noop import NoopHandler
from fleetd.runtime.daemon import Daemon

# Default jobs per phase: big enough that start-up costs (~10 ms) are <1% of a drain at
# the 20k jobs/s target, small enough that every phase fits the 2-minute budget.
DEFAULT_JOBS = 20_000
QUICK_JOBS = 2_000
DRAIN_CONCURRENCIES = (5, 50)
# Jobs claimed per claim-script call (the config's default, stated so the header shows it).
CLAIM_BATCH = 100
# Stats are polled this often while a drain runs (one pipelined hop: 6 ZCARDs).
POLL_INTERVAL = 0.020
# A drain slower than this is a hang, not a measurement: stop and say so.
DRAIN_TIMEOUT = 120.0
# Light load for the latency phase: 200 jobs/s for 10 s (2,000 jobs); --quick: 2 s.
LATENCY_RATE = 200.0
LATENCY_SECONDS = 10.0
QUICK_LATENCY_SECONDS = 2.0
LATENCY_CONCURRENCY = 5
NOOP = {"type": "noop", "data": {}}
# The only address the bench server may listen on (tests/redis_server.py binds it).
LOOPBACK = "127.0.0.1"

TARGETS = (
    "drain >= 20000 jobs/s (one daemon); enqueue->start p50 <= 0.7 ms, p99 <= 1.5 ms "
    "(light load); one-at-a-time enqueue >= 8000 jobs/s; bulk enqueue >= 100000 jobs/s"
)


def loadavg() -> str:
    """/proc/loadavg as it reads: printed before and after a run, beside its figures."""
    return Path("/proc/loadavg").read_text().strip()


def emit(name: str, value: float, unit: str, note: str = "") -> None:
    """One figure per line: `name: value unit  (note)`."""
    shown = f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    print(f"{name}: {shown} {unit}" + (f"  ({note})" if note else ""), flush=True)


def make_config(url: str, namespace: str, state_dir: Path, **worker: Any) -> Config:
    """Like tests/conftest.py's make_config: defaults plus the bench server and namespace."""
    cfg = Config.default()
    return dataclasses.replace(
        cfg,
        redis=dataclasses.replace(cfg.redis, url=url, namespace=namespace),
        daemon=dataclasses.replace(cfg.daemon, state_dir=str(state_dir), roles=("worker",)),
        worker=dataclasses.replace(cfg.worker, claim_batch=CLAIM_BATCH, **worker),
    )


def fresh_namespace(phase: str) -> str:
    return f"bench-{phase}-{uuid.uuid4().hex[:8]}"


def client_engine(cfg: Config, registry: HandlerRegistry | None = None) -> Engine:
    """A client-side engine with every script loaded (as the CLI has after its first call)."""
    engine = Engine.build(cfg, daemon=False, registry=registry)
    for script in engine.scripts.all():
        script.load(engine.link.client)
    return engine


def redis_usage(engine: Engine) -> tuple[float, dict[str, tuple[int, int]]]:
    """(Redis CPU seconds, {command: (calls, µs)}) since the last CONFIG RESETSTAT.

    Commands a script runs are counted under their own names too (Redis 7), so the
    nested commands show where EVALSHA's time goes.
    """
    c = engine.link.client
    cpu = c.info("cpu")
    stats = {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in c.info("commandstats").items()
    }
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), stats


def redis_now_ms(engine: Engine) -> int:
    seconds, micros = engine.link.client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (q in 0..1) of unsorted values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# -- 1. enqueue one at a time -------------------------------------------------------------


def bench_enqueue_one(cfg: Config, n: int) -> None:
    engine = client_engine(cfg)
    ops, run_sync = engine.ops, engine.link.run_sync
    try:
        start = time.perf_counter()
        for _ in range(n):
            run_sync(ops.enqueue_rows, [ops.prepare(NOOP)])
        elapsed = time.perf_counter() - start
    finally:
        engine.close()
    emit("enqueue_one_sync", n / elapsed, "jobs/s", "link.run_sync, prepare included")
    emit("enqueue_one_sync_latency", elapsed / n * 1e6, "us/job")


def bench_enqueue_one_async(cfg: Config, n: int) -> None:
    async def main() -> float:
        engine = client_engine(cfg)
        try:
            start = time.perf_counter()
            for _ in range(n):
                await engine.queue.enqueue(NOOP)
            return time.perf_counter() - start
        finally:
            engine.close()

    elapsed = trio.run(main)
    emit("enqueue_one_trio", n / elapsed, "jobs/s", "await queue.enqueue, one thread hop each")
    emit("enqueue_one_trio_latency", elapsed / n * 1e6, "us/job")


# -- 2. bulk enqueue ----------------------------------------------------------------------


def bench_enqueue_bulk(cfg: Config, n: int) -> None:
    engine = client_engine(cfg)
    try:
        start = time.perf_counter()
        rows = engine.ops.prepare_many([NOOP] * n)
        prepared = time.perf_counter()
        engine.link.run_sync(engine.ops.enqueue_rows, rows)
        done = time.perf_counter()
    finally:
        engine.close()
    emit("enqueue_bulk", n / (done - start), "jobs/s", "prepare_many + enqueue_rows")
    emit("enqueue_bulk_prepare_only", n / (prepared - start), "jobs/s")
    emit("enqueue_bulk_redis_only", n / (done - prepared), "jobs/s", "enqueue_rows alone")


# -- 3. drain -----------------------------------------------------------------------------


async def _wait_completed(engine: Engine, n: int) -> int:
    """Poll stats until `n` jobs are completed (or DRAIN_TIMEOUT); returns the count."""
    with trio.move_on_after(DRAIN_TIMEOUT):
        while (done := (await engine.queue.stats())["completed"]) < n:
            await trio.sleep(POLL_INTERVAL)
        return done
    return (await engine.queue.stats())["completed"]


def bench_drain(url: str, state_dir: Path, n: int, concurrency: int) -> None:
    """Pre-enqueue n jobs, then run an in-process Daemon until all are completed.

    The figure uses Redis's clock at both ends: TIME just before the daemon starts, and
    the score of the last entry in status:completed (its completed_at), so the 20 ms
    stats poll only decides when to stop, not what is measured.
    """
    name = f"drain_c{concurrency}"
    cfg = make_config(url, fresh_namespace(name), state_dir, concurrency=concurrency)
    engine = client_engine(cfg)
    try:
        rows = engine.ops.prepare_many([NOOP] * n)
        engine.link.run_sync(engine.ops.enqueue_rows, rows)
        engine.link.client.config_resetstat()
        cpu_before, _ = redis_usage(engine)
        start_ms = redis_now_ms(engine)

        async def main() -> tuple[int, float, float]:
            daemon = Daemon(cfg)
            cpu, start = time.process_time(), time.perf_counter()
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                completed = await _wait_completed(engine, n)
                wall, cpu = time.perf_counter() - start, time.process_time() - cpu
                daemon.request_stop()
            return completed, wall, cpu

        completed, wall, python_cpu = trio.run(main)
        cpu_after, cmds = redis_usage(engine)
        c = engine.link.client
        last = c.zrevrange(engine.keys.status(JobStatus.COMPLETED), 0, 0, withscores=True)
        first_started = int(c.hget(engine.keys.job(rows[0].id), "started_at") or 0)
    finally:
        engine.close()
    if completed < n:
        print(f"{name}: FAILED only {completed}/{n} completed in {DRAIN_TIMEOUT:.0f} s")
        return
    last_ms = int(last[0][1])
    calls, lua_us = cmds.get("evalsha", (0, 0))
    window_s = max(1, last_ms - start_ms) / 1000
    steady_s = max(1, last_ms - first_started) / 1000
    emit(name, n / window_s, "jobs/s", "in-process Daemon; Redis clock, start -> last completion")
    emit(f"{name}_steady", n / steady_s, "jobs/s", "first claim -> last completion")
    emit(f"{name}_wall", n / wall, "jobs/s", "perf_counter until a 20 ms stats poll saw N")
    emit(f"{name}_python_cpu", python_cpu / n * 1e6, "us/job", "this process, all threads")
    emit(f"{name}_redis_cpu", (cpu_after - cpu_before) / n * 1e6, "us/job", "redis-server")
    emit(f"{name}_redis_lua", lua_us / n, "us/job", f"EVALSHA time, {calls} calls")
    nested = sorted(
        ((k, v) for k, v in cmds.items() if k not in ("evalsha", "info", "config|resetstat")),
        key=lambda kv: -kv[1][1],
    )
    top = ", ".join(f"{k} {us / n:.1f}us x{calls / n:.2f}" for k, (calls, us) in nested[:8])
    print(f"#   {name} Redis time inside the scripts, per job: {top}")


# -- 4. enqueue→start latency -------------------------------------------------------------


class TimedNoop(NoopHandler):
    """`noop`, noting the wall time its handler is entered (µs resolution)."""

    def __init__(self) -> None:
        self.entered: dict[str, float] = {}

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        self.entered[ctx.job.id] = time.time()
        return await super().run(ctx, data)


def enqueue_paced(url: str, namespace: str, count: int, rate: float) -> list[tuple[str, float]]:
    """In a child process (a client, as the CLI or a web app would be): enqueue `count`
    noop jobs at `rate`/s on the CLI's path. Returns (job id, wall time before the call).

    Each send is jittered by 0-1 ms: at a whole number of ms per job, the sends would
    all sit at one sub-millisecond phase, and the ms-floored Redis timestamps would then
    read low by one fixed amount per run (measured: run-to-run swings of 0.7 ms).
    """
    cfg = make_config(url, namespace, Path(tempfile.gettempdir()))
    engine = client_engine(cfg)
    ops, run_sync = engine.ops, engine.link.run_sync
    out: list[tuple[str, float]] = []
    jitter = random.Random(count)
    start = time.perf_counter()
    try:
        for i in range(count):
            pause = start + i / rate + jitter.random() / 1000 - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            before = time.time()
            [res] = run_sync(ops.enqueue_rows, [ops.prepare(NOOP)])
            out.append((res.job_id, before))
    finally:
        engine.close()
    return out


def bench_latency(url: str, state_dir: Path, count: int, rate: float) -> None:
    ns = fresh_namespace("latency")
    cfg = make_config(url, ns, state_dir, concurrency=LATENCY_CONCURRENCY)
    timed = TimedNoop()
    registry = HandlerRegistry()
    registry.register(timed, source="bench")
    engine = client_engine(cfg, registry)
    spawn = multiprocessing.get_context("spawn")

    async def main() -> list[tuple[str, float]]:
        daemon = Daemon(cfg, registry=registry)
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                future = pool.submit(enqueue_paced, url, ns, count, rate)
                sent = await trio.to_thread.run_sync(future.result)
                await _wait_completed(engine, count)
                daemon.request_stop()
        return sent

    try:
        sent = trio.run(main)
        c = engine.link.client
        pipe = c.pipeline(transaction=False)
        for job_id, _ in sent:
            pipe.hmget(engine.keys.job(job_id), "created_at", "started_at")
        hashes = pipe.execute()
        started_ms: dict[str, int] = {}
        for entries in _read_stream(c, engine.keys.events):
            for stream_id, fields in entries:
                if fields.get("type") == "job.started":
                    started_ms[fields["job_id"]] = int(stream_id.partition("-")[0])
    finally:
        engine.close()
    by_hash = [int(s) - int(cr) for cr, s in hashes if cr and s]
    by_event = [started_ms[j] - before * 1000 for j, before in sent if j in started_ms]
    by_handler = [(timed.entered[j] - before) * 1000 for j, before in sent if j in timed.entered]
    note = f"{len(sent)} jobs at {rate:.0f}/s, concurrency {LATENCY_CONCURRENCY}"
    for label, values, how in (
        ("hash", by_hash, "started_at - created_at: Redis ms, each end floored to 1 ms"),
        ("event", by_event, "job.started stream-id ms - wall before enqueue: reads 0-1 ms low"),
        ("handler", by_handler, "handler entered - wall before enqueue: us clock, claim hop in"),
    ):
        if not values:
            print(f"latency_{label}: FAILED no samples")
            continue
        emit(f"latency_{label}_p50", quantile(values, 0.50), "ms", how)
        emit(f"latency_{label}_p99", quantile(values, 0.99), "ms", note)
        emit(f"latency_{label}_mean", statistics.fmean(values), "ms")


def _read_stream(client: Any, key: str) -> Iterator[list[tuple[str, dict[str, str]]]]:
    """Yield XRANGE pages (lists of (id, fields)) of the whole stream."""
    low = "-"
    while True:
        page = client.xrange(key, low, "+", count=10_000)
        if not page:
            return
        yield page
        low = "(" + page[-1][0]


# -- main ---------------------------------------------------------------------------------

PHASES = ("enqueue", "bulk", "drain", "latency")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--jobs", type=int, default=None, help=f"jobs per phase ({DEFAULT_JOBS})")
    p.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_JOBS} jobs")
    p.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}"
    )
    args = p.parse_args(argv)
    args.jobs = args.jobs or (QUICK_JOBS if args.quick else DEFAULT_JOBS)
    args.phases = [ph.strip() for ph in args.phases.split(",") if ph.strip()]
    if unknown := set(args.phases) - set(PHASES):
        p.error(f"unknown phase(s) {', '.join(sorted(unknown))}; choose from {PHASES}")
    return args


def header(server: RedisServer, args: argparse.Namespace, latency_jobs: int) -> None:
    reply = server.command("INFO", "server")
    assert isinstance(reply, bytes)
    info = dict(ln.split(":", 1) for ln in reply.decode().splitlines() if ":" in ln)
    cfg = Config.default()
    print(
        f"# machine: cores={os.cpu_count()} python={platform.python_version()} "
        f"redis-server={info.get('redis_version', '?')} fleetd={__version__} "
        f"trio={trio.__version__} platform={platform.platform()}"
    )
    print(
        f"# config: jobs={args.jobs} phases={','.join(args.phases)} "
        f"redis={server.url} (private, AOF off) drain: in-process Daemon, concurrency "
        f"{'/'.join(map(str, DRAIN_CONCURRENCIES))}, claim_batch={CLAIM_BATCH}, "
        f"lease={cfg.worker.lease:g}s, poll_interval={cfg.worker.poll_interval:g}s, "
        f"max_connections={cfg.redis.max_connections}; latency: {latency_jobs} jobs at "
        f"{LATENCY_RATE:g}/s from a separate process, concurrency {LATENCY_CONCURRENCY}",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.jobs
    latency_jobs = int(LATENCY_RATE * (QUICK_LATENCY_SECONDS if args.quick else LATENCY_SECONDS))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fleetd-bench-") as tmp:
        work = Path(tmp)
        state = work / "state"
        with RedisServer(work / "redis", aof=False) as server:
            if not server.url.startswith(f"redis://{LOOPBACK}:"):
                raise SystemExit(f"refusing to benchmark a non-loopback Redis: {server.url}")
            url = server.url
            header(server, args, latency_jobs)
            if "enqueue" in args.phases:
                bench_enqueue_one(make_config(url, fresh_namespace("one"), state), n)
                bench_enqueue_one_async(make_config(url, fresh_namespace("trio"), state), n)
            if "bulk" in args.phases:
                bench_enqueue_bulk(make_config(url, fresh_namespace("bulk"), state), n)
            if "drain" in args.phases:
                for concurrency in DRAIN_CONCURRENCIES:
                    bench_drain(url, state, n, concurrency)
            if "latency" in args.phases:
                bench_latency(url, state, latency_jobs, LATENCY_RATE)
    print(f"# total run time: {time.perf_counter() - began:.1f} s")
    print(f"targets: {TARGETS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
