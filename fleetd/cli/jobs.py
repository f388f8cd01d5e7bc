"""`fleetd enqueue`, `jobs list|show|cancel|reset|artifact`, `stats`, `workers`
(run by fleetd.cli.counts), `cleanup`: the job commands, each synchronous against Redis
through the queue operations the HTTP API uses (with memory://, the running daemon's
embedded store). `--json` prints exactly the body of the matching HTTP endpoint;
`enqueue --wait` exits 1 when the job ended other than completed.

`jobs list` without `--status` lists every status, newest first (fleetd.jobs.listing;
its `--json` body is that of GET /jobs/status/{status} with "status": null). `jobs
artifact` copies a job's file from this host's `[artifacts] dir`; `cleanup` also deletes
this host's artifact folders of the jobs it removed.

The job model, the API's bodies and the listing are imported inside the commands: the
parser (built for every command, `--help` included) needs none of them (~0.1 s
measured with bench/cli_startup.py), and the bodies (pydantic declarations of every
answer, ~0.1 s more) only `--json` prints; these imports close no cycle
(tests/test_architecture.py checks).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fleetd.audit.entry import Action
from fleetd.cli import artifacts as cli_artifacts
from fleetd.cli import counts as cli_counts
from fleetd.cli.auditing import Record, recorded
from fleetd.cli.common import duration, fail, print_json
from fleetd.cli.job_input import read_jsonl, request_from_args
from fleetd.cli.spool import find_job, ran_inline, send

if TYPE_CHECKING:
    from fleetd.backend.redis_link import SyncClient
    from fleetd.engine import Engine
    from fleetd.jobs.model import Job

__all__ = ["COMMANDS", "STATUSES", "add_parsers"]

# fleetd.jobs.model.JobStatus's values, for the parser without importing the job model
# (tests/cli/test_cli.py pins them to it).
STATUSES = ("pending", "processing", "completed", "failed", "retrying", "cancelled")

# --wait polls the job; start fast (a noop finishes in a millisecond), back off to this.
WAIT_POLL_MAX = 0.5
# How long `jobs cancel` waits for a running job's daemon to stop its handler.
CANCEL_WAIT = 10.0


def add_parsers(sub: Any) -> None:
    enq = sub.add_parser("enqueue", help="enqueue a job (or many with --jsonl)")
    enq.add_argument("type", nargs="?", help="job type, e.g. noop")
    enq.add_argument("--data", default="{}", help="job data as a JSON object")
    enq.add_argument("--priority", help="1-20 or low, normal, high, critical")
    enq.add_argument("--max-retries", type=int)
    enq.add_argument("--timeout", help="time limit, e.g. 30s, 5m")
    enq.add_argument("--company")
    enq.add_argument("--user")
    enq.add_argument("--tag", action="append", default=[], help="repeatable")
    enq.add_argument("--run-at", help="ISO 8601 time with an offset, e.g. 2026-01-01T09:00:00Z")
    enq.add_argument("--idempotency-key")
    enq.add_argument("--queue", help="named queue (default: the type's route, else 'default')")
    enq.add_argument(
        "--encrypt", action="store_true", help="seal the whole data at rest ([encryption])"
    )
    enq.add_argument("--wait", action="store_true", help="wait until the job ends; print it")
    enq.add_argument(
        "--fallback", choices=("sync",),
        help="sync: while Redis is away, run the job here (types with sync_fallback)",
    )  # fmt: skip
    enq.add_argument("--jsonl", help="file of job objects, one per line ('-' = stdin)")
    enq.add_argument("--json", action="store_true")

    jobs = sub.add_parser("jobs", help="list, show, cancel or reset jobs")
    jsub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    ls = jsub.add_parser("list", help="jobs in one status or all, newest first")
    ls.add_argument("--status", choices=STATUSES, help="only this status (default: every one)")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--cursor")
    ls.add_argument("--company")
    ls.add_argument("--type")
    ls.add_argument("--user", help="only jobs of this user_id")
    ls.add_argument("--queue", help="only jobs of this named queue")
    ls.add_argument("--json", action="store_true")
    for name, text in (
        ("show", "one job"),
        ("cancel", "cancel a job"),
        ("reset", "put a failed or cancelled job back to pending"),
    ):
        one = jsub.add_parser(name, help=text)
        one.add_argument("id")
        one.add_argument("--json", action="store_true")
    art = jsub.add_parser("artifact", help="copy a job's file (report, export) from this host")
    art.add_argument("id")
    art.add_argument("name", nargs="?", help="which file, when the job made several")
    art.add_argument(
        "-o", "--output", help="where to write it ('-' = stdout; default: its name, here)"
    )

    stats = sub.add_parser("stats", help="jobs per status")
    stats.add_argument("--json", action="store_true")
    workers = sub.add_parser("workers", help="metrics of the live daemons")
    workers.add_argument("--json", action="store_true")
    clean = sub.add_parser("cleanup", help="delete finished jobs older than a duration")
    clean.add_argument("--older-than", required=True, help="e.g. 24h, 7d")
    clean.add_argument("--json", action="store_true")


# -- helpers ---------------------------------------------------------------------------


def _poll(engine: Engine, job_id: str, until: Callable[[Job], bool], limit: float | None) -> Job:
    delay, deadline = 0.005, None if limit is None else time.monotonic() + limit
    while True:
        job = engine.link.run_sync(engine.ops.get, job_id)
        if job is None:
            fail(f"job {job_id} disappeared")
        if until(job) or (deadline is not None and time.monotonic() > deadline):
            return job
        time.sleep(delay)
        delay = min(delay * 2, WAIT_POLL_MAX)


def _job_lines(job: Job) -> Iterator[str]:
    d = job.to_dict()
    yield f"{job.id}  {job.type}  {job.status.value}  priority {job.priority}"
    for key in (
        "created_at",
        "started_at",
        "completed_at",
        "run_at",
        "company_id",
        "user_id",
        "tags",
        "retry_count",
        "max_retries",
        "attempts",
        "worker",
        "error",
    ):
        if key in d:
            yield f"  {key}: {d[key]}"
    yield f"  data: {json.dumps(job.data)}"
    if job.result is not None:
        yield f"  result: {json.dumps(job.result)}"


# -- commands --------------------------------------------------------------------------


def _enqueue(engine: Engine, a: argparse.Namespace) -> int:
    from fleetd.api import responses
    from fleetd.jobs.model import TERMINAL_STATUSES, EnqueueRequest, JobStatus
    from fleetd.spool.outage import SPOOLED

    if a.jsonl:
        if a.type or a.wait or a.fallback:
            fail("--jsonl takes no job type, no --wait and no --fallback")
        with recorded(engine, Action.JOB_ENQUEUE_BULK) as rec:
            rows = engine.ops.prepare_many(read_jsonl(a.jsonl))
            results = send(engine, rows)
            dups = sum(r.duplicate for r in results)
            rec.detail = {"count": len(results), "duplicates": dups}
            if spooled := bool(results) and results[0].status == SPOOLED:
                rec.detail["spooled"] = True
        if a.json:
            print_json(responses.bulk_enqueue_body(results))
        else:
            verb = "spooled (Redis is away)" if spooled else "enqueued"
            extra = f", {dups} duplicate(s)" if dups else ""
            print(f"{verb} {len(results) - dups} job(s){extra}")
        return 0
    if not a.type:
        fail("give a job type (e.g. `fleetd enqueue noop`) or --jsonl FILE")
    with recorded(engine, Action.JOB_ENQUEUE, company_id=a.company) as rec:
        rec.detail = {"type": a.type}
        row = engine.ops.prepare(EnqueueRequest.from_dict(request_from_args(a)))
        [result] = send(engine, [row], a.fallback)
        rec.target, rec.detail["duplicate"] = result.job_id, result.duplicate
        if result.status == SPOOLED:
            rec.detail["spooled"] = True
    if result.status in ("completed", "failed"):  # --fallback sync: it ran here
        return ran_inline(result, a.json)
    if a.wait and result.status == SPOOLED:
        print("spooled while Redis is away: not waiting for it", file=sys.stderr)
    if not a.wait or result.status == SPOOLED:
        if a.json:
            print_json(responses.enqueue_body(result))
        else:
            note = " (duplicate: existing job)" if result.duplicate else ""
            print(f"{result.job_id} {result.status}{note}")
        return 0
    job = _poll(engine, result.job_id, lambda j: j.status in TERMINAL_STATUSES, None)
    if a.json:
        print_json(responses.job_body(job))
    else:
        print("\n".join(_job_lines(job)))
    return 0 if job.status is JobStatus.COMPLETED else 1


def _list(engine: Engine, a: argparse.Namespace) -> int:
    from fleetd.jobs.listing import list_all_statuses
    from fleetd.jobs.model import JobStatus

    if not 1 <= a.limit <= 500:
        fail("--limit must be from 1 to 500")
    ops = engine.ops
    status = None if a.status is None else JobStatus(a.status)
    page = engine.link.run_sync(
        lambda c: (
            list_all_statuses(
                ops,
                c,
                limit=a.limit,
                cursor=a.cursor,
                company_id=a.company,
                job_type=a.type,
                user_id=a.user,
                queue=a.queue,
            )
            if status is None
            else ops.list_jobs(
                c,
                status,
                limit=a.limit,
                cursor=a.cursor,
                company_id=a.company,
                job_type=a.type,
                user_id=a.user,
                queue=a.queue,
            )
        )
    )
    if a.json:
        from fleetd.api import responses  # the API's declarations: ~0.1 s (docstring)

        if status is not None:
            print_json(responses.list_body(page, status, a.limit))
        else:
            print_json(
                {"jobs": [j.to_dict() for j in page.jobs], "status": None,
                 "count": len(page.jobs), "limit": a.limit, "next_cursor": page.next_cursor}
            )  # fmt: skip
        return 0
    for j in page.jobs:
        print(
            f"{j.id}  {j.type:<20} "
            + ("" if status is not None else f"{j.status.value:<10} ")
            + f"priority {j.priority:<3} {j.to_dict()['created_at']}"
            + (f"  {j.error}" if j.error else "")
        )
    print(
        f"{len(page.jobs)} job(s)"
        + (f"; next page: --cursor {page.next_cursor}" if page.next_cursor else "")
    )
    return 0


def _waiting(client: SyncClient, engine: Engine, job: Job) -> str | None:
    """Why a ready pending job waits (as GET /jobs/{id} answers it)."""
    from fleetd.jobs.limits import read_waiting

    limits = engine.config.limits.build()
    keys = engine.spaces.locate(client, job.id).keys
    return read_waiting(client, keys, limits, engine.ops.daemons(client), job)


def _jobs(engine: Engine, a: argparse.Namespace) -> int:
    if a.jobs_command == "list":
        return _list(engine, a)
    if a.jobs_command in ("show", "artifact"):
        job, spooled = find_job(engine, a.id, spool_too=a.jobs_command == "show")
        if spooled is not None:
            if a.json:
                print_json(spooled)
            else:
                print(f"{a.id} spooled (waiting for Redis)")
            return 0
        if job is None:
            fail(f"no job {a.id}")
        if a.jobs_command == "artifact":
            return cli_artifacts.download(engine, job, a)
        waiting = engine.link.run_sync(_waiting, engine, job)
        if a.json:
            from fleetd.api import responses  # the API's declarations: ~0.1 s (docstring)

            print_json(responses.job_body(job, waiting))
        else:
            print("\n".join([*_job_lines(job), *([f"waiting: {waiting}"] if waiting else [])]))
        return 0
    # cancel and reset are audited, a refusal (no such job, nothing to do) included
    action = Action.JOB_CANCEL if a.jobs_command == "cancel" else Action.JOB_RESET
    with recorded(engine, action, a.id) as rec:
        return _cancel_or_reset(engine, a, rec)


def _cancel_or_reset(engine: Engine, a: argparse.Namespace, rec: Record) -> int:
    from fleetd.api import responses
    from fleetd.jobs.model import JobStatus

    ops, run = engine.ops, engine.link.run_sync
    job = run(ops.get, a.id)
    if job is None:
        rec.outcome = "not_found"
        fail(f"no job {a.id}")
    rec.company_id = job.company_id
    if a.jobs_command == "cancel":
        result = run(ops.cancel, a.id)
        if result.outcome == "final":
            rec.outcome = "conflict"
            fail(f"job {a.id} is already {result.status}; nothing to cancel")
        if result.outcome == "cancelling":
            done = _poll(engine, a.id, lambda j: j.status is not JobStatus.PROCESSING, CANCEL_WAIT)
            result = type(result)("cancelling", done.status.value)
        if a.json:
            print_json(responses.cancel_body(a.id, result))
        else:
            print(
                f"{a.id} {result.status}"
                + (
                    " (cancel requested; its daemon has not stopped it yet)"
                    if result.status == "processing"
                    else ""
                )
            )
        return 0
    reset = run(ops.reset, a.id)
    if reset.outcome == "refused":
        rec.outcome = "conflict"
        fail(f"job {a.id} is {reset.status}; only failed or cancelled jobs can be reset")
    if a.json:
        print_json(responses.reset_body(a.id, reset))
    else:
        print(f"{a.id} {reset.status}")
    return 0


def _cleanup(engine: Engine, a: argparse.Namespace) -> int:
    from fleetd.api import responses

    older_than = duration("--older-than", a.older_than)
    with recorded(engine, Action.JOB_CLEANUP) as rec:
        rec.detail = {"older_than": a.older_than}
        counts = engine.link.run_sync(engine.ops.cleanup, older_than)
        rec.detail["deleted"] = counts["deleted"]
    body = responses.cleanup_body(counts, older_than)
    swept = cli_artifacts.sweep_here(engine)
    if a.json:
        # The HTTP body as it is; what went from this host's disk on stderr.
        print_json(body)
        if swept:
            print(f"deleted the artifact folders of {swept} job(s) on this host", file=sys.stderr)
    else:
        print(f"deleted {body['deleted']} finished job(s) older than {body['older_than']}")
        print(f"deleted the artifact folders of {swept} job(s) on this host")
    return 0


COMMANDS: dict[str, Callable[[Engine, argparse.Namespace], int]] = {
    "enqueue": _enqueue, "jobs": _jobs, "stats": cli_counts.stats, "workers": cli_counts.workers,
    "cleanup": _cleanup,
}  # fmt: skip
