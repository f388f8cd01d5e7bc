"""`ctx.redis` per command: the shared connection of a direct server against the batched
thread hop (what Sentinel, Cluster and TLS take, and every server before issue #15's
change), side by side in one run.

Owns: a throwaway redis-server on a free 127.0.0.1 port (tests/redis_server.py, AOF
off) and, for each path in turn, rounds interleaved:

- `one_task`: one task sending INCRs one after the other (a job at light load): wall
  time per command (p50, p99) and the process's CPU per command;
- `tasksN`: N tasks (50: a worker's default concurrency) each sending INCRs back to
  back (a busy worker): CPU per command, and for the shared connection the commands
  per write.

Prints one `name: value unit` line per figure; `#` lines say how. A whole drain with
such a handler is bench/drain_blocking.py's `fleetd_redis`.

Run: `.venv/bin/python bench/handler_redis.py [--commands N] [--rounds R] [--tasks T]`
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from redis_server import RedisServer

from fleetd.backend.redis_link import RedisLink
from fleetd.jobs.handler_redis import HandlerRedis

DEFAULT_COMMANDS = 20_000
DEFAULT_ROUNDS = 3
DEFAULT_TASKS = 50
PATHS = ("shared", "threaded")


def facade(url: str, path: str) -> tuple[RedisLink, HandlerRedis]:
    link = RedisLink(url)
    redis = HandlerRedis(link)
    if path == "threaded":
        redis._pipe = None  # the path every URL but redis:// and unix:// takes
    return link, redis


async def one_task(redis: HandlerRedis, n: int) -> tuple[float, float, float]:
    """(p50 µs, p99 µs, CPU µs) per command of one task's INCRs."""
    took = []
    cpu = time.process_time()
    for _ in range(n):
        t = time.perf_counter()
        await redis.incr("bench:one")
        took.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu
    took.sort()
    return took[len(took) // 2] * 1e6, took[int(len(took) * 0.99)] * 1e6, cpu / n * 1e6


async def many_tasks(redis: HandlerRedis, n: int, tasks: int) -> float:
    """CPU µs per command of `tasks` tasks sending n INCRs in all."""
    each = max(1, n // tasks)

    async def task(i: int) -> None:
        for _ in range(each):
            await redis.incr(f"bench:many:{i % 8}")

    cpu = time.process_time()
    async with trio.open_nursery() as nursery:
        for i in range(tasks):
            nursery.start_soon(task, i)
    return (time.process_time() - cpu) / (each * tasks) * 1e6


async def run(url: str, args: argparse.Namespace) -> None:
    figures: dict[str, list[float]] = {}
    for rnd in range(1, args.rounds + 1):
        for path in PATHS:
            link, redis = facade(url, path)
            try:
                await redis.incr("bench:warm")  # connections open before timing
                p50, p99, cpu1 = await one_task(redis, args.commands // 4)
                pipe = redis.pipe
                before = (pipe.commands, pipe.writes) if pipe is not None else (0, 0)
                cpu_n = await many_tasks(redis, args.commands, args.tasks)
            finally:
                redis.close()
                link.close()
            batch = ""
            if pipe is not None:
                sent, writes = pipe.commands - before[0], pipe.writes - before[1]
                batch = f", {sent / max(writes, 1):.0f} commands per write"
            print(f"# round {rnd} {path}: one task p50 {p50:.0f} µs p99 {p99:.0f} µs CPU "
                  f"{cpu1:.1f} µs; {args.tasks} tasks CPU {cpu_n:.1f} µs{batch}")  # fmt: skip
            for name, value in ((f"{path}_one_task_p50", p50), (f"{path}_one_task_p99", p99),
                                (f"{path}_one_task_cpu", cpu1),
                                (f"{path}_tasks{args.tasks}_cpu", cpu_n)):  # fmt: skip
                figures.setdefault(name, []).append(value)
    for name, values in figures.items():
        print(f"{name}: {statistics.median(values):.1f} µs  (median of {len(values)} rounds)")
    print(f"# load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--commands", type=int, default=DEFAULT_COMMANDS, help="per round and path")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    p.add_argument("--tasks", type=int, default=DEFAULT_TASKS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"# handler_redis: commands={args.commands} rounds={args.rounds} "
          f"tasks={args.tasks} cores={os.cpu_count()} load={os.getloadavg()[0]:.2f}")  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="fleetd-bench-") as tmp,
        RedisServer(Path(tmp) / "redis", aof=False) as server,
    ):
        trio.run(run, server.url, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
