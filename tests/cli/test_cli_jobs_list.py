"""`fleetd jobs list` without `--status` (#19: it was a usage error): every status,
newest first, as a subprocess against the shared test Redis."""

from __future__ import annotations

import time

from conftest import fleetd_env
from daemons import cli_json, run_cli

from fleetd.config import Config


def test_every_status_newest_first_with_a_cursor(config: Config) -> None:
    env = fleetd_env(config)
    ids = []
    for company in ("acme", "globex", "acme"):
        ids.append(cli_json(env, "enqueue", "noop", "--company", company, "--json")["job_id"])
        time.sleep(0.002)  # distinct created_at
    first, middle, last = ids
    cli_json(env, "jobs", "cancel", middle, "--json")  # finished after every creation

    body = cli_json(env, "jobs", "list", "--json")
    assert set(body) == {"jobs", "status", "count", "limit", "next_cursor"}
    assert (body["status"], body["count"], body["limit"], body["next_cursor"]) == (
        None, 3, 50, None,
    )  # fmt: skip
    assert [(j["id"], j["status"]) for j in body["jobs"]] == [
        (middle, "cancelled"), (last, "pending"), (first, "pending"),
    ]  # fmt: skip

    page1 = cli_json(env, "jobs", "list", "--limit", "2", "--json")
    assert [j["id"] for j in page1["jobs"]] == [middle, last] and page1["next_cursor"]
    page2 = cli_json(
        env, "jobs", "list", "--limit", "2", "--cursor", page1["next_cursor"], "--json"
    )
    assert ([j["id"] for j in page2["jobs"]], page2["next_cursor"]) == ([first], None)

    acme = cli_json(env, "jobs", "list", "--company", "acme", "--json")
    assert [j["id"] for j in acme["jobs"]] == [last, first]

    human = run_cli(env, "jobs", "list")
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[0].startswith(f"{middle}  noop                 cancelled  priority 5")
    assert lines[-1] == "3 job(s)"
    # With --status the listing is as before: one status, no status column.
    one = run_cli(env, "jobs", "list", "--status", "pending").stdout.splitlines()
    assert one[0].startswith(f"{last}  noop                 priority 5")
