"""fleetd daemons (real `fleetd run` subprocesses) on a real 3-primary Redis Cluster on
loopback (`redis+cluster://`): jobs enqueued over HTTP and the CLI drain, a schedule
fires, events and stats add up; since every key of a namespace shares the hash tag
`{namespace}`, one namespace lives on one primary while several namespaces spread over
the primaries; and queues with a slot of their own (`[queues] own_slot`, hash tag
`{namespace/queue}`) spread one namespace's queues over the primaries, one daemon
claiming from each."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_client import PREFIX, SECRET, auth
from conftest import fleetd_env, make_config
from daemons import Fleet, cli_json, settings, wait_for
from redis_server import RedisServer
from redis_topology import LocalCluster

pytestmark = pytest.mark.slow

JOBS = 30


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster", primaries=3) as formed:
        yield formed


def key_pattern(namespace: str) -> str:
    return f"fleetd:{{{namespace}}}:*"


def namespaces_on_distinct_primaries(cluster: LocalCluster, count: int) -> list[str]:
    """`count` namespace names whose hash tags fall on `count` different primaries."""
    names = (f"ns{n}" for n in range(1000))
    return cluster.spread(lambda name: f"fleetd:{{{name}}}:queue", names, count)


def queues_on_other_primaries(cluster: LocalCluster, namespace: str) -> list[str]:
    """Two queue names whose own slots fall on the two primaries not holding `namespace`."""
    home = cluster.node_for(f"fleetd:{{{namespace}}}:queue")

    def key_of(name: str) -> str:
        return f"fleetd:{{{namespace}/{name}}}:queue"

    names = (f"q{n}" for n in range(1000) if cluster.node_for(key_of(f"q{n}")) is not home)
    return cluster.spread(key_of, names, 2)


def env_for(cluster: LocalCluster, namespace: str, state: Path) -> dict[str, str]:
    cfg = make_config(cluster.url, namespace, state)
    return fleetd_env(cfg) | {"FLEETD_AUTH_SECRET": SECRET, "FLEETD_WORKER_CONCURRENCY": "8"}


def events_of(node: RedisServer, namespace: str) -> list[dict[str, str]]:
    """The namespace's event stream, read straight from the node holding it."""
    reply = node.command("XRANGE", f"fleetd:{{{namespace}}}:events", "-", "+")
    assert isinstance(reply, list)
    out = []
    for entry in reply:
        assert isinstance(entry, list)
        fields = entry[1]
        assert isinstance(fields, list)
        text = [f.decode() if isinstance(f, bytes) else str(f) for f in fields]
        out.append(dict(zip(text[::2], text[1::2], strict=True)))
    return out


def drained(env: dict[str, str], count: int) -> bool:
    return bool(stats(env)["completed"] == count)


