"""Scale-out benchmark: the same daemons draining their namespaces from one Redis primary
versus from a 3-primary Redis Cluster that gives each namespace its own primary.

Every key of a namespace shares one hash tag, so a namespace lives on one primary and a
Cluster spreads *namespaces*, not one namespace's jobs. Phases (each with fresh servers
on loopback, tests/redis_topology.py; daemons are `fleetd run --roles worker`
subprocesses, concurrency 50, claim_batch 100):

- `one_primary_1ns`: one namespace, one daemon, one redis-server (the baseline);
- `one_primary_3ns`: three namespaces on one redis-server, one daemon each;
- `cluster_3ns`: three namespaces on a 3-primary cluster, each on its own primary
  (checked with CLUSTER KEYSLOT), one daemon each.

N noop jobs per namespace are enqueued before the daemons start; the rate is all jobs
over the span between the first and the last completion (Redis time, one clock on
loopback), so daemon start-up is not counted.

    .venv/bin/python bench/cluster.py            # N = 20,000 per namespace
    .venv/bin/python bench/cluster.py --quick    # N = 3,000

Prints one `name: value unit` line per figure, the CPU seconds of the daemons and of
the redis-servers, and the load average before and after: on a machine with fewer cores
than daemons + servers, the processes share the cores and the cluster cannot show its
gain (see bench/README.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemons import Fleet, cpu_seconds
from redis_server import RedisServer
from redis_topology import LocalCluster
from throughput import client_engine, emit, loadavg, make_config

from fleetd.backend.keys import Keys
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus

CONCURRENCY = 50
CLAIM_BATCH = 100
ENQUEUE_CHUNK = 1000
TIMEOUT = 600.0
EMPTY_CONFIG = Path(__file__).resolve().parent.parent / "tests" / "empty.toml"


def spread_namespaces(cluster: LocalCluster, count: int, tag: str) -> list[str]:
    """`count` namespaces whose hash tags fall on `count` different primaries."""
    names = (f"bench-{tag}-{n}" for n in range(10_000))
    return cluster.spread(lambda name: f"fleetd:{{{name}}}:queue", names, count)


def daemon_env(url: str, namespace: str, state: Path, **settings: str) -> dict[str, str]:
    """A worker daemon's environment; `settings` are more FLEETD_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETD_")}
    env.update(
        FLEETD_CONFIG=str(EMPTY_CONFIG),
        FLEETD_REDIS_URL=url,
        FLEETD_REDIS_NAMESPACE=namespace,
        FLEETD_DAEMON_STATE_DIR=str(state),
        FLEETD_WORKER_CONCURRENCY=str(CONCURRENCY),
        FLEETD_WORKER_CLAIM_BATCH=str(CLAIM_BATCH),
        **settings,
    )
    return env


def completed(engine: Engine, spaces: Sequence[Keys] | None = None) -> tuple[int, int, int]:
    """(count, first, last completion in Redis ms) of `engine`'s namespace, or over the
    key spaces `spaces`."""
    c = engine.link.client
    count, first, last = 0, 0, 0
    for keys in spaces or [engine.keys]:
        key = keys.status(JobStatus.COMPLETED)
        n = int(c.zcard(key))
        if not n:
            continue
        lo = int(c.zrange(key, 0, 0, withscores=True)[0][1])
        hi = int(c.zrange(key, -1, -1, withscores=True)[0][1])
        count += n
        first = lo if not first else min(first, lo)
        last = max(last, hi)
    return count, first, last


def run_phase(name: str, url: str, namespaces: list[str], n: int, work: Path) -> float:
    engines = []
    with ExitStack() as stack:
        for ns in namespaces:
            engine = client_engine(make_config(url, ns, work / f"client-{ns}"))
            stack.callback(engine.close)
            engines.append(engine)
            for start in range(0, n, ENQUEUE_CHUNK):
                size = min(ENQUEUE_CHUNK, n - start)
                rows = engine.ops.prepare_many([{"type": "noop"}] * size)
                engine.link.run_sync(engine.ops.enqueue_rows, rows)
        fleet = Fleet(work / f"daemons-{name}")
        stack.callback(fleet.close)
        # Started together (not one after another once each is ready), so the span
        # from the first completion to the last is not mostly start-up skew.
        procs = [
            fleet.start(daemon_env(url, ns, work / f"state-{ns}"), "--roles", "worker", ready=False)
            for ns in namespaces
        ]
        for proc in procs:
            proc.wait_ready()
        deadline = time.monotonic() + TIMEOUT
        while True:
            figures = [completed(e) for e in engines]
            if all(count >= n for count, _, _ in figures):
                break
            if time.monotonic() > deadline:
                print(f"{name}: FAILED {[f[0] for f in figures]} of {n} each")
                return 0.0
            time.sleep(0.1)
        daemon_cpu = sum(cpu_seconds(p.pid) for p in procs)
    first = min(f[1] for f in figures)
    last = max(f[2] for f in figures)
    rate = n * len(namespaces) / (max(1, last - first) / 1000)
    emit(name, rate, "jobs/s", f"{len(namespaces)} daemon(s), {n} jobs each")
    slowest = max(f[2] - f[1] for f in figures) / 1000
    emit(f"{name}_slowest_namespace", n / max(slowest, 0.001), "jobs/s", "its own drain span")
    emit(f"{name}_daemon_cpu", daemon_cpu, "s")
    return rate


def redis_cpu(servers: Sequence[RedisServer]) -> float:
    total = 0.0
    for server in servers:
        info = server.command("INFO", "cpu")
        assert isinstance(info, bytes)
        fields = dict(line.split(":", 1) for line in info.decode().splitlines() if ":" in line)
        total += float(fields["used_cpu_sys"]) + float(fields["used_cpu_user"])
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 3,000 per namespace")
    parser.add_argument("--jobs", type=int, default=0, help="jobs per namespace")
    args = parser.parse_args(argv)
    n = args.jobs or (3_000 if args.quick else 20_000)
    print(f"cores: {os.cpu_count()}; load average before: {loadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fleetd-bench-cluster-") as tmp:
        work = Path(tmp)
        with RedisServer(work / "single-1") as single:
            base = run_phase("one_primary_1ns", single.url, ["bench-one"], n, work)
            emit("one_primary_1ns_redis_cpu", redis_cpu([single]), "s")
        with RedisServer(work / "single-3") as single:
            names = ["bench-a", "bench-b", "bench-c"]
            shared = run_phase("one_primary_3ns", single.url, names, n, work)
            emit("one_primary_3ns_redis_cpu", redis_cpu([single]), "s")
        with LocalCluster(work / "cluster", primaries=3) as cluster:
            names = spread_namespaces(cluster, 3, "spread")
            spread = run_phase("cluster_3ns", cluster.url, names, n, work)
            emit("cluster_3ns_redis_cpu", redis_cpu(cluster.nodes), "s")
    if base and shared and spread:
        emit("cluster_3ns_vs_one_primary_1ns", spread / base, "x")
        emit("cluster_3ns_vs_one_primary_3ns", spread / shared, "x")
    print(f"load average after: {loadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
