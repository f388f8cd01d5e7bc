"""The README's fleet-data example, run as written (bash, the `fleetd` console script)
against a `fleetd run` worker on the embedded default database: `fleetd data companies`
finds the demo fleet's company, and the report over last calendar month has figures
(#19: the README used January 2024 and a made-up company id, so its examples failed
or reported zeros on the demo fleet)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import fleetd_env
from daemons import Fleet, cli_json, run_cli

from fleetd.config import Config

# The README's lines ("Fleet data: reports, exports, maintenance reminders, clean-up"),
# up to the report; the lead copies them there, so keep the two the same.
README_EXAMPLE = """\
fleetd data companies                       # ids, names and the days with trips
C=$(fleetd data companies -q | head -n 1)   # the demo fleet has one company
fleetd enqueue report_generation --company "$C" --wait --data \\
  '{"report_type": "fleet_summary", "format": "xlsx"}'          # last calendar month
"""


def test_the_readme_shows_this_example() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert README_EXAMPLE in readme


def test_the_readme_report_example_reports_the_demo_fleet(config: Config, tmp_path: Path) -> None:
    # A real Redis and no [data] url: the demo fleet only when asked for (#19 point 3).
    env = fleetd_env(config) | {"FLEETD_DAEMON_ROLES": "worker", "FLEETD_DATA_DEMO": "true"}
    # The console script of this interpreter's environment, first on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    fleet = Fleet(tmp_path / "fleet")
    try:
        fleet.start(env)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", README_EXAMPLE],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        fleet.close()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    company, name = lines[0].split("  ")[:2]
    assert name == "Nordwind Logistics" and "trips 20" in lines[0]
    assert lines[1].startswith("1 company(ies) in sqlite:///")
    header = lines[2].split()
    assert header[1:3] == ["report_generation", "completed"], done.stdout
    assert f"  company_id: {company}" in lines
    [result] = [ln for ln in lines if ln.startswith("  result: ")]
    summary = json.loads(result.removeprefix("  result: "))["summary"]
    assert summary["vehicles"] == 5
    for figure in ("trips", "distance_km", "driving_hours", "fuel_used_l", "fuel_cost"):
        assert summary[figure] > 0, (figure, summary)


def test_data_companies_lists_every_company_by_name(config: Config, tmp_path: Path) -> None:
    env = fleetd_env(config) | {"FLEETD_DATA_URL": f"sqlite:///{tmp_path / 'fleet.db'}"}
    made = cli_json(env, "demo-data", "--create", "--companies", "3", "--vehicles", "2",
                    "--days", "3", "--until", "2025-06-30", "--json")  # fmt: skip
    body = cli_json(env, "data", "companies", "--json")
    assert body["count"] == 3 and body["url"] == made["url"]
    companies = body["companies"]
    assert sorted(c["id"] for c in companies) == sorted(made["company_ids"])
    assert [c["name"] for c in companies] == sorted(c["name"] for c in companies)
    for c in companies:
        assert (c["vehicles"], c["first_trip_day"], c["last_trip_day"]) == (
            2, "2025-06-28", "2025-06-30",
        )  # fmt: skip
        assert c["drivers"] >= 2
    quiet = run_cli(env, "data", "companies", "-q")
    assert quiet.stdout.splitlines() == [c["id"] for c in companies]
    empty = run_cli(env | {"FLEETD_DATA_URL": f"sqlite:///{tmp_path / 'empty.db'}"},
                    "data", "companies")  # fmt: skip
    # A database without the fleet tables: fleetd creates none, and says where to look.
    assert empty.returncode == 2 and "`fleetd data check` lists what is missing" in empty.stderr
