"""`fleetd stats` and `fleetd workers`: the jobs per status and the live daemons'
metrics, as `GET /jobs/stats` and `GET /jobs/worker/metrics` answer them with `--json`.

Start-up time is most of what these cost (their goal: 0.25 s, #19; bench/cli_startup.py):
they read through fleetd.jobs.counts and sum with fleetd.runtime.metrics, neither of
which imports the job model (pydantic) or trio; only `--json` imports the API's
declarations (fleetd.api.responses) to print exactly the API's body.
tests/cli/test_cli_startup.py pins what they import. These function-level imports close
no cycle (tests/test_architecture.py checks).
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from fleetd.cli.common import print_json

if TYPE_CHECKING:
    from fleetd.engine import Engine

__all__ = ["stats", "workers"]


def stats(engine: Engine, a: argparse.Namespace) -> int:
    from fleetd.jobs import counts  # not the queue operations: no job model

    stats = engine.link.run_sync(lambda c: counts.stats(c, *engine.spaces.all_keys(c)))
    if a.json:
        from fleetd.api import responses

        print_json(responses.stats_body(stats))
    else:
        for key, value in stats.items():
            print(f"{key:<11} {value}")
    return 0


def workers(engine: Engine, a: argparse.Namespace) -> int:
    from fleetd.jobs import counts  # not the queue operations: no job model
    from fleetd.runtime.metrics import aggregate_metrics  # neither trio nor pydantic

    daemons, now_ms = engine.link.run_sync(counts.daemons, engine.keys), int(time.time() * 1000)
    if a.json:
        from fleetd.api import responses  # the API's declarations: pydantic

        print_json(responses.metrics_body(daemons, now_ms))
        return 0
    m = aggregate_metrics(daemons, now_ms)
    print(
        f"{len(daemons)} live daemon(s); processed {m['jobs_processed']}, succeeded "
        f"{m['jobs_succeeded']}, failed {m['jobs_failed']}, retried {m['jobs_retried']}"
    )
    for d in daemons:
        print(
            f"  {d['daemon_id']}  {','.join(d.get('roles', []))}  running "
            f"{d.get('running', 0)}/{d.get('concurrency', 0)}  up {d['metrics']['uptime']}"
        )
    return 0
