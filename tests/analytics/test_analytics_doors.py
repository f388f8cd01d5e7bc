"""GET /api/v1/admin/jobs/analytics and `fleetd analytics` against a real daemon and
the test redis-server: the answer's shape, grouping and filters, company isolation
(a company admin sees its own company, 403 for another's), 422 naming the field for
a bad query, and the CLI's table, --json and its one-line usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from api_client import PREFIX, api_config, auth, running_api
from conftest import fleetd_env

from fleetd.config import Config

URL = f"{PREFIX}/analytics"


async def test_analytics_answers_per_type_and_keeps_companies_apart(config: Config) -> None:
    async with running_api(api_config(config), roles=("api", "worker")) as api:
        jobs: list[dict[str, Any]] = [
            {"type": "noop", "company_id": "acme", "data": {"sleep_ms": 30}},
            {"type": "noop", "company_id": "acme"},
            {"type": "noop", "company_id": "beta", "data": {"fail_attempts": 1},
             "max_retries": 0},
        ]  # fmt: skip
        ids = [(await api.enqueue(j))["job_id"] for j in jobs]
        await api.wait_status(ids[0], "completed")
        await api.wait_status(ids[1], "completed")
        await api.wait_status(ids[2], "failed")

        r = await api.get(URL)
        assert r.status_code == 200, r.text
        a = r.json()["analytics"]
        assert (a["window"], a["step"], a["by"]) == ("hour", "1m", "type")
        assert 0.09 < a["error_bound"] < 0.091
        [noop] = a["groups"]
        assert (noop["type"], noop["company_id"]) == ("noop", None)
        assert (noop["completed"], noop["failed"], noop["enqueued"]) == (2, 1, 3)
        assert noop["run"]["count"] == 3 and noop["run"]["p99"] >= 27
        assert len(noop["series"]) == 60 and len(noop["slowest"]) == 3
        assert noop["slowest"][0]["job_id"] == ids[0]

        r = await api.get(URL, params={"by": "company", "window": "week"})
        groups = {g["company_id"]: g for g in r.json()["analytics"]["groups"]}
        assert set(groups) == {"acme", "beta"} and groups["beta"]["failure_rate"] == 1.0
        assert len(groups["acme"]["series"]) == 168

        r = await api.get(URL, params={"company_id": "beta", "by": "type_company"})
        assert [g["company_id"] for g in r.json()["analytics"]["groups"]] == ["beta"]
        r = await api.get(URL, params={"type": "other"})
        assert r.json()["analytics"]["groups"] == []

        # A company admin: its own company only, by default; another's is refused.
        acme = auth("acme")
        r = await api.get(URL, params={"by": "type_company"}, headers=acme)
        assert r.status_code == 200, r.text
        [only] = r.json()["analytics"]["groups"]
        assert (only["company_id"], only["completed"], only["failed"]) == ("acme", 2, 0)
        r = await api.get(URL, params={"company_id": "beta"}, headers=acme)
        assert r.status_code == 403
        assert "company_id" in r.json()["error"]["message"]

        for params, field in (({"window": "month"}, "window"), ({"by": "queue"}, "by")):
            r = await api.get(URL, params=params)
            assert r.status_code == 422, r.text
            error = r.json()["error"]
            assert [f["field"] for f in error["details"]["fields"]] == [field]


def cli(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetd.cli", "analytics", *args],
        env=fleetd_env(config), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_cli_prints_the_table_and_the_api_body(config: Config) -> None:
    async with running_api(api_config(config), roles=("api", "worker")) as api:
        job_id = (await api.enqueue({"type": "noop", "data": {"sleep_ms": 20}}))["job_id"]
        await api.wait_status(job_id, "completed")
        r = await api.get(URL, params={"window": "day"})
        out = cli(config, "--window", "day", "--json")
        assert out.returncode == 0, out.stderr
        body = json.loads(out.stdout)
        api_body = r.json()
        for b in (body, api_body):
            b["analytics"].pop("until")
        assert body == api_body
        table = cli(config, "--slowest")
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[1].split()[:3] == ["GROUP", "DONE", "FAILED"]
        assert lines[2].split()[:3] == ["noop", "1", "0"]
        assert lines[-1].startswith(f"slowest noop: {job_id} ")
    bad = cli(config, "--window", "month")
    assert bad.returncode == 2
    # argparse's usage, then its one error line, as for every command's flags.
    assert "invalid choice" in bad.stderr.splitlines()[-1] and "Traceback" not in bad.stderr
