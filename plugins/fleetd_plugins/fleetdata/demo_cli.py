"""`fleetd demo-data`: fill the configured fleet database with a demo fleet.

    fleetd demo-data [--companies N] [--vehicles N] [--days N] [--seed S]
                     [--until YYYY-MM-DD] [--replace] [--json]

Writes into `[data] url` (creating missing tables first): N companies with N vehicles
each, simulated over the N days up to `--until` (default yesterday, UTC). The same seed
and days give the same data. The companies' ids come from the seed, so running it twice
with one seed is refused unless `--replace` deletes those companies' rows first (only
theirs: other data is never touched); another `--seed` adds more companies. Errors are
one line on stderr, exit code 2, like every fleetd command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Only for annotations: every `fleetd` command builds this parser, and importing
    # the config package for it costs ~30 ms that --help and --version do not need.
    from fleetd import Config

__all__ = ["add_parser", "run"]

EXIT_USAGE = 2


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo-data", help="fill the fleet database ([data] url) with a seeded demo fleet"
    )
    p.add_argument("--companies", type=_positive, default=2, help="companies (default 2)")
    p.add_argument(
        "--vehicles", type=_positive, default=10, help="vehicles per company (default 10)"
    )
    p.add_argument("--days", type=_positive, default=30, help="days simulated (default 30)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument(
        "--until", type=date.fromisoformat, help="last day, YYYY-MM-DD (default yesterday)"
    )
    p.add_argument("--replace", action="store_true", help="replace this seed's companies")
    p.add_argument("--json", action="store_true")


def run(cfg: Config, a: argparse.Namespace) -> int:
    from .demo import DemoSpec, company_ids, delete_companies, write_demo
    from .plugin import open_source
    from .source import mask_url

    spec = DemoSpec(
        companies=a.companies, vehicles=a.vehicles, days=a.days, seed=a.seed, until=a.until
    )
    source = open_source(cfg)
    where = mask_url(source.url)
    started = time.monotonic()
    try:
        db = source.connect()
    except Exception as exc:
        print(f"fleetd: cannot open the fleet database {where}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        source.create_schema(db)
        ids = company_ids(spec)
        in_list, params = db.in_list("c", ids)
        existing = [
            r["id"] for r in db.all(f"SELECT id FROM companies WHERE id IN {in_list}", params)
        ]
        if existing and not a.replace:
            print(
                f"fleetd: {where} already holds the demo companies of seed {a.seed}; "
                "use --replace to recreate them or another --seed to add more",
                file=sys.stderr,
            )
            return EXIT_USAGE
        replaced = delete_companies(db, existing) if existing else 0
        counts = write_demo(db, spec)
    finally:
        db.close()
    body = {
        "url": where,
        "seed": spec.seed,
        "start_date": spec.first_day().isoformat(),
        "end_date": spec.last_day().isoformat(),
        "company_ids": ids,
        "rows": counts,
        "replaced_rows": replaced,
        "seconds": round(time.monotonic() - started, 2),
    }
    if a.json:
        print(json.dumps(body, indent=2))
    else:
        print(
            f"demo fleet written to {where} (seed {spec.seed}, {body['start_date']} to "
            f"{body['end_date']}, {body['seconds']} s):"
        )
        for table, n in counts.items():
            print(f"  {table:<17} {n:>10,}")
        if replaced:
            print(f"  (replaced {replaced:,} rows of the same companies)")
    return 0
