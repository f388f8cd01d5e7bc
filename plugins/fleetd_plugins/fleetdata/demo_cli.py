"""`fleetd demo-data`: fill the configured fleet database with a demo fleet; `fleetd
data companies`: list the companies in it (what `--company` takes).

    fleetd demo-data [--create] [--companies N] [--vehicles N] [--days N] [--seed S]
                     [--until YYYY-MM-DD] [--replace] [--json]
    fleetd data companies [-q] [--json]
    fleetd data check [--json]

Writes into `[data] url`: N companies with N vehicles
each, simulated over the N days up to `--until` (default yesterday, UTC). The same seed
and days give the same data. The companies' ids come from the seed, so running it twice
with one seed is refused unless `--replace` deletes those companies' rows first (only
theirs: other data is never touched); another `--seed` adds more companies. Only
`--create` runs DDL (the demo schema), and only on a database made for the demo: a new
SQLite file, or a PostgreSQL database with no tables yet. Otherwise the tables must be
there already (fleetd never changes the schema of the platform's database).

`data check` compares the database with the declared contract (contract.py), with
clean-up's relations as `[data] cleanup_*` names them: one line per missing relation,
column, type or privilege, exit code 2; "fits" and 0 otherwise.

`data companies` prints each company's id, name, vehicles, drivers and the first and
last day with trips (the dates a report over them has figures for), by name; `-q` the
ids only, one a line (for `C=$(fleetd data companies -q | head -n 1)`). Like a job's
first query, it creates the schema, and on the embedded default's new database the
first-run demo fleet, so it lists what a report would see. Errors are one line on
stderr, exit code 2, like every fleetd command.
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

    from .db import Db

__all__ = ["add_parser", "run"]

EXIT_USAGE = 2
# The first and last trip come from the (company_id, started_at) index; counting a
# company's trips would read all of them (millions in production), so none are counted.
COMPANIES_SQL = """
SELECT c.id, c.name,
       (SELECT COUNT(*) FROM vehicles v WHERE v.company_id = c.id) AS vehicles,
       (SELECT COUNT(*) FROM drivers d WHERE d.company_id = c.id) AS drivers,
       (SELECT MIN(t.started_at) FROM trips t WHERE t.company_id = c.id) AS first_trip,
       (SELECT MAX(t.started_at) FROM trips t WHERE t.company_id = c.id) AS last_trip
FROM companies c ORDER BY c.name, c.id
"""


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
    p.add_argument(
        "--create",
        action="store_true",
        help="create the demo schema first (a new SQLite file or an empty database only)",
    )
    p.add_argument("--json", action="store_true")

    data = subparsers.add_parser("data", help="look into the fleet database ([data] url)")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    comp = dsub.add_parser("companies", help="the companies: ids, names, days with trips")
    comp.add_argument("-q", "--quiet", action="store_true", help="only the ids, one a line")
    comp.add_argument("--json", action="store_true")
    chk = dsub.add_parser("check", help="check the database against the fleet-data contract")
    chk.add_argument("--json", action="store_true")


def run(cfg: Config, a: argparse.Namespace) -> int:
    """`demo-data` or `data ACTION`; the exit code."""
    if a.command == "data":
        return _check(cfg, a) if a.data_command == "check" else _companies(cfg, a)
    return _demo_data(cfg, a)


def _day(moment: object) -> str | None:
    # "2026-11-30T08:15:00Z" (SQLite text, and psycopg's loader for PostgreSQL) -> the day.
    return None if moment is None else str(moment)[:10]


def _open(cfg: Config) -> tuple[Db, str] | None:
    """The fleet database of `cfg` and its masked URL; None (told on stderr) when it
    cannot be opened."""
    from .plugin import open_source
    from .source import mask_url

    source = open_source(cfg)
    where = mask_url(source.url)
    try:
        source.prepare_sync()
        return source.connect(), where
    except Exception as exc:
        print(f"fleetd: cannot open the fleet database {where}: {exc}", file=sys.stderr)
        return None


def _companies(cfg: Config, a: argparse.Namespace) -> int:
    if (opened := _open(cfg)) is None:
        return EXIT_USAGE
    db, where = opened
    try:
        rows = db.all(COMPANIES_SQL)
    except Exception as exc:  # tables missing: fleetd creates none in the platform's db
        print(
            f"fleetd: cannot read the companies of {where}: {str(exc).splitlines()[0]} "
            "(`fleetd data check` lists what is missing)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    finally:
        db.close()
    companies = [
        {"id": r["id"], "name": r["name"], "vehicles": int(r["vehicles"]),
         "drivers": int(r["drivers"]), "first_trip_day": _day(r["first_trip"]),
         "last_trip_day": _day(r["last_trip"])}
        for r in rows
    ]  # fmt: skip
    if a.json:
        print(json.dumps({"url": where, "companies": companies, "count": len(companies)},
                         indent=2))  # fmt: skip
    elif a.quiet:
        for c in companies:
            print(c["id"])
    else:
        for c in companies:
            trips = (
                f"trips {c['first_trip_day']} to {c['last_trip_day']}"
                if c["first_trip_day"]
                else "no trips"
            )
            print(f"{c['id']}  {c['name']}  vehicles {c['vehicles']}  drivers {c['drivers']}  "
                  f"{trips}")  # fmt: skip
        print(f"{len(companies)} company(ies) in {where}")
    return 0


def _check(cfg: Config, a: argparse.Namespace) -> int:
    from .config import DataConfig
    from .contract import check

    if (opened := _open(cfg)) is None:
        return EXIT_USAGE
    db, where = opened
    try:
        problems = check(db, cfg.section(DataConfig).cleanup_targets())
    finally:
        db.rollback()
        db.close()
    if a.json:
        print(json.dumps({"url": where, "problems": [str(p) for p in problems],
                          "fits": not problems}, indent=2))  # fmt: skip
    else:
        for problem in problems:
            print(problem)
        print(
            f"{where}: {len(problems)} problem(s) with the fleet-data contract"
            if problems
            else f"{where} fits the fleet-data contract",
            file=sys.stderr if problems else sys.stdout,
        )
    return EXIT_USAGE if problems else 0


def _has_tables(db: Db) -> bool:
    if db.dialect == "sqlite":
        return bool(db.value("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"))
    return bool(
        db.value(
            "SELECT COUNT(*) FROM information_schema.tables "
            "WHERE table_schema = ANY(current_schemas(false))"
        )
    )


def _demo_data(cfg: Config, a: argparse.Namespace) -> int:
    from .contract import check
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
        if a.create:
            if _has_tables(db):
                print(
                    f"fleetd: {where} already holds tables: --create only makes the demo "
                    "schema in a new SQLite file or an empty database made for the demo",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            source.create_schema(db)
        elif problems := check(db):
            print(
                f"fleetd: {where} does not hold the fleet tables ({problems[0]}); "
                "use --create for a new demo database",
                file=sys.stderr,
            )
            return EXIT_USAGE
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
