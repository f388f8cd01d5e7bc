"""A schedule running a template, fanned out: the time one firing takes.

Starts its own redis-server (tests/redis_server.py: a free port on 127.0.0.1, never the
machine's Redis on 6379):

    .venv/bin/python bench/template_schedules.py           # 1,000 jobs, 100 workflows
    .venv/bin/python bench/template_schedules.py --quick   # 200 jobs, 20 workflows

Phases, each the median of ROUNDS firings (the schedule made due again each round):
- `jobs`: a job template with `for_each` of N companies: `runs` (rendering, checking
  each run against the schema, building the rows: Python) and `fire` (the whole
  firing: those plus the one schedule_fire.lua call that enqueues all N and advances
  the schedule);
- `workflows`: a two-node workflow template with `for_each` of N/10 companies (the
  workflows are stored by the same schedule_fire.lua call that wins the occurrence).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from redis_server import RedisServer
from throughput import LOOPBACK, client_engine, emit, fresh_namespace, make_config

from fleetd.engine import Engine
from fleetd.schedules.firing import FiringOps
from fleetd.schedules.store import ScheduleOps
from fleetd.schedules.templated import templated_runs
from fleetd.templates.model import TemplateSpec
from fleetd.templates.store import TemplateOps

ROUNDS = 5
PARAMS = {
    "type": "object",
    "required": ["company_id"],
    "properties": {"company_id": {"type": "string"}, "month": {"type": "string"}},
}
JOB = {"name": "report", "params": PARAMS,
       "job": {"type": "noop", "company_id": {"$param": "company_id"},
               "data": {"month": {"$param": "month"}}}}  # fmt: skip
FLOW = {"name": "flow", "params": PARAMS,
        "workflow": {"company_id": {"$param": "company_id"},
                     "chain": [{"type": "noop"}, {"type": "noop"}]}}  # fmt: skip


def _firings(
    engine: Engine, template: Mapping[str, Any], n: int
) -> tuple[list[float], list[float]]:
    client = engine.link.client
    TemplateOps(engine.ops).save(client, TemplateSpec.model_validate(template))
    ops = ScheduleOps.from_engine(engine)
    job = ops.add(client, {
        "name": f"fan-out {template['name']}", "schedule": "1h",
        "template": {"name": template["name"]}, "params": {"month": "2026-11"},
        "for_each": [{"company_id": f"c{i}"} for i in range(n)],
    })  # fmt: skip
    runs, fires = [], []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        templated_runs(client, engine.ops, ops.require(client, job.id), 0)
        runs.append((time.perf_counter() - t0) * 1000)
        now = ops.now_ms(client)
        client.zadd(engine.keys.schedules_due, {job.id: now})
        h = client.hgetall(engine.keys.schedule(job.id))
        t0 = time.perf_counter()
        result = FiringOps(ops).fire_due(client, job.id, now, now, 60_000, h)
        fires.append((time.perf_counter() - t0) * 1000)
        assert result is not None and result.action == "fire", result
    return runs, fires


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    n = 200 if p.parse_args().quick else 1000
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as server:
        assert server.url.startswith(f"redis://{LOOPBACK}:")
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        print(f"# template schedules: {n} jobs, {n // 10} workflows a firing; load average {load}")
        for template, size in ((JOB, n), (FLOW, n // 10)):
            cfg = make_config(server.url, fresh_namespace("tpl-sched"), Path(tmp) / "state")
            engine = client_engine(cfg)
            try:
                runs, fires = _firings(engine, template, size)
            finally:
                engine.close()
            what = f"{size} {'jobs' if template is JOB else 'workflows'}"
            name = template["name"]
            emit(f"{name}_runs", statistics.median(runs), "ms", f"{what}: render, check")
            emit(f"{template['name']}_fire", statistics.median(fires), "ms",
                 f"{what}: the whole firing, median of {ROUNDS}")  # fmt: skip


if __name__ == "__main__":
    main()
