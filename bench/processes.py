"""Drain with `[daemon] processes` = 1 vs 2 vs …: real `fleetd run` against one Redis.

Owns: a throwaway redis-server on a free 127.0.0.1 port (tests/redis_server.py; never
the machine's Redis on 6379); for each process count, a fresh namespace holding N no-op
jobs enqueued in bulk *before* the daemon starts, then `fleetd run --roles worker
--processes P` (job log lines off, the given concurrency per process), timed from the
first completion to the last (so start-up is not counted), polling the completed count
every POLL seconds.

bench/throughput.py measures one in-process daemon; this one measures the supervisor
and its children as an operator runs them, every process and Redis on this machine.

Prints one `name: value unit` line per figure; `#` lines say how (with the load average
before and after: other work on the machine shows there).
Run: `.venv/bin/python bench/processes.py [--jobs N] [--processes 1,2] [--concurrency C]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from redis_server import RedisServer

from fleetd.config import Config
from fleetd.engine import Engine

DEFAULT_JOBS = 20_000
# 50 slots per process: enough that a no-op drain is bound by the CPU, not by slots.
DEFAULT_CONCURRENCY = 50
# Polling the completed count: 20 ms is <0.5% of a multi-second drain.
POLL = 0.02
# Bulk enqueue in chunks of this many (one pipelined round trip each).
CHUNK = 1000
TIMEOUT = 600.0


def engine_for(url: str, namespace: str, state: Path) -> Engine:
    cfg = Config.default()
    cfg = dataclasses.replace(
        cfg,
        redis=dataclasses.replace(cfg.redis, url=url, namespace=namespace),
        daemon=dataclasses.replace(cfg.daemon, state_dir=str(state)),
    )
    eng = Engine.build(cfg, daemon=True)
    for script in eng.scripts.all():
        script.load(eng.link.client)
    return eng


def completed(engine: Engine) -> int:
    return int(engine.link.run_sync(engine.ops.stats)["completed"])


def drain(server: RedisServer, workdir: Path, processes: int, a: argparse.Namespace) -> None:
    namespace = f"bench-p{processes}-{os.urandom(3).hex()}"
    state = workdir / f"state-{processes}"
    engine = engine_for(server.url, namespace, state)
    try:
        for start in range(0, a.jobs, CHUNK):
            n = min(CHUNK, a.jobs - start)
            rows = engine.ops.prepare_many([{"type": "noop", "data": {}}] * n)
            engine.link.run_sync(engine.ops.enqueue_rows, rows)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETD_")}
        env |= {
            "FLEETD_CONFIG": str(Path(__file__).resolve().parent.parent / "tests" / "empty.toml"),
            "FLEETD_REDIS_URL": server.url,
            "FLEETD_REDIS_NAMESPACE": namespace,
            "FLEETD_DAEMON_STATE_DIR": str(state),
            "FLEETD_DAEMON_LOG_LEVEL": "warning",
            "FLEETD_DAEMON_LOG_JOBS": "false",
            "FLEETD_WORKER_CONCURRENCY": str(a.concurrency),
        }
        load_before = os.getloadavg()[0]
        log = (workdir / f"daemon-{processes}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleetd.cli", "run", "--roles", "worker",
             "--processes", str(processes)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + TIMEOUT
            while (done := completed(engine)) == 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"daemon did not start; see {log.name}")
                time.sleep(POLL)
            t0, first = time.monotonic(), done
            while (done := completed(engine)) < a.jobs:
                if time.monotonic() > deadline:
                    raise SystemExit(f"drain timed out at {done}/{a.jobs}")
                time.sleep(POLL)
            wall = time.monotonic() - t0
        finally:
            proc.terminate()
            proc.wait(30)
        rate = (a.jobs - first) / wall
        print(f"# processes {processes}: {a.jobs} noop jobs, concurrency {a.concurrency} "
              f"per process, cpus {os.cpu_count()}, load average {load_before:.2f} before, "
              f"{os.getloadavg()[0]:.2f} after")  # fmt: skip
        print(f"drain_processes_{processes}: {rate:,.0f} jobs/s")
    finally:
        engine.link.client.eval(
            "for _, k in ipairs(redis.call('keys', ARGV[1])) do redis.call('del', k) end",
            0, f"fleetd:{{{namespace}}}:*",
        )  # fmt: skip
        engine.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--jobs", type=int, default=DEFAULT_JOBS)
    p.add_argument("--processes", default="1,2", help="comma-separated counts (1,2)")
    p.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetd-processes-bench-") as tmp:
        workdir = Path(tmp)
        with RedisServer(workdir / "redis") as server:
            for count in (int(c) for c in a.processes.split(",")):
                drain(server, workdir, count, a)


if __name__ == "__main__":
    main()
