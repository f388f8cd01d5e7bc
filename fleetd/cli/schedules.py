"""`fleetd schedules …`: manage recurring jobs from the command line.

Actions: list, show, add, update, rm, pause, resume, run-now, stats. Each is one call of
fleetd.schedules.store (the operations the HTTP API uses) against Redis directly.
A schedule is named by its id or, when no id matches, by its name. `--json` prints the
body of the matching HTTP endpoint:

    list               {"scheduled_jobs": [ScheduledJob...], "count": n, "limit",
                        "next_cursor"}  (every schedule, read a page at a time; with
                        --limit or --cursor one page, as GET /jobs/scheduled)
    show, add, update,
    pause, resume      {"scheduled_job": ScheduledJob}
    rm                 {"id": ..., "deleted": true}
    run-now            {"job_id", "status", "enqueued", "schedule_id"}
    stats              {"scheduler_stats": {total_scheduled_jobs, active_jobs,
                        inactive_jobs, next_run, missed_executions}}

Errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from fleetd.audit.entry import Action
from fleetd.cli.auditing import Record, recorded
from fleetd.cli.common import CliError, parse_json

if TYPE_CHECKING:
    from fleetd.engine import Engine
    from fleetd.schedules.model import ScheduledJob
    from fleetd.schedules.pages import SchedulePage
    from fleetd.schedules.store import ScheduleOps

__all__ = ["add_parser", "run"]

EXIT_USAGE = 2


class _Usage(CliError):
    """A usage error of this command (audited as outcome "refused")."""


def _definition_flags(p: argparse.ArgumentParser, creating: bool) -> None:
    p.add_argument("--type", dest="job_type", help="job type, e.g. noop (or --template)")
    p.add_argument("--template", help="run this template instead: NAME or NAME@VERSION")
    p.add_argument("--params", help="the template's parameters as a JSON object")
    p.add_argument(
        "--for-each",
        help="fan-out: a JSON list of parameter objects, one run each, or a named list (companies)",
    )
    p.add_argument(
        "--schedule",
        required=creating,
        help="@hourly @daily @weekly @monthly @yearly, an interval (30m, 1h, 10s) or cron",
    )
    p.add_argument("--data", help="job data as a JSON object")
    p.add_argument("--priority", help="1-20 or low, normal, high, critical")
    p.add_argument("--timezone", help="IANA time zone, e.g. Europe/Berlin (default: config)")
    p.add_argument("--misfire", choices=["run_once", "skip"], help="misfire policy")
    p.add_argument("--company", help="company id ('' clears it)")
    p.add_argument("--user", help="user id ('' clears it)")
    p.add_argument(
        "--encrypt",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="seal the whole data at rest, here and in every job it enqueues",
    )


def add_parser(subparsers: Any) -> None:
    """Add `schedules` and its actions to the `fleetd` parser's subcommands."""
    top = subparsers.add_parser("schedules", help="list, add, change or run recurring jobs")
    sub = top.add_subparsers(dest="schedules_command", required=True, metavar="ACTION")

    ls = sub.add_parser("list", help="every schedule, oldest first")
    ls.add_argument("--company", help="only this company's schedules")
    ls.add_argument(
        "--limit", type=int, help="one page of at most this many, 1-500 (default: every schedule)"
    )
    ls.add_argument("--cursor", help="the page after the one that printed this next cursor")
    ls.add_argument("--json", action="store_true")

    add = sub.add_parser("add", help="create a schedule")
    add.add_argument("name")
    _definition_flags(add, creating=True)
    add.add_argument("--id", help="choose the id (default: generated)")
    add.add_argument("--paused", action="store_true", help="create it inactive")
    add.add_argument(
        "--upsert", action="store_true", help="with --id: update the schedule if it exists"
    )
    add.add_argument("--json", action="store_true")

    upd = sub.add_parser("update", help="change some fields of a schedule")
    upd.add_argument("ref", metavar="ID|NAME")
    upd.add_argument("--name", help="new name")
    _definition_flags(upd, creating=False)
    upd.add_argument("--json", action="store_true")

    for action, text in (
        ("show", "one schedule"),
        ("rm", "delete a schedule (its jobs already enqueued stay)"),
        ("pause", "stop firing (is_active false)"),
        ("resume", "fire again, from the next occurrence after now"),
        ("run-now", "enqueue the schedule's job now; the cadence is unchanged"),
    ):
        one = sub.add_parser(action, help=text)
        one.add_argument("ref", metavar="ID|NAME")
        one.add_argument("--json", action="store_true")

    stats = sub.add_parser("stats", help="counts, next run and missed executions")
    stats.add_argument("--company", help="only this company's schedules")
    stats.add_argument("--json", action="store_true")


