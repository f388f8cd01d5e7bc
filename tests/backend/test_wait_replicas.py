"""`[redis] wait_replicas`: an enqueue is answered only once that many replicas hold it
(WAIT), against a real primary and replica; with the replica gone it is refused as
NotReplicated after `wait_timeout` (the job is stored: a retry with its idempotency key
finds it)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from redis_server import HOST, RedisServer, RedisServerFactory
from redis_topology import LocalCluster, wait_until

from fleetd.api.context import api_redis_timeout
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.errors import NotReplicated
from fleetd.schedules.store import ScheduleOps
from fleetd.workflows.store import WorkflowOps

CLUSTER_ARGS = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]


def wait_for_link(replica_port: int, primary: RedisServer, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = primary.command("INFO", "replication")
        if isinstance(info, bytes) and b"state=online" in info:
            return
        time.sleep(0.05)
    raise AssertionError(f"replica on {replica_port} never connected")


def test_enqueue_waits_for_a_replica_and_refuses_without_one(
    own_redis: RedisServerFactory, config: Config
) -> None:
    primary = own_redis()
    replica = own_redis(extra_args=("--replicaof", "127.0.0.1", str(primary.port)))
    wait_for_link(replica.port, primary)
    redis = dataclasses.replace(config.redis, url=primary.url, wait_replicas=1, wait_timeout=2.0)
    engine = Engine.build(dataclasses.replace(config, redis=redis), daemon=True)
    try:
        for script in engine.scripts.all():
            script.load(engine.link.client)
        ops = engine.ops
        [res] = engine.link.run_sync(ops.enqueue_rows, ops.prepare_many([{"type": "noop"}]))
        # Answered only after the replica had it: it is there now.
        reader = replica.connect()
        assert reader.command("EXISTS", engine.keys.job(res.job_id)) == 1
        reader.close()
        replica.stop()
        row = ops.prepare({"type": "noop", "idempotency_key": "k1"})
        with pytest.raises(NotReplicated) as info:
            engine.link.run_sync(ops.enqueue_rows, [row])
        assert (info.value.acked, info.value.wanted) == (0, 1)
        stored = engine.link.client.get(engine.keys.idem(None, "k1"))
        assert stored == row.id  # stored on the primary all the same
        # Every door that adds jobs is acknowledged so: a workflow, a schedule's run-now.
        client = engine.link.client
        flows = WorkflowOps(ops)
        plan = flows.plan({"chain": [{"type": "noop"}, {"type": "noop"}]})
        with pytest.raises(NotReplicated):
            flows.submit(client, plan)
        assert client.exists(engine.keys.workflow(plan.workflow_id))  # stored all the same
        schedules = ScheduleOps.from_engine(engine)
        made = schedules.add(client, {"name": "t", "job_type": "noop", "schedule": "1h"})
        with pytest.raises(NotReplicated):
            schedules.run_now(client, made.id)
    finally:
        engine.close()


def test_the_api_waits_a_wait_out_before_its_socket_times_out(config: Config) -> None:
    assert api_redis_timeout(config) == config.http.redis_timeout  # no WAIT: as configured
    waits = dataclasses.replace(config.redis, wait_replicas=1, wait_timeout=2.0)
    assert api_redis_timeout(dataclasses.replace(config, redis=waits)) == 3.0
    short = dataclasses.replace(config.redis, wait_replicas=1, wait_timeout=0.1)
    assert api_redis_timeout(dataclasses.replace(config, redis=short)) == 1.5


def test_on_a_cluster_a_write_is_acknowledged_by_its_own_primarys_replica_only(
    tmp_path: Path, config: Config
) -> None:
    """Two primaries, a replica of the first only: a job stored on the second is not
    acknowledged, however many replicas the first has (a Cluster client's plain WAIT
    would ask every primary and add their answers)."""
    with LocalCluster(tmp_path / "cluster", primaries=2) as cluster:
        first, second = cluster.nodes
        with RedisServer(tmp_path / "replica", extra_args=CLUSTER_ARGS) as replica:
            replica.command("CLUSTER", "MEET", HOST, first.port)
            node_id = first.command("CLUSTER", "MYID")
            assert isinstance(node_id, bytes)

            def joined() -> bool:
                nodes = replica.command("CLUSTER", "NODES")
                return isinstance(nodes, bytes) and nodes.count(b"master") == 2

            wait_until("the replica to meet the cluster", joined)
            replica.command("CLUSTER", "REPLICATE", node_id.decode())
            wait_for_link(replica.port, first)
            namespace, queue = on_two_primaries(cluster, first, second)
            cfg = dataclasses.replace(
                config,
                redis=dataclasses.replace(
                    config.redis,
                    url=cluster.url,
                    namespace=namespace,
                    wait_replicas=1,
                    wait_timeout=0.5,
                ),
                queues=dataclasses.replace(config.queues, own_slot=(queue,)),
            )
            engine = Engine.build(cfg, daemon=True)
            try:
                ops = engine.ops
                [done] = engine.link.run_sync(
                    ops.enqueue_rows, ops.prepare_many([{"type": "noop"}])
                )
                assert done.status == "pending"  # on the first primary: its replica has it
                with pytest.raises(NotReplicated) as info:
                    engine.link.run_sync(
                        ops.enqueue_rows, ops.prepare_many([{"type": "noop", "queue": queue}])
                    )
                assert (info.value.acked, info.value.wanted) == (0, 1)
            finally:
                engine.close()


def on_two_primaries(
    cluster: LocalCluster, first: RedisServer, second: RedisServer
) -> tuple[str, str]:
    """A namespace on `first` and a queue whose own slot is on `second`."""
    for n in range(1000):
        namespace = f"w{n}"
        if cluster.node_for(f"fleetd:{{{namespace}}}:seq") is not first:
            continue
        for q in range(1000):
            if cluster.node_for(f"fleetd:{{{namespace}/q{q}}}:seq") is second:
                return namespace, f"q{q}"
    raise AssertionError("no namespace and queue on the two primaries")
