"""Drain benchmark with a handler that makes one blocking Redis call, fleetd vs BullMQ.

Owns (issue #15): a private redis-server (tests/redis_server.py: a free 127.0.0.1 port,
AOF off), then, in interleaved rounds, N pre-enqueued jobs drained by 2 worker processes
of each system, every job doing one INCR on the handler's own Redis connection:

- `fleetd_thread`: `await trio.to_thread.run_sync(client.incr, key)` (what
  docs/PLUGINS.md told plugin authors before `ctx.run_blocking`);
  `fleetd_thread_nolog`: the same with `[daemon] log_jobs = false`;
- `fleetd_batched`: `await ctx.run_blocking(client.incr, key)` (the batched executor);
- `fleetd_redis`: `await ctx.redis.incr(key)` (the pipelined facade; its own pool);
- `fleetd_inline`: the INCR on the trio thread (a diagnostic: blocks the event loop);
- `fleetd_noop`: the built-in `noop` job, for reference;
- `bullmq_c50`, `bullmq_c200`: BullMQ workers (Node, bench/drain_blocking.mjs) at
  concurrency 50 and 200, the INCR through ioredis.

fleetd runs as 2 `fleetd run --roles worker` processes against the same Redis, at
`--concurrency` (50), with the bench's handlers registered as an ordinary plugin
through an entry point the bench writes to a scratch folder. `--baseline DIR` also runs
the fleetd systems from another checkout (one with `ctx.run_blocking` and `ctx.redis`,
e.g. `git archive main`), as `base_…`, in the same rounds: before and after in one run.

A figure is N / (last completion − first start), both Redis millisecond timestamps
(fleetd: the job hash's started_at and the completed set's score; BullMQ: processedOn
and the completed set's score), so process start-up is left out for both. Also printed:
worker and redis-server CPU per job (between the first and the last completion), the
largest worker process's peak resident set (VmHWM, at the end of the drain) and
the machine's load average. Run:

    .venv/bin/python bench/drain_blocking.py [--rounds 3] [--jobs 20000] [--quick]
        [--node-modules DIR] [--baseline DIR] [--systems a,b] [--profile DIR]

BullMQ comes from --node-modules, else it is installed once with npm into
$TMPDIR/fleetd-bench-node (never into the repository).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from fleetd import HandlerDefaults, JobContext, JobHandler, hookimpl

BENCH = Path(__file__).resolve().parent
WORKER_MJS = BENCH / "drain_blocking.mjs"
# The handlers find their own Redis here (not a FLEETD_ variable: fleetd rejects
# unknown ones).
URL_VAR = "DRAIN_BENCH_REDIS_URL"
DEFAULT_JOBS = 20_000
QUICK_JOBS = 2_000
DEFAULT_ROUNDS = 3
PROCESSES = 2
# fleetd's concurrency per process (the run; BullMQ's c50 is its equal).
CONCURRENCY = 50
# Completed counts are polled this often; the figure does not depend on it.
POLL = 0.05
# A drain slower than this is a hang: stop and say so.
DRAIN_TIMEOUT = 300.0
# Workers get this long to come up (a cold Python start with all plugins: ~1-2 s).
READY_TIMEOUT = 60.0
# Job hashes read to find the first start (jobs start in roughly enqueue order).
FIRST_SAMPLE = 500
NODE_SCRATCH = Path(tempfile.gettempdir()) / "fleetd-bench-node"


# -- the handlers (loaded by the fleetd workers as a plugin) ------------------------------

_clients: dict[str, Any] = {}


def _redis() -> Any:
    """The handler's own connection pool, one per worker process (not fleetd's)."""
    if not _clients:
        import redis

        _clients["own"] = redis.Redis.from_url(os.environ[URL_VAR])
    return _clients["own"]


class IncrThread(JobHandler):
    job_type = "bench_incr_thread"
    defaults = HandlerDefaults()

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        await trio.to_thread.run_sync(_redis().incr, data["key"])
        return {}


class IncrBatched(JobHandler):
    job_type = "bench_incr_batched"
    defaults = HandlerDefaults()

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        await ctx.run_blocking(_redis().incr, data["key"])
        return {}


class IncrPipelined(JobHandler):
    job_type = "bench_incr_redis"
    defaults = HandlerDefaults()

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        await ctx.redis.incr(data["key"])
        return {}


class IncrInline(JobHandler):
    job_type = "bench_incr_inline"
    defaults = HandlerDefaults()

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        _redis().incr(data["key"])  # diagnostic only: blocks the trio thread
        return {}


@hookimpl
def fleetd_handlers() -> list[JobHandler]:
    return [IncrThread(), IncrBatched(), IncrPipelined(), IncrInline()]


# -- the systems --------------------------------------------------------------------------


@dataclass(frozen=True)
class System:
    name: str
    job_type: str  # fleetd job type, or "bullmq"
    concurrency: int = CONCURRENCY
    log_jobs: bool = True
    baseline: bool = False  # run from --baseline's checkout


SYSTEMS = (
    System("fleetd_thread", "bench_incr_thread"),
    System("fleetd_thread_nolog", "bench_incr_thread", log_jobs=False),
    System("fleetd_batched", "bench_incr_batched"),
    System("fleetd_redis", "bench_incr_redis"),
    System("fleetd_inline", "bench_incr_inline"),
    System("fleetd_noop", "noop"),
    System("bullmq_c50", "bullmq", concurrency=50),
    System("bullmq_c200", "bullmq", concurrency=200),
)


@dataclass
class Result:
    jobs_per_s: float
    worker_cpu_us: float  # per job, all worker processes
    redis_cpu_us: float  # per job
    load1: float
    peak_rss_mb: float  # the largest worker process's peak resident set (VmHWM)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a process, in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


class Bench:
    def __init__(self, args: argparse.Namespace, url: str, scratch: Path, modules: Path | None):
        import redis

        self.args = args
        self.url = url
        self.scratch = scratch
        self.modules = modules
        self.client: Any = redis.Redis.from_url(url, decode_responses=True)
        self.site = scratch / "site"
        self._write_entry_point()

    def _write_entry_point(self) -> None:
        """Register this file's handlers as a plugin of the worker processes: a dist-info
        on their PYTHONPATH, found like any installed plugin's."""
        info = self.site / "fleetd_bench_drain-1.0.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: fleetd-bench-drain\nVersion: 1.0\n"
        )
        (info / "entry_points.txt").write_text("[fleetd.plugins]\nbench_drain = drain_blocking\n")

    # -- fleetd -----------------------------------------------------------------------

    def _fleetd_env(self, code: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETD_")}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(code), str(code / "plugins"), str(BENCH), str(self.site)]
        )
        env[URL_VAR] = self.url
        return env

    def _enqueue_fleetd(self, system: System, namespace: str, key: str) -> None:
        from fleetd.config import Config
        from fleetd.engine import Engine
        from fleetd.jobs.handlers import HandlerRegistry
        from fleetd.plugins.noop import NoopHandler

        cfg = Config.default()
        cfg = dataclasses.replace(
            cfg,
            redis=dataclasses.replace(cfg.redis, url=self.url, namespace=namespace),
            daemon=dataclasses.replace(cfg.daemon, state_dir=str(self.scratch / "client")),
        )
        registry = HandlerRegistry()
        handlers: list[Any] = [NoopHandler(), *fleetd_handlers()]
        for handler in handlers:
            registry.register(handler, source="bench")
        engine = Engine.build(cfg, daemon=False, registry=registry)
        try:
            for script in engine.scripts.all():
                script.load(engine.link.client)
            data = {} if system.job_type == "noop" else {"key": key}
            rows = engine.ops.prepare_many([{"type": system.job_type, "data": data}] * self.n)
            engine.link.run_sync(engine.ops.enqueue_rows, rows)
        finally:
            engine.close()

    def _start_fleetd(self, system: System, namespace: str, run_dir: Path) -> list[Any]:
        code = self.args.baseline if system.baseline else BENCH.parent
        toml = run_dir / "fleetd.toml"
        toml.write_text(
            f'[daemon]\nstate_dir = "{run_dir / "state"}"\n'
            f"log_jobs = {'true' if system.log_jobs else 'false'}\n"
            f'[redis]\nurl = "{self.url}"\nnamespace = "{namespace}"\n'
            f"[worker]\nconcurrency = {system.concurrency}\n"
        )
        procs = []
        for i in range(PROCESSES):
            argv = [sys.executable, "-m", "fleetd.cli", "--config", str(toml), "run"]
            log = (run_dir / f"worker-{i}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [*argv, "--roles", "worker"],
                    env=self._fleetd_env(code),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        return procs

    # -- BullMQ -----------------------------------------------------------------------

    def _node(self, mode: str, *args: str) -> list[str]:
        assert self.modules is not None
        return ["node", str(WORKER_MJS), mode, "--modules", str(self.modules), "--url",
                self.url, *args]  # fmt: skip

    def _enqueue_bullmq(self, queue: str, key: str) -> None:
        argv = self._node("produce", "--queue", queue, "--jobs", str(self.n), "--key", key)
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)

    def _start_bullmq(self, system: System, queue: str, run_dir: Path) -> list[Any]:
        argv = self._node("work", "--queue", queue, "--concurrency", str(system.concurrency))
        return [
            subprocess.Popen(argv, stdout=(run_dir / f"worker-{i}.log").open("wb"))
            for i in range(PROCESSES)
        ]

    # -- one run ----------------------------------------------------------------------

    @property
    def n(self) -> int:
        jobs: int = self.args.jobs
        return jobs

    def run(self, system: System, *, profile: bool = False) -> Result | None:
        from fleetd.backend.keys import Keys

        self.client.flushall()
        key = f"bench:incr:{uuid.uuid4().hex[:8]}"
        run_dir = Path(tempfile.mkdtemp(prefix=system.name + "-", dir=self.scratch))
        if system.job_type == "bullmq":
            queue = f"drain{uuid.uuid4().hex[:6]}"
            self._enqueue_bullmq(queue, key)
            completed_key = f"bull:{queue}:completed"
            sample = [f"bull:{queue}:{i}" for i in range(1, FIRST_SAMPLE + 1)]
            first_start = self._first(sample, "processedOn")
            procs = self._start_bullmq(system, queue, run_dir)
        else:
            namespace = f"drain{uuid.uuid4().hex[:6]}"
            self._enqueue_fleetd(system, namespace, key)
            keys = Keys(namespace)
            completed_key = keys.status("completed")
            job_ids = self.client.zrange(keys.status("pending"), 0, FIRST_SAMPLE - 1)
            first_start = self._first([keys.job(i) for i in job_ids], "started_at")
            procs = self._start_fleetd(system, namespace, run_dir)
        profiler = None
        try:
            began = time.monotonic()
            while (done := self.client.zcard(completed_key)) == 0:
                self._check(procs, began)
            cpu0 = sum(cpu_seconds(p.pid) for p in procs)
            rcpu0, done0 = redis_cpu(self.client), done
            if profile:
                profiler = self._profile(system, procs[0].pid)
            while (done := self.client.zcard(completed_key)) < self.n:
                self._check(procs, began)
            cpu1 = sum(cpu_seconds(p.pid) for p in procs)
            rcpu1 = redis_cpu(self.client)
            rss = max(peak_rss_mb(p.pid) for p in procs)
        finally:
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(30)
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(60)
        start_ms = first_start()
        [(_, last_ms)] = self.client.zrevrange(completed_key, 0, 0, withscores=True)
        if system.job_type != "noop" and int(self.client.get(key) or 0) < self.n:
            print(f"# {system.name}: FAILED the counter is {self.client.get(key)} < {self.n}")
            return None
        shutil.rmtree(run_dir, ignore_errors=True)
        per = max(1, self.n - done0)
        return Result(
            self.n / max(0.001, (last_ms - start_ms) / 1000),
            (cpu1 - cpu0) / per * 1e6,
            (rcpu1 - rcpu0) / per * 1e6,
            os.getloadavg()[0],
            rss,
        )

    def _first(self, keys: list[str], field: str) -> Any:
        """A function giving the earliest `field` (ms) among the sampled job hashes."""

        def first() -> int:
            pipe = self.client.pipeline(transaction=False)
            for k in keys:
                pipe.hget(k, field)
            return min(int(v) for v in pipe.execute() if v)

        return first

    def _check(self, procs: Sequence[Any], began: float) -> None:
        time.sleep(POLL)
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"worker {p.args[:4]} exited with {p.returncode}")
        if time.monotonic() - began > DRAIN_TIMEOUT:
            raise RuntimeError(f"drain did not finish in {DRAIN_TIMEOUT:.0f} s")

    def _profile(self, system: System, pid: int) -> Any:
        """py-spy on one worker from its first completion to the end of the drain."""
        out = Path(self.args.profile) / f"{system.name}.txt"
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        argv = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "250",
                "--nonblocking", "--gil", "-o", str(out)]  # fmt: skip
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def node_modules(args: argparse.Namespace) -> Path:
    """bullmq + ioredis: --node-modules, else installed once into a scratch folder."""
    if args.node_modules:
        return Path(args.node_modules)
    target = NODE_SCRATCH / "node_modules"
    if not (target / "bullmq").is_dir():
        NODE_SCRATCH.mkdir(parents=True, exist_ok=True)
        print(f"# installing bullmq@6 ioredis into {NODE_SCRATCH} (first use)", flush=True)
        subprocess.run(
            ["npm", "install", "--silent", "--prefix", str(NODE_SCRATCH), "bullmq@6", "ioredis"],
            check=True,
        )
    return target


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--jobs", type=int, default=None, help=f"jobs per run ({DEFAULT_JOBS})")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_JOBS} jobs, one round")
    p.add_argument("--rounds", type=int, default=None, help=f"interleaved ({DEFAULT_ROUNDS})")
    p.add_argument("--systems", default="", help="comma-separated subset (default: all)")
    p.add_argument("--node-modules", default="", help="a node_modules with bullmq, ioredis")
    p.add_argument("--baseline", type=Path, default=None, help="another fleetd checkout")
    p.add_argument("--profile", default="", help="py-spy raw profiles (an extra round) here")
    args = p.parse_args(argv)
    args.jobs = args.jobs or (QUICK_JOBS if args.quick else DEFAULT_JOBS)
    args.rounds = args.rounds or (1 if args.quick else DEFAULT_ROUNDS)
    systems = list(SYSTEMS)
    if args.baseline:
        systems += [
            System("base_" + s.name.removeprefix("fleetd_"), s.job_type, s.concurrency,
                   s.log_jobs, baseline=True)
            for s in SYSTEMS
            if s.job_type != "bullmq"
        ]  # fmt: skip
    if args.systems:
        wanted = set(args.systems.split(","))
        if unknown := wanted - {s.name for s in systems}:
            p.error(f"unknown system(s) {', '.join(sorted(unknown))}")
        systems = [s for s in systems if s.name in wanted]
    args.system_list = systems
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(BENCH.parent / "tests"))  # the test suite's redis-server helper
    from redis_server import RedisServer

    systems: list[System] = args.system_list
    modules = node_modules(args) if any(s.job_type == "bullmq" for s in systems) else None
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    results: dict[str, list[Result]] = {s.name: [] for s in systems}
    print(
        f"# drain_blocking: jobs={args.jobs} rounds={args.rounds} processes={PROCESSES} "
        f"cores={os.cpu_count()} python={sys.version.split()[0]} trio={trio.__version__} "
        f"load={' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="fleetd-bench-drain-") as tmp:
        scratch = Path(tmp)
        with RedisServer(scratch / "redis", aof=False) as server:
            if not server.url.startswith("redis://127.0.0.1:"):
                raise SystemExit(f"refusing to benchmark a non-loopback Redis: {server.url}")
            bench = Bench(args, server.url, scratch, modules)
            for rnd in range(args.rounds):
                for system in systems:
                    r = bench.run(system)
                    if r is None:
                        continue
                    results[system.name].append(r)
                    print(
                        f"round {rnd + 1} {system.name}: {r.jobs_per_s:.0f} jobs/s  "
                        f"(worker CPU {r.worker_cpu_us:.0f} us/job, Redis CPU "
                        f"{r.redis_cpu_us:.0f} us/job, peak RSS {r.peak_rss_mb:.0f} MB, "
                        f"load {r.load1:.2f})",
                        flush=True,
                    )
            if args.profile:  # an extra round, not counted: py-spy slows its target
                for system in systems:
                    if system.job_type != "bullmq":
                        bench.run(system, profile=True)
                print(f"# py-spy profiles (raw, --gil) in {args.profile}")
    summarize(results)
    return 0


def summarize(results: dict[str, list[Result]]) -> None:
    medians = {k: statistics.median(r.jobs_per_s for r in v) for k, v in results.items() if v}
    bullmq = medians.get("bullmq_c50")
    for name, value in medians.items():
        rs = results[name]
        ratio = f", {value / bullmq:.2f}x bullmq_c50" if bullmq else ""
        runs = "/".join(f"{r.jobs_per_s:.0f}" for r in rs)
        cpu = statistics.median(r.worker_cpu_us for r in rs)
        rcpu = statistics.median(r.redis_cpu_us for r in rs)
        rss = max(r.peak_rss_mb for r in rs)
        print(
            f"{name}: {value:.0f} jobs/s  (median of {runs}{ratio}; worker CPU {cpu:.0f} "
            f"us/job, Redis {rcpu:.0f} us/job; peak RSS per process {rss:.0f} MB)"
        )
    print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(json.dumps({k: round(v) for k, v in medians.items()}))


if __name__ == "__main__":
    sys.exit(main())