def _body(a: argparse.Namespace) -> dict[str, Any]:
    """The create/update body from the flags that were given."""
    body: dict[str, Any] = {}
    if getattr(a, "name", None) is not None:
        body["name"] = a.name
    for flag, key in (("data", "data"), ("params", "params"), ("for_each", "for_each")):
        if (text := getattr(a, flag)) is not None:
            try:
                body[key] = parse_json(text, f"--{flag.replace('_', '-')} is not valid JSON")
            except CliError as exc:
                if flag == "for_each" and text.isidentifier():  # a named list: companies
                    body[key] = text
                    continue
                raise _Usage(str(exc)) from None
    if a.template is not None:
        name, _, version = a.template.partition("@")
        if version and not (version.isascii() and version.isdigit() and len(version) <= 18):
            raise _Usage(f"--template {a.template!r}: the version after @ must be a number")
        body["template"] = {"name": name, "version": int(version) if version else None}
    for key, value in (
        ("job_type", a.job_type),
        ("schedule", a.schedule),
        ("priority", a.priority),
        ("timezone", a.timezone),
        ("misfire_policy", a.misfire),
        ("company_id", a.company),
        ("user_id", a.user),
        ("encrypt", a.encrypt),
    ):
        if value is not None:
            body[key] = value
    return body


def _print_json(body: Any) -> None:
    print(json.dumps(body, indent=2))


def _line(j: ScheduledJob) -> str:
    from fleetd.jobs.model import format_ts

    state = "active" if j.is_active else "paused"
    nxt = format_ts(j.next_run_ms) if j.next_run_ms is not None else "-"
    last = format_ts(j.last_run_ms) if j.last_run_ms is not None else "never"
    company = f"  company {j.company_id}" if j.company_id else ""
    return (
        f"{j.id}  {j.name!r}  {j.job_type}  {j.schedule} ({j.timezone})  {state}  "
        f"next {nxt}  last {last}  runs {j.runs}  missed {j.missed}{company}"
    )


def _show(j: ScheduledJob) -> None:
    print(_line(j))
    if j.template:
        version = j.template.get("version")
        print(f"  template: {j.template['name']}{f'@{version}' if version else ''}")
        print(f"  params: {json.dumps(j.template.get('params') or {})}")
        if j.template.get("for_each") is not None:
            print(f"  for_each: {json.dumps(j.template['for_each'])}")
    else:
        print(f"  data: {json.dumps(j.data)}")
    print(f"  priority {j.priority}, misfire_policy {j.misfire_policy}")
    if j.last_error:
        print(f"  last error: {j.last_error}")


def _list(
    ops: ScheduleOps, run: Any, a: argparse.Namespace
) -> tuple[list[ScheduledJob], int, str | None]:
    """(schedules, page size, next cursor): one page with --limit or --cursor, else
    every page (each its own Redis hop, MAX_PAGE at a time) and no cursor."""
    from fleetd.schedules.pages import DEFAULT_PAGE, MAX_PAGE, decode_cursor, list_page

    one_page = a.limit is not None or a.cursor is not None
    limit = DEFAULT_PAGE if a.limit is None else a.limit
    if not 1 <= limit <= MAX_PAGE:
        raise _Usage(f"--limit must be from 1 to {MAX_PAGE}")
    if a.cursor is not None:
        try:
            decode_cursor(a.cursor)
        except ValueError:
            raise _Usage(f"--cursor {a.cursor!r} is not the next cursor of a page") from None

    def read(size: int, after: str | None) -> SchedulePage:
        page: SchedulePage = run(
            lambda c: list_page(ops.keys, c, company_id=a.company, limit=size, cursor=after)
        )
        return page

    if one_page:
        page = read(limit, a.cursor)
        return page.schedules, limit, page.next_cursor
    jobs: list[ScheduledJob] = []
    cursor: str | None = None
    while True:
        page = read(MAX_PAGE, cursor)
        jobs += page.schedules
        if (cursor := page.next_cursor) is None:
            return jobs, MAX_PAGE, None


