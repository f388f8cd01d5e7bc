"""The cost of sealed job data (fleetd.jobs.sealing): seal/open per job, and drain rates of
plain vs encrypted jobs, against a private, real redis-server.

Owns, with throughput.py's helpers (its redis-server, config and drain clock):
1. micro: µs per job to seal and to open one job's data — two sensitive fields, and the
   whole data (`"encrypt": true`) — and `QueueOps.prepare` plain vs encrypted;
2. drain: N `noop` jobs with the same data, plain then `"encrypt": true`, each drained
   by an in-process Daemon at concurrency 50 (Redis clock, start → last completion).

Prints `name: value unit` lines like throughput.py. Run:
`.venv/bin/python bench/sealing.py [--quick] [--jobs N]` (not part of throughput.py's
default run, which it would slow down).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from redis_server import RedisServer
from throughput import (
    DRAIN_TIMEOUT,
    client_engine,
    emit,
    fresh_namespace,
    make_config,
    redis_now_ms,
)

from fleetd.jobs.model import JobStatus
from fleetd.jobs.sealing import Sealer, format_key, new_key
from fleetd.runtime.daemon import Daemon

DEFAULT_JOBS = 20_000
QUICK_JOBS = 2_000
MICRO_ROUNDS = 20_000
CONCURRENCY = 50
# A typical notification job's data (~170 bytes of JSON).
DATA = {
    "to": "driver.42@fleet.example.com",
    "subject": "Your vehicle is due for maintenance",
    "smtp_password": "correct horse battery staple",
    "recipient": {"phone": "+49 151 12345678", "name": "Ada"},
}
PATHS = ("smtp_password", "recipient.phone")


def per_call_us(fn: Callable[[], Any], rounds: int) -> float:
    fn()  # warm up (loads the keyring)
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - start) / rounds * 1e6


def bench_micro(rounds: int, state_dir: Path, url: str) -> None:
    sealer = Sealer([format_key("k1", new_key())])
    fields, fmark = sealer.seal_data(DATA, "job:job_x", PATHS)
    whole, wmark = sealer.seal_data(DATA, "job:job_x", None)
    emit("seal_fields", per_call_us(lambda: sealer.seal_data(DATA, "job:j", PATHS), rounds),
         "us/job", "2 sensitive fields")  # fmt: skip
    emit("open_fields", per_call_us(lambda: sealer.open_data(fields, fmark, "job:job_x"), rounds),
         "us/job")  # fmt: skip
    emit("seal_whole", per_call_us(lambda: sealer.seal_data(DATA, "job:j", None), rounds),
         "us/job", "encrypt: true")  # fmt: skip
    emit("open_whole", per_call_us(lambda: sealer.open_data(whole, wmark, "job:job_x"), rounds),
         "us/job")  # fmt: skip
    cfg = make_config(url, fresh_namespace("prepare"), state_dir)
    engine = client_engine(cfg)
    try:
        plain = {"type": "noop", "data": DATA}
        sealed = {**plain, "encrypt": True}
        emit("prepare_plain", per_call_us(lambda: engine.ops.prepare(plain), rounds), "us/job")
        emit("prepare_encrypt", per_call_us(lambda: engine.ops.prepare(sealed), rounds), "us/job")
    finally:
        engine.close()


def bench_drain(url: str, state_dir: Path, n: int, encrypt: bool) -> float | None:
    name = "drain_encrypted" if encrypt else "drain_plain"
    cfg = make_config(url, fresh_namespace(name), state_dir, concurrency=CONCURRENCY)
    engine = client_engine(cfg)
    try:
        rows = engine.ops.prepare_many([{"type": "noop", "data": DATA, "encrypt": encrypt}] * n)
        engine.link.run_sync(engine.ops.enqueue_rows, rows)
        start_ms = redis_now_ms(engine)

        async def main() -> int:
            daemon = Daemon(cfg)
            async with trio.open_nursery() as nursery:
                await nursery.start(daemon.run)
                with trio.move_on_after(DRAIN_TIMEOUT):
                    while (await engine.queue.stats())["completed"] < n:
                        await trio.sleep(0.02)
                daemon.request_stop()
            return (await engine.queue.stats())["completed"]

        completed = trio.run(main)
        last = engine.link.client.zrevrange(
            engine.keys.status(JobStatus.COMPLETED), 0, 0, withscores=True
        )
    finally:
        engine.close()
    if completed < n:
        print(f"{name}: FAILED only {completed}/{n} completed in {DRAIN_TIMEOUT:.0f} s")
        return None
    rate = n / (max(1, int(last[0][1]) - start_ms) / 1000)
    emit(name, rate, "jobs/s", f"concurrency {CONCURRENCY}, Redis clock")
    return rate


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help=f"N = {QUICK_JOBS}")
    p.add_argument("--jobs", type=int, help=f"jobs per drain (default {DEFAULT_JOBS})")
    a = p.parse_args(argv)
    n = a.jobs or (QUICK_JOBS if a.quick else DEFAULT_JOBS)
    with tempfile.TemporaryDirectory(prefix="fleetd-bench-") as tmp:
        state_dir = Path(tmp) / "state"
        with RedisServer(Path(tmp) / "redis") as server:
            print(f"# fleetd sealing bench: N = {n}, concurrency {CONCURRENCY}, AES-256-GCM")
            bench_micro(MICRO_ROUNDS // (10 if a.quick else 1), state_dir, server.url)
            plain = bench_drain(server.url, state_dir, n, encrypt=False)
            sealed = bench_drain(server.url, state_dir, n, encrypt=True)
            if plain and sealed:
                emit("drain_encrypted_vs_plain", sealed / plain * 100, "%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
