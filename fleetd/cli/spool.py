"""`fleetd spool status|replay|drop`: the operator's view of this state directory's
enqueue spool (fleetd.spool), the jobs acknowledged while Redis was away.

- `status`: jobs and bytes held, the oldest one's age, the caps, and any spool file set
  aside as unreadable (kept for the operator, never dropped); `--json`;
- `replay`: send every spooled job to Redis now, in order, each once (what a daemon
  does on its own within `[spool] replay_interval` of Redis coming back); exit 2 when
  Redis is still away;
- `drop --all | JOB_ID…`: delete spooled jobs before they reach Redis (audited,
  `spool.drop`);
and, for `fleetd enqueue` and `jobs show`, `send` (to Redis, or to the spool while Redis
is away) and `find_job` (a job still spooled shows as `spooled`).

The spool's modules are imported inside the commands, like the other commands' heavy
imports (start-up time); they close no cycle (tests/test_architecture.py checks).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from fleetd.audit.entry import Action, cli_subject
from fleetd.cli.auditing import recorded
from fleetd.cli.common import fail, print_json

if TYPE_CHECKING:
    from fleetd.backend.codec import JobRow
    from fleetd.engine import Engine
    from fleetd.jobs.model import Job
    from fleetd.jobs.queue import EnqueueResult
    from fleetd.spool.file import JobSpool

__all__ = ["add_parser", "find_job", "ran_inline", "run", "send", "spooled_body"]


def add_parser(sub: Any) -> None:
    sp = sub.add_parser("spool", help="the enqueue spool kept while Redis is away")
    sp.add_argument("action", choices=["status", "replay", "drop"])
    sp.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="drop: these jobs")
    sp.add_argument("--all", action="store_true", help="drop: every spooled job")
    sp.add_argument("--json", action="store_true")


def _spool(engine: Engine) -> JobSpool:
    if engine.spool is None:
        fail("the spool is off ([spool] enabled = false)")
    return engine.spool


def status_body(spool: JobSpool) -> dict[str, Any]:
    jobs, nbytes = spool.depth()
    oldest = spool.oldest_ms()
    return {
        "path": str(spool.path),
        "jobs": jobs,
        "bytes": nbytes,
        "max_jobs": spool.max_jobs,
        "max_bytes": spool.max_bytes,
        "oldest_age_seconds": None if oldest is None else round(time.time() - oldest / 1000, 3),
        "set_aside": [str(p) for p in spool.set_aside()],
    }


def run(engine: Engine, a: argparse.Namespace) -> int:
    spool = _spool(engine)
    if a.action != "drop" and (a.job_ids or a.all):
        fail(f"spool {a.action} takes no job ids and no --all")
    if a.action == "status":
        body = status_body(spool)
        if a.json:
            print_json(body)
            return 0
        age = body["oldest_age_seconds"]
        print(f"{body['jobs']} job(s), {body['bytes']} bytes in {body['path']}"
              + (f", oldest waiting {age:.0f}s" if age is not None else ""))  # fmt: skip
        for path in body["set_aside"]:
            print(f"set aside (unreadable, kept for you): {path}")
        return 0
    if a.action == "replay":
        return _replay(engine, spool, a)
    if bool(a.job_ids) == a.all:
        fail("spool drop takes JOB_ID… or --all (not both)")
    with recorded(engine, Action.SPOOL_DROP) as rec:
        dropped = spool.drop(None if a.all else list(a.job_ids))
        rec.detail = {"count": dropped, "all": a.all}
    if a.json:
        print_json({"dropped": dropped})
    else:
        print(f"dropped {dropped} spooled job(s)")
    return 0


def _replay(engine: Engine, spool: JobSpool, a: argparse.Namespace) -> int:
    from fleetd.spool.replay import replay_all

    batch = engine.config.spool.replay_batch
    store = engine.audit.trail.store
    sent, took = engine.link.run_sync(lambda c: replay_all(c, spool, engine.ops, store, batch))
    left, _ = spool.depth()
    if a.json:
        print_json({"replayed": sent, "seconds": round(took, 3), "left": left})
    else:
        print(f"replayed {sent} job(s) in {took:.2f}s; {left} left")
    return 0


# -- the job commands' side (fleetd.cli.jobs): enqueue and show during an outage --


def find_job(engine: Engine, job_id: str, *, spool_too: bool) -> tuple[Job | None, Any]:
    """The job from Redis, or (`spool_too`) its spooled body when Redis has none or is
    away; Redis's error when neither has it."""
    from fleetd.backend.redis_link import RedisUnavailable

    try:
        job = engine.link.run_sync(engine.ops.get, job_id)
    except RedisUnavailable:
        if not spool_too or (spooled := spooled_body(engine, job_id)) is None:
            raise
        return None, spooled
    if job is None and spool_too:
        return None, spooled_body(engine, job_id)
    return job, None


def spooled_body(engine: Engine, job_id: str) -> dict[str, Any] | None:
    """`jobs show` of a job still in this state directory's spool (fleetd.spool): the
    body GET /jobs/{id} answers for it, status `spooled`."""
    from fleetd.spool.answer import spooled_job_body

    spool = engine.spool
    if spool is None or not spool.path.exists():  # no outage ever: no file to open
        return None
    found = spool.get(job_id)
    return None if found is None else spooled_job_body(found)


def send(engine: Engine, rows: list[JobRow], fallback: str | None = None) -> list[EnqueueResult]:
    """Enqueue, or spool while Redis is away (fleetd.spool; exit 2 when it cannot);
    with `--fallback sync` (one row), run it here then (fleetd.runtime.inline)."""
    from fleetd.spool.outage import enqueue_or_spool

    if fallback is not None:
        from fleetd.runtime.inline import enqueue_or_run

        return [enqueue_or_run(engine, rows[0], fallback, door="cli", subject=cli_subject())]
    run, ops = engine.link.run_sync, engine.ops
    return enqueue_or_spool(run, ops, engine.spool, rows, door="cli", subject=cli_subject())


def ran_inline(result: Any, as_json: bool) -> int:
    """A job run here while Redis was away (`--fallback sync`): its outcome."""
    body = {"job_id": result.job_id, "status": result.status, "ran": "sync"}
    body.update(
        {"result": result.result} if result.status == "completed" else {"error": result.error}
    )
    if as_json:
        print_json(body)
    else:
        shown = json.dumps(result.result) if result.status == "completed" else result.error
        print(f"{result.job_id} {result.status} (ran here: Redis is away) {shown}")
    return 0 if result.status == "completed" else 1
