"""Workflow benchmarks: submit a 10,000-node graph, drain it, release latency.

Starts its own redis-server (tests/redis_server.py: a free port on 127.0.0.1, never the
machine's Redis on 6379), one namespace per phase:

    .venv/bin/python bench/workflows.py            # 10,000 nodes, ~1 min
    .venv/bin/python bench/workflows.py --quick    # 2,000 nodes, smoke run

Phases:
- `submit`: one fan-out/fan-in graph of N nodes (first → N-2 → then): `plan` (the
  checks and rows, Python) and `submit` (one wf_submit.lua call), wall time each; then
  a company's graph stored with and without `[limits]` quotas (the door's check);
- `drain`: that graph run by an in-process Daemon (concurrency 50) against N
  independent noop jobs, Redis clock from the daemon's start to the last completion
  (as bench/throughput.py's drain); the goal is a graph rate ≥ 70% of the independent;
- `release`: a chain of CHAIN nodes at concurrency 5: per edge, the child's start
  (`started_at`) minus its parent's completion (`completed_at`), both Redis ms in the
  job hashes — the time from the completion that releases a child to its claim.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

# bench/ for throughput.py's helpers; tests/ for the test suite's redis-server helper.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from redis_server import RedisServer
from throughput import (
    LOOPBACK,
    NOOP,
    client_engine,
    emit,
    fresh_namespace,
    make_config,
    quantile,
    redis_now_ms,
    redis_usage,
)

from fleetd.config.limit_sections import LimitsConfig
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus
from fleetd.runtime.daemon import Daemon
from fleetd.workflows.store import WorkflowOps

DEFAULT_NODES = 10_000
QUICK_NODES = 2_000
DRAIN_CONCURRENCY = 50
CHAIN = 300
RELEASE_CONCURRENCY = 5
DRAIN_TIMEOUT = 300.0
POLL = 0.02
GOAL = 0.70


def fan(n: int) -> dict[str, Any]:
    return {"first": NOOP, "group": [NOOP] * (n - 2), "then": NOOP}


async def _run_until(cfg: Any, engine: Engine, n: int) -> None:
    daemon = Daemon(cfg)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        with trio.move_on_after(DRAIN_TIMEOUT):
            while (await engine.queue.stats())["completed"] < n:
                await trio.sleep(POLL)
        daemon.request_stop()


def _last_completion(engine: Engine) -> int:
    last = engine.link.client.zrevrange(
        engine.keys.status(JobStatus.COMPLETED), 0, 0, withscores=True
    )
    return int(last[0][1])


def bench_submit(url: str, state_dir: Path, n: int) -> None:
    cfg = make_config(url, fresh_namespace("wf-submit"), state_dir)
    engine = client_engine(cfg)
    try:
        ops = WorkflowOps(engine.ops)
        t0 = time.perf_counter()
        plan = ops.plan(fan(n))
        t1 = time.perf_counter()
        ops.submit(engine.link.client, plan)
        t2 = time.perf_counter()
    finally:
        engine.close()
    emit("submit_plan", (t1 - t0) * 1000, "ms", f"{n} nodes: checks, rows (Python)")
    emit("submit_store", (t2 - t1) * 1000, "ms", "one wf_submit.lua call, sent and stored")
    emit("submit_total", (t2 - t0) * 1000, "ms", f"{n / (t2 - t0):.0f} nodes/s")
    bench_submit_quota(url, state_dir, n)


def bench_submit_quota(url: str, state_dir: Path, n: int) -> None:
    """One company's graph stored with and without its quotas checked (5 of each,
    alternating, medians): what the check at the workflow door costs."""
    stores: dict[bool, list[float]] = {False: [], True: []}
    for quota in (False, True) * 5:
        cfg = make_config(url, fresh_namespace("wf-quota"), state_dir)
        if quota:
            limits = LimitsConfig(company_max_pending=10**9, company_enqueue_rate="1000000/1s")
            cfg = dataclasses.replace(cfg, limits=limits)
        engine = client_engine(cfg)
        try:
            ops = WorkflowOps(engine.ops)
            plan = ops.plan({**fan(n), "company_id": "acme"})
            t0 = time.perf_counter()
            ops.submit(engine.link.client, plan)
            stores[quota].append((time.perf_counter() - t0) * 1000)
        finally:
            engine.close()
    plain, checked = (statistics.median(stores[q]) for q in (False, True))
    emit("submit_store_company", plain, "ms", "a company's graph, no quota set")
    emit("submit_store_quota", checked, "ms", f"with its quotas checked: {checked - plain:+.1f} ms")


@dataclass(frozen=True, slots=True)
class Drain:
    rate: float  # jobs/s, Redis clock
    redis_us: float  # Redis CPU µs per job (INFO cpu: user + sys)
    python_us: float  # this process's CPU µs per job (the in-process daemon's)
    commands: dict[str, tuple[int, int]]  # per command: (calls, µs) during the drain


def _drain(url: str, state_dir: Path, n: int, graph: bool) -> Drain:
    name = "wf" if graph else "jobs"
    cfg = make_config(url, fresh_namespace(f"drain-{name}"), state_dir,
                      concurrency=DRAIN_CONCURRENCY)  # fmt: skip
    engine = client_engine(cfg)
    try:
        if graph:
            ops = WorkflowOps(engine.ops)
            ops.submit(engine.link.client, ops.plan(fan(n)))
        else:
            engine.link.run_sync(engine.ops.enqueue_rows, engine.ops.prepare_many([NOOP] * n))
        engine.link.client.config_resetstat()
        redis0, _ = redis_usage(engine)
        cpu0 = time.process_time()
        start = redis_now_ms(engine)
        trio.run(_run_until, cfg, engine, n)
        python_s = time.process_time() - cpu0
        redis1, commands = redis_usage(engine)
        done = engine.link.client.zcard(engine.keys.status(JobStatus.COMPLETED))
        if done < n:
            print(f"drain_{name}: FAILED only {done}/{n} completed")
            return Drain(0.0, 0.0, 0.0, {})
        rate = n / (max(1, _last_completion(engine) - start) / 1000)
        return Drain(rate, (redis1 - redis0) * 1e6 / n, python_s * 1e6 / n, commands)
    finally:
        engine.close()


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def bench_drain(url: str, state_dir: Path, n: int, runs: int) -> None:
    """`runs` interleaved pairs (independent, then graph); the median of each figure."""
    pairs: list[tuple[Drain, Drain]] = []
    for i in range(runs):
        independent = _drain(url, state_dir, n, graph=False)
        graph = _drain(url, state_dir, n, graph=True)
        pairs.append((independent, graph))
        ratio = graph.rate / independent.rate if independent.rate else 0.0
        print(
            f"# run {i + 1}: independent {independent.rate:.0f} jobs/s, graph "
            f"{graph.rate:.0f} jobs/s ({ratio:.0%}); Redis CPU {independent.redis_us:.0f} / "
            f"{graph.redis_us:.0f} µs/job, Python CPU {independent.python_us:.0f} / "
            f"{graph.python_us:.0f} µs/job; load average {_load()}",
            flush=True,
        )
    ind, gr = [p[0] for p in pairs], [p[1] for p in pairs]
    med = statistics.median
    emit("drain_independent", med(d.rate for d in ind), "jobs/s",
         f"{n} noop jobs, concurrency {DRAIN_CONCURRENCY}, median of {runs}")  # fmt: skip
    emit("drain_fan_out_in", med(d.rate for d in gr), "jobs/s",
         f"first -> {n - 2} -> then, same daemon")  # fmt: skip
    ratios = [g.rate / i.rate if i.rate else 0.0 for i, g in pairs]
    ratio = med(ratios)
    verdict = "meets" if ratio >= GOAL else "misses"
    shown = ", ".join(f"{r:.0%}" for r in ratios)
    emit("drain_ratio", ratio * 100, "%", f"{verdict} the {GOAL:.0%} goal; runs {shown}")
    for label, ds in (("independent", ind), ("fan_out_in", gr)):
        emit(f"redis_cpu_{label}", med(d.redis_us for d in ds), "µs/job", "INFO cpu")
        emit(f"python_cpu_{label}", med(d.python_us for d in ds), "µs/job",
             "the daemon's process")  # fmt: skip
    # Where the extra Redis time goes: commands run by the scripts, per job, graph minus
    # independent (the last pair), the biggest first.
    last_i, last_g = pairs[-1]
    extra = {
        cmd: (calls - last_i.commands.get(cmd, (0, 0))[0], us - last_i.commands.get(cmd, (0, 0))[1])
        for cmd, (calls, us) in last_g.commands.items()
    }
    top = sorted(extra.items(), key=lambda kv: -kv[1][1])[:8]
    print("# extra per node vs a plain job (calls, µs): " + ", ".join(
        f"{cmd} {calls / n:+.2f} {us / n:+.1f}" for cmd, (calls, us) in top
    ), flush=True)  # fmt: skip


def bench_release(url: str, state_dir: Path, chain: int) -> None:
    cfg = make_config(url, fresh_namespace("wf-release"), state_dir,
                      concurrency=RELEASE_CONCURRENCY)  # fmt: skip
    engine = client_engine(cfg)
    try:
        ops = WorkflowOps(engine.ops)
        plan = ops.plan({"chain": [NOOP] * chain})
        ops.submit(engine.link.client, plan)
        trio.run(_run_until, cfg, engine, chain)
        pipe = engine.link.client.pipeline(transaction=False)
        for node in plan.nodes:
            pipe.hmget(engine.keys.job(node.row.id), ["started_at", "completed_at"])
        times = [(int(s), int(c)) for s, c in pipe.execute()]
    finally:
        engine.close()
    gaps = [child[0] - parent[1] for parent, child in itertools.pairwise(times)]
    emit(
        "release_p50",
        quantile(gaps, 0.50),
        "ms",
        f"{len(gaps)} edges: parent completed -> child started",
    )
    emit("release_p99", quantile(gaps, 0.99), "ms", "Redis ms clock: each end floored")
    emit("release_max", max(gaps), "ms")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--nodes", type=int)
    p.add_argument("--phases", default="submit,drain,release")
    p.add_argument("--runs", type=int, default=3, help="interleaved drain pairs (median)")
    a = p.parse_args(argv)
    n = a.nodes or (QUICK_NODES if a.quick else DEFAULT_NODES)
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        assert server.url.startswith(f"redis://{LOOPBACK}:")
        print(f"# workflows: {n} nodes; load average {_load()}")
        state = Path(tmp) / "state"
        phases = a.phases.split(",")
        if "submit" in phases:
            bench_submit(server.url, state, n)
        if "drain" in phases:
            bench_drain(server.url, state, n, a.runs)
        if "release" in phases:
            bench_release(server.url, state, CHAIN if not a.quick else 100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
