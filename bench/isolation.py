"""Per-job overhead of `process` isolation against `inline`, for a short job.

Owns: a throwaway redis-server on a free 127.0.0.1 port (tests/redis_server.py), one
in-process worker pool (the daemon's WorkerPool, with its Sandbox) and, per mode, N
pre-enqueued jobs of a handler that returns at once. Figures per mode and concurrency:
`drain` (jobs/s from the first claim to the last completion, Redis's clock at both
ends) and `per_job` (its inverse in ms); `cpu_per_job` (CPU time of this process — the
daemon — plus its sandbox children, over the drain: robust on a loaded box); then the
difference per job, process minus inline. And `start_latency`: jobs enqueued one at a
time into an idle pool, from the job's creation (Redis clock) to its handler starting
(the handler notes the time), mean and median in ms (the creation time has Redis's
millisecond resolution: both modes carry the same +0.5 ms on average, which their
difference cancels). Warm children: one warm-up job per child
before the clock starts, so the children's start (~0.5 s each: a fresh interpreter
importing fleetd) is not counted. The load average is printed before and after.

    .venv/bin/python bench/isolation.py                 # N = 2,000 jobs per run
    .venv/bin/python bench/isolation.py --jobs 500 --concurrency 1,4
    .venv/bin/python bench/isolation.py --scratch /dev/shm   # scratch dirs on tmpfs
    .venv/bin/python bench/isolation.py --rounds 5 --concurrency 1   # medians of 5

With `--rounds N` the two modes run N times, interleaved (inline, process, inline, ...),
and the medians of the per-round differences close the output: on a shared box one
round says little.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from redis_server import RedisServer
from sandbox_pids import sandbox_children

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.handlers import HandlerDefaults, HandlerRegistry
from fleetd.runtime.heartbeat import WorkerMetrics
from fleetd.runtime.worker import PoolSettings, WorkerPool

LOOPBACK = "127.0.0.1"
DEFAULT_JOBS = 2000
# Jobs enqueued one at a time for the start latency (a claim each, the pool idle between).
LATENCY_JOBS = 200


class Short:
    """Returns at once: what is measured is fleetd's cost around a job."""

    job_type = "short_inline"
    defaults = HandlerDefaults(isolation="inline")

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        return data

    async def run(self, ctx: Any, data: dict[str, Any]) -> dict[str, Any]:
        return {"pid": os.getpid(), "t": time.time()}


class ShortProcess(Short):
    job_type = "short_process"
    defaults = HandlerDefaults(isolation="process")


def emit(name: str, value: float, unit: str, note: str = "") -> None:
    shown = f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    print(f"{name}: {shown} {unit}" + (f"  ({note})" if note else ""), flush=True)


def config(url: str, state: Path, concurrency: int, per_child: int, scratch: str = "") -> Config:
    cfg = Config.default()
    return dataclasses.replace(
        cfg,
        redis=dataclasses.replace(cfg.redis, url=url, namespace=f"bench-{uuid.uuid4().hex[:8]}"),
        daemon=dataclasses.replace(cfg.daemon, state_dir=str(state), roles=("worker",)),
        worker=dataclasses.replace(cfg.worker, concurrency=concurrency),
        isolation=dataclasses.replace(
            cfg.isolation,
            max_children=concurrency,
            max_jobs_per_child=per_child,
            scratch_dir=scratch,
        ),
    )


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> tuple[float, float]:
    """CPU time of this process, and of the sandbox's children: the live ones from
    /proc, the exited ones from RUSAGE_CHILDREN (redis-server, also a child, is reaped
    only at the end)."""
    t = os.times()
    total = t.children_user + t.children_system
    for pid in sandbox_children():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return t.user + t.system, total


async def drain(
    cfg: Config, job_type: str, jobs: int
) -> tuple[float, tuple[float, float], list[float]]:
    """Seconds (Redis clock) from the first claim to the last completion of `jobs`, CPU
    seconds (daemon and children) over the same run, and the start latencies (ms)."""
    registry = HandlerRegistry()
    registry.register(Short())
    registry.register(ShortProcess())
    engine = Engine.build(cfg, daemon=True, registry=registry)
    await engine.link.connect(engine.scripts.all())
    w = cfg.worker
    settings = PoolSettings(
        concurrency=w.concurrency, poll_interval=0.05, job_timeout=60.0, shutdown_timeout=5.0,
        claim_batch=w.claim_batch, lease=w.lease, reconnect_max_backoff=1.0,
        command_timeout=cfg.redis.command_timeout, log_jobs=False, isolation=cfg.isolation,
    )  # fmt: skip
    pool = WorkerPool(engine.link, engine.scripts, engine.queue, registry, settings,
                      "bench:1:x", WorkerMetrics())  # fmt: skip
    client = engine.link.client
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            # Warm-up: one job per slot, so every child is started before the clock.
            warm = [{"type": job_type, "data": {}} for _ in range(w.concurrency * 2)]
            await engine.queue.enqueue_many(warm)
            await wait_done(engine, len(warm))
            await trio.sleep(0.2)
            sec, usec = client.time()
            start_ms = sec * 1000 + usec // 1000
            cpu0 = cpu_seconds()
            await engine.queue.enqueue_many([{"type": job_type, "data": {}} for _ in range(jobs)])
            await wait_done(engine, len(warm) + jobs)
            cpu1 = cpu_seconds()
            cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
            last = client.zrange(engine.keys.status("completed"), -1, -1, withscores=True)
            latency = []
            for _ in range(LATENCY_JOBS):
                r = await engine.queue.enqueue({"type": job_type, "data": {}})
                job = await wait_job(engine, r.job_id)
                latency.append(job.result["t"] * 1000 - job.created_at_ms)
            pool.quiet()
        return float(last[0][1] - start_ms) / 1000, cpu, latency
    finally:
        engine.close()


