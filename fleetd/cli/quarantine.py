"""`fleetd quarantine list|release`: the job types of companies held after repeated
resource exhaustion, crashes or timeouts (fleetd.jobs.quarantine).

- `list`: every quarantined part, oldest first (`--json`: the body of
  `GET /api/v1/admin/quarantines`);
- `release TYPE [--company ID]`: claims serve the part again and its held jobs run
  (audited, `quarantine.release`); exit 2 when it is not quarantined.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from fleetd.audit.entry import Action
from fleetd.cli.auditing import recorded
from fleetd.cli.common import fail, print_json

if TYPE_CHECKING:
    from fleetd.engine import Engine

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    sp = sub.add_parser("quarantine", help="job types held after repeated resource failures")
    sp.add_argument("action", choices=["list", "release"])
    sp.add_argument("job_type", nargs="?", metavar="TYPE", help="release: the job type")
    sp.add_argument("--company", default=None, help="release: the company (none: no company)")
    sp.add_argument("--json", action="store_true")


def run(engine: Engine, a: argparse.Namespace) -> int:
    from fleetd.jobs.quarantine import list_quarantines, release

    if a.action == "list":
        if a.job_type or a.company:
            fail("quarantine list takes no TYPE and no --company")
        found = engine.link.run_sync(lambda c: list_quarantines(c, engine.spaces))
        items = [q.to_dict() for q in found]
        if a.json:
            print_json({"quarantines": items, "count": len(items)})
            return 0
        if not items:
            print("no job type quarantined")
        for q in items:
            kinds = ", ".join(f"{n} {k}" for k, n in q["kinds"].items())
            print(f"{q['job_type']}  company {q['company_id'] or '(none)'}  since {q['since']}"
                  f"  {q['failures']} failures ({kinds})  last job {q['last_job_id']}")  # fmt: skip
        return 0
    if not a.job_type:
        fail("quarantine release needs the job TYPE (and --company ID)")
    target = f"{a.job_type}/{a.company or ''}"
    with recorded(engine, Action.QUARANTINE_RELEASE, target) as rec:
        got = engine.link.run_sync(lambda c: release(c, engine.spaces, a.job_type, a.company))
        if got is None:
            rec.outcome = "not_found"
            fail(f"job type {a.job_type!r} of company {a.company or ''!r} is not quarantined")
        rec.detail = {"failures": got.failures, "kinds": got.kinds}
    if a.json:
        print_json({"released": got.to_dict()})
    else:
        print(f"released {a.job_type} of company {a.company or '(none)'}: its jobs run again")
    return 0