# The commands that change a schedule (or enqueue its job), as audited.
_ACTIONS = {
    "add": Action.SCHEDULE_CREATE, "update": Action.SCHEDULE_UPDATE,
    "rm": Action.SCHEDULE_DELETE, "pause": Action.SCHEDULE_PAUSE,
    "resume": Action.SCHEDULE_RESUME, "run-now": Action.SCHEDULE_RUN_NOW,
}  # fmt: skip


def _dispatch(ops: ScheduleOps, run: Any, a: argparse.Namespace, rec: Record) -> int:
    from fleetd.schedules.model import list_body, scheduled_job_body, stats_body
    from fleetd.schedules.store import ScheduleNotFound

    cmd = a.schedules_command
    if cmd == "list":
        jobs, limit, cursor = _list(ops, run, a)
        if a.json:
            _print_json(list_body(jobs, limit, cursor))
        else:
            for j in jobs:
                print(_line(j))
            print(
                f"{len(jobs)} schedule(s)" + (f"; next page: --cursor {cursor}" if cursor else "")
            )
        return 0
    if cmd == "stats":
        stats = run(ops.stats, a.company)
        if a.json:
            _print_json(stats_body(stats))
        else:
            for key, value in stats.items():
                print(f"{key:<21} {value}")
        return 0
    if cmd == "add":
        body = _body(a)
        if a.id is not None:
            body["id"] = a.id
        elif a.upsert:
            raise _Usage("--upsert needs --id (the schedule to create or update)")
        if a.paused:
            body["is_active"] = False
        rec.target, rec.company_id = a.id, a.company
        rec.detail = {"upsert": True} if a.upsert else {}
        job = run(lambda c: ops.add(c, body, upsert=a.upsert))
        rec.target, rec.company_id = job.id, job.company_id
        rec.detail.update(name=job.name, job_type=job.job_type, schedule=job.schedule)
    else:
        rec.target = a.ref
        try:
            job = run(ops.find, a.ref)
        except ScheduleNotFound:
            rec.outcome = "not_found"
            raise
        rec.target, rec.company_id = job.id, job.company_id
        if cmd == "update":
            changes = _body(a)
            rec.detail = {"fields": sorted(changes)}  # names only: values may be sealed
            if not changes:
                raise _Usage("nothing to change: give --name, --schedule, --data, …")
            job = run(ops.update, job.id, changes)
        elif cmd == "pause":
            job = run(ops.pause, job.id)
        elif cmd == "resume":
            job = run(ops.resume, job.id)
        elif cmd == "rm":
            run(ops.remove, job.id)
            if a.json:
                _print_json({"id": job.id, "deleted": True})
            else:
                print(f"deleted {job.id} ({job.name!r})")
            return 0
        elif cmd == "run-now":
            result = run(ops.run_now, job.id)
            rec.detail = {"job_id": result.job_id, "duplicate": result.duplicate}
            if a.json:
                _print_json({**result.to_dict(), "schedule_id": job.id})
            else:
                print(f"{result.job_id} {result.status} (run now of {job.id})")
            return 0
    if a.json:
        _print_json(scheduled_job_body(job))
    else:
        _show(job)
    return 0


def run(engine: Engine, a: argparse.Namespace) -> int:
    """Carry out one `fleetd schedules` action; returns the exit code."""
    # The schedule modules (croniter, the pydantic models: ~40 ms measured) load here,
    # not for every command's parser; no cycle (tests/test_architecture.py checks).
    from fleetd.jobs.model import ValidationError
    from fleetd.schedules.store import ScheduleConflict, ScheduleNotFound, ScheduleOps

    try:
        ops, run_sync = ScheduleOps.from_engine(engine), engine.link.run_sync
        action = _ACTIONS.get(a.schedules_command)
        if action is None:  # list, show, stats: reads
            return _dispatch(ops, run_sync, a, Record())
        with recorded(engine, action) as rec:
            return _dispatch(ops, run_sync, a, rec)
    except ValidationError as exc:
        print(f"fleetd: schedules: invalid schedule: {exc}", file=sys.stderr)
    except (ScheduleNotFound, ScheduleConflict, _Usage) as exc:
        print(f"fleetd: schedules: {exc.args[0] if exc.args else exc}", file=sys.stderr)
    return EXIT_USAGE
