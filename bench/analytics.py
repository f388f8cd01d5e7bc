"""What the analytics bookkeeping costs, against a private, real redis-server.

Owns three measurements (docs: bench/README.md, "Analytics"):

1. drain cost: N noop jobs pre-enqueued and drained by an in-process Daemon, with the
   bookkeeping of fleetd/backend/lua/_analytics.lua on and off (`Scripts(analytics=
   False)`: the same scripts with its functions doing nothing), alternating in one run
   (off, on, off, on, …) so both halves share the machine's noise; printed as the
   median drain rate and the Lua time per job of each half, and the difference;
2. Redis memory of a week of buckets for 20 job types: the hour hashes of 168 hours,
   the minute hashes of the last 2 hours and the slowest-attempt zsets, written with the
   scripts' field layout; each type's run and wait times spread over three decades
   (1 ms to 1 s: ~40 buckets each, more than a real type fills), measured as
   `used_memory` before and after;
3. GET /api/v1/admin/jobs/analytics latency on that week, for each window, from a
   `fleetd run --roles api` subprocess (bench/http_enqueue.start_daemon), sequential
   requests: the first (which seals the closed buckets), p50 and p95;
4. (`--phases cpu`) the same answer's CPU time in this process (`time.process_time`:
   reading the buckets — redis-py's reply parsing included, Redis's own time not — then
   building and serialising the answer), for each window, p50 of REQUESTS rounds: the
   figure a busy shared machine does not inflate much.

Run: `.venv/bin/python bench/analytics.py [--quick]`. Prints `name: value unit` lines
and the load average before and after.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_enqueue import start_daemon, token
from redis_server import RedisServer

import fleetd.engine
from fleetd.analytics.histogram import bucket_of
from fleetd.backend.keys import Keys
from fleetd.backend.scripts import Scripts
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.runtime.daemon import Daemon

DEFAULT_JOBS = 20_000
QUICK_JOBS = 4_000
# Rounds of each half (off/on); the median of each is printed.
ROUNDS = 3
CONCURRENCY = 50
DRAIN_TIMEOUT = 120.0
TYPES = 20
WEEK_HOURS = 168
MINUTES = 120
# Per type and hour: jobs recorded (the counts do not change the memory, the fields do).
JOBS_PER_TYPE_HOUR = 2_000
REQUESTS = 20
LOOPBACK = "127.0.0.1"


def emit(name: str, value: float, unit: str, note: str = "") -> None:
    shown = f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    print(f"{name}: {shown} {unit}" + (f"  ({note})" if note else ""), flush=True)


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def config(url: str, namespace: str, state: Path) -> Config:
    cfg = Config.default()
    return dataclasses.replace(
        cfg,
        redis=dataclasses.replace(cfg.redis, url=url, namespace=namespace),
        daemon=dataclasses.replace(cfg.daemon, state_dir=str(state), roles=("worker",)),
        worker=dataclasses.replace(cfg.worker, concurrency=CONCURRENCY),
    )


def drain_once(url: str, state: Path, n: int, analytics: bool) -> tuple[float, float, float]:
    """(jobs/s by Redis's clock from first claim to last completion, Lua µs per job,
    Redis commands the scripts ran per job: the count the noise does not change)."""
    cfg = config(url, f"bench-an-{uuid.uuid4().hex[:8]}", state)
    # The daemon builds its scripts through fleetd.engine: swap in the chosen variant.
    setattr(fleetd.engine, "Scripts", functools.partial(Scripts, analytics=analytics))  # noqa: B010
    engine = Engine.build(cfg, daemon=False)
    try:
        for s in engine.scripts.all():
            s.load(engine.link.client)
        rows = engine.ops.prepare_many([{"type": "noop"}] * n)
        engine.link.run_sync(engine.ops.enqueue_rows, rows)
        c = engine.link.client
        c.config_resetstat()

        async def main() -> None:
            daemon = Daemon(cfg)
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                with trio.move_on_after(DRAIN_TIMEOUT):
                    while (await engine.queue.stats())["completed"] < n:
                        await trio.sleep(0.02)
                daemon.request_stop()

        trio.run(main)
        completed = engine.keys.status("completed")
        if c.zcard(completed) < n:
            raise SystemExit(f"drain did not finish in {DRAIN_TIMEOUT:.0f} s")
        last = int(c.zrevrange(completed, 0, 0, withscores=True)[0][1])
        first = int(c.hget(engine.keys.job(rows[0].id), "started_at"))
        stats = c.info("commandstats")
        lua_us = int(stats.get("cmdstat_evalsha", {}).get("usec", 0))
        skip = {"cmdstat_evalsha", "cmdstat_info", "cmdstat_config|resetstat"}
        calls = sum(int(v["calls"]) for k, v in stats.items() if k not in skip)
        if analytics != bool(c.keys(engine.keys.prefix + "an:*")):
            raise SystemExit("the analytics switch did not take")
        c.delete(*c.keys(engine.keys.prefix + "*"))
    finally:
        engine.close()
        setattr(fleetd.engine, "Scripts", Scripts)  # noqa: B010
    return n / (max(1, last - first) / 1000), lua_us / n, calls / n


def bench_drain(url: str, state: Path, n: int) -> None:
    rates: dict[bool, list[float]] = {False: [], True: []}
    lua: dict[bool, list[float]] = {False: [], True: []}
    calls: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(ROUNDS):
        for on in (False, True):
            rate, us, per_job = drain_once(url, state, n, on)
            rates[on].append(rate)
            lua[on].append(us)
            calls[on].append(per_job)
    off_rate, on_rate = statistics.median(rates[False]), statistics.median(rates[True])
    off_lua, on_lua = statistics.median(lua[False]), statistics.median(lua[True])
    note = f"median of {ROUNDS}, {n} noop jobs, concurrency {CONCURRENCY}"
    emit("drain_without_analytics", off_rate, "jobs/s", note)
    emit("drain_with_analytics", on_rate, "jobs/s", note)
    emit("drain_cost", (off_rate - on_rate) / off_rate * 100, "%", "of the drain rate")
    emit("lua_without_analytics", off_lua, "us/job", "EVALSHA time, all scripts")
    emit("lua_with_analytics", on_lua, "us/job", "EVALSHA time, all scripts")
    emit("commands_without_analytics", statistics.median(calls[False]), "per job",
         "Redis commands run by the scripts (and the stats poll)")  # fmt: skip
    emit("commands_with_analytics", statistics.median(calls[True]), "per job")
    shown = {on: ", ".join(f"{r:.0f}" for r in rates[on]) for on in (False, True)}
    print(f"#   all rounds (jobs/s): off {shown[False]}; on {shown[True]}")


def fields_of_a_type(rng: random.Random, jtype: str, company: str) -> dict[str, int]:
    out: dict[str, int] = {}
    tail = f"\n{jtype}\n{company}"
    for kind in ("r", "w"):
        total = 0
        for _ in range(JOBS_PER_TYPE_HOUR):
            ms = 10 ** rng.uniform(0, 3)
            f = f"{kind}{bucket_of(ms)}{tail}"
            out[f] = out.get(f, 0) + 1
            total += int(ms)
        out[f"{kind}s{tail}"] = total
    for kind in ("ok", "retry", "fail", "in"):
        out[f"{kind}{tail}"] = JOBS_PER_TYPE_HOUR
    return out


def write_week(url: str, keys: Keys) -> None:
    import redis

    c = redis.Redis.from_url(url, decode_responses=True)
    rng = random.Random(7)
    sec, _ = c.time()
    hour, minute = int(sec) // 3600, int(sec) // 60
    types = [f"type_{i:02d}" for i in range(TYPES)]
    before = int(c.info("memory")["used_memory"])
    pipe = c.pipeline(transaction=False)
    for h in range(hour - WEEK_HOURS + 1, hour + 1):
        mapping: dict[str, int] = {}
        for t in types:
            mapping.update(fields_of_a_type(rng, t, ""))
            slow = keys.analytics_slowest(h, None, t)
            pipe.zadd(
                slow, {f"job_{uuid.uuid4().hex[:26]}": rng.randint(1000, 9000) for _ in range(5)}
            )
            pipe.expire(slow, 8 * 86400)
        pipe.hset(keys.analytics_hour(h), mapping=mapping)  # type: ignore[arg-type]
        pipe.expire(keys.analytics_hour(h), 8 * 86400)
    pipe.execute()
    week = int(c.info("memory")["used_memory"]) - before
    for m in range(minute - MINUTES + 1, minute + 1):
        mapping = {}
        for t in types:
            mapping.update(fields_of_a_type(rng, t, ""))
        pipe.hset(keys.analytics_minute(m), mapping=mapping)  # type: ignore[arg-type]
        pipe.expire(keys.analytics_minute(m), 7200)
    pipe.execute()
    total = int(c.info("memory")["used_memory"]) - before
    fields = c.hlen(keys.analytics_hour(hour))
    emit("memory_week_hours", week / 2**20, "MiB", f"{WEEK_HOURS} hour hashes + slowest zsets, "
         f"{TYPES} types, {fields} fields an hour")  # fmt: skip
    emit("memory_total", total / 2**20, "MiB", f"plus {MINUTES} minute hashes")
    c.close()


def bench_get(url: str, state: Path) -> None:
    proc, base = start_daemon(url, state, "api", {"FLEETD_ALERTS_ENABLED": "false"})
    try:
        headers = {"Authorization": f"Bearer {token()}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            for window in ("hour", "day", "week"):
                times = []
                for _ in range(REQUESTS):
                    t = time.perf_counter()
                    r = client.get("/api/v1/admin/jobs/analytics", params={"window": window})
                    times.append((time.perf_counter() - t) * 1000)
                    if r.status_code != 200:
                        raise SystemExit(f"GET analytics: {r.status_code} {r.text[:200]}")
                groups = len(r.json()["analytics"]["groups"])
                # The first read of a window seals its closed buckets (fleetd.analytics.sealed).
                emit(f"get_{window}_first", times[0], "ms", "seals the closed buckets")
                times.sort()
                note = f"{REQUESTS} sequential requests, {groups} groups, {len(r.content)} bytes"
                emit(f"get_{window}_p50", times[len(times) // 2], "ms", note)
                emit(f"get_{window}_p95", times[int(len(times) * 0.95) - 1], "ms")
    finally:
        proc.terminate()
        proc.wait(30)


def bench_cpu(url: str) -> None:
    import json

    import redis

    from fleetd.analytics import answer, store

    c = redis.Redis.from_url(url, decode_responses=True)
    keys = Keys("bench")
    for window in ("hour", "day", "week"):
        times = []
        for _ in range(REQUESTS):
            t = time.process_time()
            data = store.read(c, keys, store.WINDOWS[window])
            text = json.dumps(answer.build(data, "type").jsonable())
            times.append((time.process_time() - t) * 1000)
        emit(f"cpu_{window}_first", times[0], "ms", "CPU time of read + build + JSON")
        emit(f"cpu_{window}_p50", statistics.median(times), "ms", f"{len(text)} bytes")
    c.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help=f"{QUICK_JOBS} jobs per drain")
    p.add_argument("--phases", default="drain,memory,get")
    a = p.parse_args()
    n = QUICK_JOBS if a.quick else DEFAULT_JOBS
    print(f"# fleetd analytics bench; cpus {os.cpu_count()}; loadavg before {loadavg()}")
    with tempfile.TemporaryDirectory(prefix="fleetd-bench-") as tmp:
        work = Path(tmp)
        with RedisServer(work / "redis", aof=False) as server:
            if not server.url.startswith(f"redis://{LOOPBACK}:"):
                raise SystemExit(f"refusing to benchmark a non-loopback Redis: {server.url}")
            if "drain" in a.phases:
                bench_drain(server.url, work / "state", n)
            if "memory" in a.phases or "get" in a.phases or "cpu" in a.phases:
                write_week(server.url, Keys("bench"))
            if "cpu" in a.phases:
                bench_cpu(server.url)
            if "get" in a.phases:
                bench_get(server.url, work / "api-state")
    print(f"# loadavg after {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
