"""`fleetd queues list|pause|resume`: named queues (fleetd.jobs.queues).

`list` prints every known queue with the live worker daemons serving it, its ready,
waiting and processing jobs, those completed and failed in the last hour and its
throughput (jobs finished per minute over the last 5 minutes); `pause`
and `resume` act on every daemon at once (audited as queue.pause and queue.resume). A
bad queue name is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from fleetd.audit.entry import Action
from fleetd.cli.auditing import recorded
from fleetd.cli.common import fail

if TYPE_CHECKING:
    from fleetd.backend.redis_link import SyncClient
    from fleetd.engine import Engine
    from fleetd.jobs.queues import QueueFigures

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    top = subparsers.add_parser("queues", help="list, pause or resume named queues")
    sub = top.add_subparsers(dest="queues_command", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="every known queue: state, daemons, jobs, finished in 1 h")
    ls.add_argument("--json", action="store_true")
    for name, text in (("pause", "stop every daemon claiming from a queue"),
                       ("resume", "let daemons claim from a paused queue again")):  # fmt: skip
        p = sub.add_parser(name, help=text)
        p.add_argument("name", help="queue name, e.g. bulk")


def run(engine: Engine, a: argparse.Namespace) -> int:
    from fleetd.config.queue_section import Served, check_queue_name, parse_routes
    from fleetd.jobs.queues import (
        known_queues,
        pause_queue,
        queue_figures,
        resume_queue,
        served_by,
    )

    spaces, cfg = engine.spaces, engine.config
    if a.queues_command == "list":
        also = [*Served.parse(cfg.worker.queues).names, *parse_routes(cfg.queues.routes).values()]

        def read(c: SyncClient) -> list[QueueFigures]:
            daemons = engine.ops.daemons(c)
            served = [q for d in daemons for q in served_by(d)]
            names = known_queues(c, spaces, [*also, *served])
            return queue_figures(c, spaces, names, daemons, cfg.limits.build().queues)

        figures = engine.link.run_sync(read)
        if a.json:
            print(json.dumps({"queues": [f.to_dict() for f in figures]}, indent=2))
        else:
            for f in figures:
                state = "paused" if f.paused else "active"
                served = f"{len(f.daemons)} daemon(s)" if f.daemons else "NO DAEMON"
                about = "~" if f.estimated else ""
                print(f"{f.name:<20} {state:<7} {served:<12} ready {f.ready}  "
                      f"waiting {about}{f.waiting}  processing {about}{f.processing}  completed "
                      f"{f.completed}  failed {f.failed} (1h)  {f.throughput:g}/min"
                      + (f"  limit {f.limit}" if f.limit else ""))  # fmt: skip
        return 0
    pause = a.queues_command == "pause"
    action = Action.QUEUE_PAUSE if pause else Action.QUEUE_RESUME
    with recorded(engine, action, a.name) as rec:
        try:
            name = check_queue_name(a.name)
        except ValueError as exc:
            rec.outcome = "refused"
            fail(f"queues: {exc}")
        fn = pause_queue if pause else resume_queue
        changed = engine.link.run_sync(lambda c: fn(c, spaces, name))
        rec.detail = {"changed": changed}
    verb = "paused" if pause else "resumed"
    print(f"{name} {verb}" if changed else f"{name} was {verb} already")
    return 0
