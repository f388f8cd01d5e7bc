"""Scale-out of one namespace's queues: three named queues drained from one Redis
primary versus from a 3-primary Redis Cluster, with and without `[queues] own_slot`.

Without `own_slot` every queue of a namespace shares the namespace's hash tag, so a
Cluster puts them all on one primary; with it each queue's keys carry `{ns/queue}` and
may land on a primary of their own. Phases (fresh servers on loopback each,
tests/redis_topology.py; three `fleetd run --roles worker` daemons, each serving the
three queues, concurrency 50, claim_batch 100):

- `one_primary_own_slots`: the queues with their own slots, all on one redis-server;
- `cluster_shared_slot`: the queues without `own_slot` on a 3-primary cluster (all on
  the namespace's primary: what a cluster gave one namespace before);
- `cluster_own_slots`: the queues with their own slots on the cluster, each on another
  primary (queue names picked with CLUSTER KEYSLOT).

N jobs per queue (`noop`, or `noop` sleeping `--sleep-ms` in the handler: a job with a
blocking wait) are enqueued before the daemons start; the rate is all jobs over the span
from the first completion to the last (Redis time; one clock on loopback).

    .venv/bin/python bench/cluster_queues.py            # N = 20,000 per queue
    .venv/bin/python bench/cluster_queues.py --quick    # N = 3,000

Prints one `name: value unit` line per figure, the CPU seconds of the daemons and the
servers, and the load average before and after (see bench/README.md on what a 2-core
machine can show).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cluster as cluster_bench
from cluster import completed, redis_cpu
from daemons import Fleet, cpu_seconds
from redis_server import RedisServer
from redis_topology import LocalCluster
from throughput import client_engine, emit, loadavg, make_config

DAEMONS = 3
ENQUEUE_CHUNK = 1000
TIMEOUT = 600.0
NAMESPACE = "bench-q"


def spread_queues(cluster: LocalCluster, namespace: str, count: int) -> list[str]:
    """`count` queue names whose own slots fall on `count` different primaries."""
    names = (f"q{n}" for n in range(10_000))
    return cluster.spread(lambda name: f"fleetd:{{{namespace}/{name}}}:queue", names, count)


def daemon_env(url: str, queues: list[str], own_slot: bool, state: Path) -> dict[str, str]:
    return cluster_bench.daemon_env(
        url, NAMESPACE, state, FLEETD_WORKER_QUEUES=",".join(queues),
        FLEETD_QUEUES_OWN_SLOT=",".join(queues) if own_slot else "",
    )  # fmt: skip


def run_phase(
    name: str, url: str, queues: list[str], own_slot: bool, n: int, sleep_ms: int, work: Path
) -> float:
    with ExitStack() as stack:
        cfg = make_config(url, NAMESPACE, work / f"client-{name}")
        if own_slot:
            cfg = replace(cfg, queues=replace(cfg.queues, own_slot=tuple(queues)))
        engine = client_engine(cfg)
        stack.callback(engine.close)
        data = {"sleep_ms": sleep_ms} if sleep_ms else {}
        for queue in queues:
            for start in range(0, n, ENQUEUE_CHUNK):
                size = min(ENQUEUE_CHUNK, n - start)
                req = {"type": "noop", "queue": queue, "data": data}
                rows = engine.ops.prepare_many([req] * size)
                engine.link.run_sync(engine.ops.enqueue_rows, rows)
        spaces = [s.keys for s in engine.link.run_sync(engine.spaces.known)]
        fleet = Fleet(work / f"daemons-{name}")
        stack.callback(fleet.close)
        procs = []
        for d in range(DAEMONS):
            env = daemon_env(url, queues, own_slot, work / f"state-{name}-{d}")
            procs.append(fleet.start(env, "--roles", "worker", ready=False, name=f"d{d}"))
        for proc in procs:
            proc.wait_ready()
        total = n * len(queues)
        deadline = time.monotonic() + TIMEOUT
        while True:
            count, first, last = completed(engine, spaces)
            if count >= total:
                break
            if time.monotonic() > deadline:
                print(f"{name}: FAILED {count} of {total}")
                return 0.0
            time.sleep(0.1)
        daemon_cpu = sum(cpu_seconds(p.pid) for p in procs)
    rate = total / (max(1, last - first) / 1000)
    emit(name, rate, "jobs/s", f"{len(queues)} queues, {n} jobs each, {DAEMONS} daemons")
    emit(f"{name}_daemon_cpu", daemon_cpu, "s")
    return rate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 3,000 per queue")
    parser.add_argument("--jobs", type=int, default=0, help="jobs per queue")
    parser.add_argument("--sleep-ms", type=int, default=0, help="each job sleeps this long")
    args = parser.parse_args(argv)
    n = args.jobs or (3_000 if args.quick else 20_000)
    print(f"cores: {os.cpu_count()}; load average before: {loadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fleetd-bench-queues-") as tmp:
        work = Path(tmp)
        with LocalCluster(work / "cluster-probe", primaries=3) as probe:
            queues = spread_queues(probe, NAMESPACE, 3)
        with RedisServer(work / "single") as single:
            one = run_phase("one_primary_own_slots", single.url, queues, True, n,
                            args.sleep_ms, work)  # fmt: skip
            emit("one_primary_own_slots_redis_cpu", redis_cpu([single]), "s")
        with LocalCluster(work / "cluster-shared", primaries=3) as cluster:
            shared = run_phase("cluster_shared_slot", cluster.url, queues, False, n,
                               args.sleep_ms, work)  # fmt: skip
            emit("cluster_shared_slot_redis_cpu", redis_cpu(cluster.nodes), "s")
        with LocalCluster(work / "cluster-own", primaries=3) as cluster:
            own = run_phase("cluster_own_slots", cluster.url, queues, True, n,
                            args.sleep_ms, work)  # fmt: skip
            emit("cluster_own_slots_redis_cpu", redis_cpu(cluster.nodes), "s")
    if one and shared and own:
        emit("cluster_own_slots_vs_one_primary", own / one, "x")
        emit("cluster_own_slots_vs_cluster_shared_slot", own / shared, "x")
    print(f"load average after: {loadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
