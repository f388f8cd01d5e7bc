"""Claim throughput by the number of companies with ready jobs: claim.lua alone.

Starts its own redis-server (tests/redis_server.py, loopback, AOF off). Per scenario, N
noop jobs spread over C companies (one part each) are enqueued, then claimed in calls of
B jobs until none is left, with no worker: what a claim's fair share costs in Lua as
the number of parts in a priority grows (the claim groups them by company, then
refiles the companies it served):

    .venv/bin/python bench/claims.py                 # 20,000 jobs, ~1 min
    .venv/bin/python bench/claims.py --jobs 5000

Scenarios `companies x claim size`: 1000 x 5, 100 x 5, 10 x 5, 1000 x 100. Prints one
`name: value unit` line per scenario and the load average before and after. To compare
two versions, run it from each checkout in turn (a few times: this machine is noisy).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from redis_server import RedisServer
from throughput import client_engine, emit, loadavg, make_config

SCENARIOS = ((1000, 5), (100, 5), (10, 5), (1000, 100))


def scenario(url: str, state: Path, jobs: int, companies: int, size: int) -> None:
    cfg = make_config(url, f"claims-{uuid.uuid4().hex[:8]}", state)
    engine = client_engine(cfg)
    try:
        reqs = [{"type": "noop", "company_id": f"c{i % companies}"} for i in range(jobs)]
        engine.link.run_sync(engine.ops.enqueue_rows, engine.ops.prepare_many(reqs))
        client, claimed = engine.link.client, 0
        start = time.perf_counter()
        while got := engine.scripts.claim(client, size, 600_000, "bench", "bench").jobs:
            claimed += len(got)
        took = time.perf_counter() - start
    finally:
        engine.close()
    emit(f"claim_{companies}c_{size}", claimed / took, "jobs/s",
         f"{claimed} jobs of {companies} companies, {size} per claim")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20_000)
    args = p.parse_args(argv)
    print(f"# loadavg before: {loadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fleetd-bench-") as tmp:
        work = Path(tmp)
        with RedisServer(work / "redis", aof=False) as server:
            if not server.url.startswith("redis://127.0.0.1:"):
                raise SystemExit(f"refusing to benchmark a non-loopback Redis: {server.url}")
            for companies, size in SCENARIOS:
                scenario(server.url, work / "state", args.jobs, companies, size)
    print(f"# loadavg after: {loadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