async def wait_done(engine: Engine, n: int) -> None:
    key = engine.keys.status("completed")
    with trio.fail_after(600):
        while engine.link.client.zcard(key) < n:
            await trio.sleep(0.02)


async def wait_job(engine: Engine, job_id: str) -> Any:
    with trio.fail_after(60):
        while (job := await engine.queue.get(job_id)) is None or job.result is None:
            await trio.sleep(0.005)
    return job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument(
        "--per-child", type=int, default=1000, help="[isolation] max_jobs_per_child (1000)"
    )
    parser.add_argument(
        "--scratch", default="", help="[isolation] scratch_dir ('' = the system's temp dir)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved repeats (1)")
    args = parser.parse_args()
    print(f"# {os.cpu_count()} cores, load {Path('/proc/loadavg').read_text().split()[:3]}, "
          f"max_jobs_per_child {args.per_child}, scratch_dir {args.scratch!r}")  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="fleetd-bench-") as tmp,
        RedisServer(Path(tmp) / "redis", aof=False) as server,
    ):
        if not server.url.startswith(f"redis://{LOOPBACK}:"):
            raise SystemExit(f"refusing to benchmark a non-loopback Redis: {server.url}")
        for c in (int(x) for x in args.concurrency.split(",")):
            rounds: dict[str, list[float]] = {"wall": [], "cpu": [], "start": [], "start_p50": []}
            for r in range(args.rounds):
                figures = one_round(server.url, Path(tmp) / "state", c, args)
                for name, value in figures.items():
                    rounds[name].append(value)
                print(f"# round {r + 1}, load {Path('/proc/loadavg').read_text().split()[:3]}")
            if args.rounds > 1:
                for name, values in rounds.items():
                    emit(f"median_{name}_overhead_c{c}", statistics.median(values), "ms",
                         f"process minus inline, {args.rounds} rounds: "
                         + ", ".join(f"{v:.2f}" for v in values))  # fmt: skip
    print(f"# load after {Path('/proc/loadavg').read_text().split()[:3]}")


def one_round(url: str, state: Path, c: int, args: argparse.Namespace) -> dict[str, float]:
    """Both modes once at concurrency `c`; prints their figures and returns the
    differences (ms per job: wall, CPU; start latency: mean, median)."""
    per_job, cpu_job, start, p50 = {}, {}, {}, {}
    for mode in ("inline", "process"):
        cfg = config(url, state, c, args.per_child, args.scratch)
        seconds, cpu, latency = trio.run(drain, cfg, f"short_{mode}", args.jobs)
        per_job[mode] = seconds / args.jobs * 1000
        cpu_job[mode] = sum(cpu) / args.jobs * 1000
        start[mode], p50[mode] = statistics.mean(latency), statistics.median(latency)
        emit(f"drain_{mode}_c{c}", args.jobs / seconds, "jobs/s", f"{args.jobs} jobs")
        emit(f"per_job_{mode}_c{c}", per_job[mode], "ms", "wall")
        emit(f"cpu_per_job_{mode}_c{c}", cpu_job[mode], "ms",
             f"daemon {cpu[0] / args.jobs * 1000:.3f} + children "
             f"{cpu[1] / args.jobs * 1000:.3f}")  # fmt: skip
        note = f"mean of {len(latency)}, created -> handler started; median {p50[mode]:.3g}"
        emit(f"start_latency_{mode}_c{c}", start[mode], "ms", note)
    figures = {
        "wall": per_job["process"] - per_job["inline"],
        "cpu": cpu_job["process"] - cpu_job["inline"],
        "start": start["process"] - start["inline"],
        "start_p50": p50["process"] - p50["inline"],
    }
    emit(f"process_overhead_c{c}", figures["wall"], "ms/job",
         "wall, process minus inline, warm children")  # fmt: skip
    emit(f"process_cpu_overhead_c{c}", figures["cpu"], "ms/job", "CPU, process minus inline")
    note = f"start latency (mean), process minus inline; median {figures['start_p50']:.3g}"
    emit(f"process_start_overhead_c{c}", figures["start"], "ms", note)
    return figures


if __name__ == "__main__":
    # Run as the module `isolation`: a process job's handler is pickled to a child by
    # its module's name, and a child cannot import `__main__`'s classes.
    import isolation

    isolation.main()
