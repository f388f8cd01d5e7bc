"""Crash test: a 2,000-node graph run by three daemons, SIGKILLed five times at random.

Every node runs (at-least-once: a node runs twice only if it was running at a kill, so
attempts = stalls + 1 for each), and every dependent node is released exactly once
(one `workflow.node` released event each, before its first start) — the release
happens in the same script that completes its last parent, whichever daemon dies when.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict

import pytest
from conftest import fleetd_env
from daemons import Fleet, settings, wait_for

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.workflows.store import WorkflowOps

LAYERS, WIDTH = 20, 100  # 2,000 nodes
KILLS = 5
FAST_RECOVERY = settings(
    worker_lease="2s", maintenance_interval="100ms", worker_max_stalls=100,
    worker_concurrency=8,
)  # fmt: skip


def _graph(rng: random.Random) -> dict[str, object]:
    nodes = []
    for layer in range(LAYERS):
        for i in range(WIDTH):
            parents = rng.sample(range(WIDTH), 2) if layer else []
            nodes.append({
                "name": f"n{layer}-{i}", "type": "noop",
                "data": {"sleep_ms": rng.randint(150, 450)},
                "depends_on": [f"n{layer - 1}-{p}" for p in parents],
            })  # fmt: skip
    return {"name": "crash", "on_failure": "continue", "nodes": nodes}


@pytest.mark.slow
def test_sigkill_five_times_every_node_runs_every_child_released_once(
    config: Config, engine: Engine, fleet: Fleet
) -> None:
    rng = random.Random(20)
    env = fleetd_env(config) | FAST_RECOVERY
    ops = WorkflowOps(engine.ops)
    plan = ops.plan(_graph(rng))
    daemons = [fleet.start(env, name=f"d{i}") for i in range(3)]
    ops.submit(engine.link.client, plan)
    for kill in range(KILLS):
        victim = rng.randrange(len(daemons))
        time.sleep(rng.uniform(0.8, 2.0))
        # Each kill lands mid-run: the graph is not done yet.
        assert (
            engine.link.client.hget(engine.keys.workflow(plan.workflow_id), "status") == "running"
        )
        daemons[victim].kill()
        daemons[victim] = fleet.start(env, name=f"r{kill}")

    def ended() -> bool:
        answer = ops.get(engine.link.client, plan.workflow_id)
        return answer is not None and answer.status in ("completed", "failed", "cancelled")

    wait_for(ended, 120, "the workflow to end", fleet.tails)
    answer = ops.get(engine.link.client, plan.workflow_id)
    assert answer is not None
    assert answer.status == "completed" and answer.counts == {"completed": LAYERS * WIDTH}

    released: Counter[str] = Counter()
    first_start: dict[str, str] = {}
    release_at: dict[str, str] = {}
    for stream_id, f in engine.link.client.xrange(engine.keys.events):
        if f["type"] == "workflow.node" and f["status"] == "released":
            released[f["job_id"]] += 1
            release_at.setdefault(f["job_id"], stream_id)
        elif f["type"] == "job.started":
            first_start.setdefault(f["job_id"], stream_id)
    roots = {n.row.id for n in plan.nodes if n.extra["wf_wait"] == "0"}
    children = {n.row.id for n in plan.nodes} - roots
    assert set(released) == children and set(released.values()) == {1}

    def sid(s: str) -> tuple[int, int]:
        ms, seq = s.split("-")
        return int(ms), int(seq)

    assert all(sid(release_at[c]) < sid(first_start[c]) for c in children)
    pipe = engine.link.client.pipeline(transaction=False)
    for n in plan.nodes:
        pipe.hmget(engine.keys.job(n.row.id), ["attempts", "stalls"])
    counts: defaultdict[int, int] = defaultdict(int)
    for attempts, stalls in pipe.execute():
        assert int(attempts) == int(stalls or 0) + 1
        counts[int(attempts)] += 1
    assert sum(counts.values()) == LAYERS * WIDTH
    assert sum(n for attempts, n in counts.items() if attempts > 1) > 0  # kills hit running nodes