def stats(env: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = cli_json(env, "stats", "--json")["stats"]
    return body


def test_a_daemon_drains_http_and_cli_jobs_and_fires_a_schedule_on_a_cluster(
    cluster: LocalCluster, fleet: Fleet, tmp_path: Path
) -> None:
    [namespace] = namespaces_on_distinct_primaries(cluster, 1)
    state = tmp_path / "state"
    env = env_for(cluster, namespace, state)
    fleet.start(env)
    url = fleet.api_url(state)
    ids = []
    with httpx.Client(base_url=url, headers=auth(), timeout=10) as http:
        for n in range(JOBS):
            r = http.post(f"{PREFIX}/enqueue", json={"type": "noop", "data": {"n": n}})
            assert r.status_code == 201, r.text
            ids.append(r.json()["job_id"])
        bulk = [{"type": "noop", "data": {"n": JOBS + n}} for n in range(JOBS)]
        r = http.post(f"{PREFIX}/enqueue/bulk", json={"jobs": bulk})
        assert r.status_code == 201, r.text
        ids += [j["job_id"] for j in r.json()["jobs"]]
    cli = cli_json(env, "enqueue", "noop", "--data", '{"via": "cli"}', "--wait", "--json")
    assert cli["status"] == "completed", cli
    ids.append(cli["job"]["id"])
    made = cli_json(env, "schedules", "add", "tick", "--type", "noop", "--schedule", "1s",
                    "--json")  # fmt: skip
    schedule_id = made["scheduled_job"]["id"]

    def fired() -> bool:
        shown = cli_json(env, "schedules", "show", schedule_id, "--json")["scheduled_job"]
        return "last_run" in shown

    wait_for(fired, 20, "the schedule to fire", fleet.tails)
    total = len(ids)
    # Only the schedule adds jobs now: two more completed means it fired twice.
    wait_for(lambda: stats(env)["completed"] >= total + 2, 30, "every job to complete", fleet.tails)
    counts = stats(env)
    assert counts["failed"] == 0 and counts["pending"] + counts["processing"] <= 1, counts

    # Every job, event and schedule of the namespace sits on its one primary.
    home = cluster.node_for(f"fleetd:{{{namespace}}}:queue")
    assert cluster.keys_on(home, key_pattern(namespace))
    for node in cluster.nodes:
        if node is not home:
            assert cluster.keys_on(node, key_pattern(namespace)) == []
    events = events_of(home, namespace)
    completed = {e.get("job_id") for e in events if e.get("type") == "job.completed"}
    assert set(ids) <= completed
    enqueued = {e.get("job_id") for e in events if e.get("type") == "job.enqueued"}
    assert set(ids) <= enqueued


def test_namespaces_spread_over_the_primaries_each_whole_on_one(
    cluster: LocalCluster, fleet: Fleet, tmp_path: Path
) -> None:
    names = namespaces_on_distinct_primaries(cluster, 3)
    envs = [env_for(cluster, ns, tmp_path / f"state-{ns}") for ns in names]
    for n, env in enumerate(envs):
        fleet.start(env, "--roles", "worker", name=f"w{n}")
    for env in envs:
        for _ in range(3):
            cli_json(env, "enqueue", "noop", "--json")
    for env in envs:
        wait_for(functools.partial(drained, env, 3), 20, "the drain", fleet.tails)
    homes = [cluster.node_for(f"fleetd:{{{ns}}}:queue") for ns in names]
    assert len({node.port for node in homes}) == 3  # three namespaces, three primaries
    for ns, home in zip(names, homes, strict=True):
        slots = {cluster.keyslot(k) for k in cluster.keys_on(home, key_pattern(ns))}
        assert len(slots) == 1  # one hash tag: one slot
        for node in cluster.nodes:
            if node is not home:
                assert cluster.keys_on(node, key_pattern(ns)) == []
    # Each daemon's stats are its namespace's only (no aggregation across namespaces).
    assert [stats(env)["completed"] for env in envs] == [3, 3, 3]
    for env in envs:  # and each namespace's worker metrics count its own daemon's jobs
        assert cli_json(env, "workers", "--json")["metrics"]["jobs_processed"] == 3


def test_queues_with_their_own_slot_spread_one_namespace_over_the_primaries(
    cluster: LocalCluster, fleet: Fleet, tmp_path: Path
) -> None:
    [namespace] = namespaces_on_distinct_primaries(cluster, 1)
    q1, q2 = queues_on_other_primaries(cluster, namespace)
    state = tmp_path / "state"
    env = env_for(cluster, namespace, state) | settings(
        queues_own_slot=f"{q1},{q2}", worker_queues=f"default,{q1},{q2}"
    )
    fleet.start(env)
    url = fleet.api_url(state)
    ids: dict[str, list[str]] = {}
    with httpx.Client(base_url=url, headers=auth(), timeout=10) as http:
        for queue in ("default", q1, q2):
            bulk = [{"type": "noop", "queue": queue, "data": {"n": n}} for n in range(JOBS)]
            r = http.post(f"{PREFIX}/enqueue/bulk", json={"jobs": bulk})
            assert r.status_code == 201, r.text
            ids[queue] = [j["job_id"] for j in r.json()["jobs"]]
        wait_for(lambda: drained(env, 3 * JOBS), 30, "every queue's jobs", fleet.tails)
        # Found by id wherever they live, over HTTP and the CLI.
        r = http.get(f"{PREFIX}/{ids[q1][0]}")
        assert r.status_code == 200 and r.json()["job"]["queue"] == q1, r.text
    shown = cli_json(env, "jobs", "show", ids[q2][0], "--json")
    assert shown["job"]["status"] == "completed" and shown["job"]["queue"] == q2, shown

    # Each queue's jobs and events sit on its own primary, under its own hash tag.
    homes = {
        "default": cluster.node_for(f"fleetd:{{{namespace}}}:queue"),
        q1: cluster.node_for(f"fleetd:{{{namespace}/{q1}}}:queue"),
        q2: cluster.node_for(f"fleetd:{{{namespace}/{q2}}}:queue"),
    }
    assert len({node.port for node in homes.values()}) == 3
    for queue, node in homes.items():
        pattern = (
            key_pattern(namespace) if queue == "default" else f"fleetd:{{{namespace}/{queue}}}:*"
        )
        found = cluster.keys_on(node, pattern)
        assert len({cluster.keyslot(k) for k in found}) == 1  # one hash tag: one slot
        job_keys = {k.rpartition(":")[2] for k in found if ":job:" in k}
        assert set(ids[queue]) <= job_keys
        for other in cluster.nodes:
            if other is not node:
                assert cluster.keys_on(other, pattern) == []
        events = events_of(node, namespace if queue == "default" else f"{namespace}/{queue}")
        assert set(ids[queue]) <= {
            e.get("job_id") for e in events if e.get("type") == "job.completed"
        }

    def processed() -> int:
        return int(cli_json(env, "workers", "--json")["metrics"]["jobs_processed"])

    # One daemon ran them all (its heartbeat publishes its count every few seconds).
    wait_for(lambda: processed() == 3 * JOBS, 15, "the daemon's count", fleet.tails)
