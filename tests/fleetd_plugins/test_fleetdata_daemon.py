"""The fleet-data job types end to end: an in-process Daemon (worker and scheduler roles)
on the test redis-server runs a report, an export, maintenance reminders (two racing
jobs, their e-mails delivered to the outbox) and a clean-up, company-scoped, on SQLite
and on the real PostgreSQL server; `fleetd run` on the embedded default makes a demo
fleet on first use and runs the spec's default schedules; `fleetd demo-data` fills a
PostgreSQL database."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import trio
from conftest import fleetd_env
from daemons import Fleet, cli_json, run_cli
from fleetd_plugins.email import EmailConfig
from fleetdata_db import (
    BACKENDS,
    Raw,
    bounds,
    company_ids,
    data_config,
    drop,
    empty_url,
    fresh_url,
    period_inside,
)
from test_fleetdata_reminders import make_due, managers_of

from fleetd.config import Config
from fleetd.engine import build_registry
from fleetd.jobs.model import Job, JobStatus
from fleetd.plugins.discovery import default_schedules
from fleetd.runtime.daemon import Daemon

TERMINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = fresh_url(request.param, tmp_path)
    yield url
    drop(url)


async def settle(daemon: Daemon, job_id: str, limit: float = 30) -> Job:
    with trio.fail_after(limit):
        while True:
            job = await daemon.engine.queue.get(job_id)
            assert job is not None
            if job.status in TERMINAL:
                assert job.status is JobStatus.COMPLETED, (job.status, job.error)
                return job
            await trio.sleep(0.02)


async def test_every_job_type_through_a_daemon(config: Config, url: str, tmp_path: Path) -> None:
    raw = Raw(url)
    a, b = company_ids(url)
    make_due(raw, b)
    outbox = tmp_path / "outbox"
    cfg = data_config(config, url)
    cfg = dataclasses.replace(
        cfg,
        daemon=dataclasses.replace(cfg.daemon, roles=("worker", "scheduler")),
    ).with_section(dataclasses.replace(cfg.section(EmailConfig), outbox_dir=str(outbox)))
    start, end = period_inside()
    lo, hi = bounds(start, end)
    daemon = Daemon(cfg)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        q = daemon.engine.queue

        async def enqueue(job_type: str, data: dict[str, Any], company: str) -> str:
            r = await q.enqueue({"type": job_type, "data": data, "company_id": company})
            return r.job_id

        ids = {
            "report": await enqueue("report_generation", {"report_type": "fleet_summary",
                                    "start_date": start, "end_date": end, "format": "xlsx"}, a),
            "export": await enqueue("data_export", {"export_type": "trips", "format": "json",
                                    "start_date": start, "end_date": end}, a),
            "cleanup": await enqueue("data_cleanup", {"cleanup_type": "driver_events",
                                     "older_than_days": 20}, a),
            # Two checks of company b at once (the daemon runs five jobs in parallel):
            # one set of reminders, one set of e-mails between them.
            "remind1": await enqueue("maintenance_reminder", {}, b),
            "remind2": await enqueue("maintenance_reminder", {}, b),
        }  # fmt: skip
        jobs = {name: await settle(daemon, job_id) for name, job_id in ids.items()}
        with trio.fail_after(30):  # the e-mails the reminders enqueued
            while (st := await q.stats())["pending"] + st["processing"] + st["retrying"]:
                await trio.sleep(0.02)
        sent = (await q.list_jobs(JobStatus.COMPLETED, job_type="email_notification")).jobs
        assert (await q.stats())["failed"] == 0
        daemon.request_stop()

    results: dict[str, dict[str, Any]] = {n: j.result or {} for n, j in jobs.items()}
    report = results["report"]
    assert report["summary"]["trips"] == raw.value(
        "SELECT COUNT(*) FROM trips WHERE company_id = ? AND started_at >= ? AND started_at < ?",
        a, lo, hi,
    )  # fmt: skip
    book = openpyxl.load_workbook(report["artifacts"][0]["path"], read_only=True)
    assert len(list(book["Vehicles"].iter_rows())) == report["summary"]["vehicles"] + 1
    book.close()
    export = results["export"]
    trips = json.loads(Path(export["artifacts"][0]["path"]).read_text())
    assert len(trips) == export["rows"] > 0 and {t["company_id"] for t in trips} == {a}
    assert results["cleanup"]["deleted"] > 0 and results["cleanup"]["company_id"] == a
    assert jobs["export"].progress is not None and jobs["export"].progress["percent"] == 100.0

    reminders = [results["remind1"], results["remind2"]]
    due = reminders[0]["due"]
    assert due >= 2 and sum(r["created"] for r in reminders) == due
    assert raw.value("SELECT COUNT(*) FROM maintenance_reminders") == due
    managers = managers_of(raw, b)
    assert len(sent) == due * len(managers)  # never twice, though both jobs tried
    assert {m.company_id for m in sent} == {b}
    eml = sorted(outbox.glob("*.eml"))
    assert len(eml) == len(sent)
    assert all("Maintenance due: " in p.read_text() for p in eml)


async def test_the_plugin_ships_the_spec_default_schedules(config: Config) -> None:
    registry = build_registry(config)
    assert registry.plugins is not None
    mine = {s["name"]: s for s in default_schedules(registry.plugins)}
    assert {n: (s["job_type"], s["schedule"]) for n, s in mine.items()} == {
        "Daily Data Cleanup": ("data_cleanup", "@daily"),
        "Weekly Maintenance Check": ("maintenance_reminder", "@weekly"),
        "Monthly Fleet Report": ("report_generation", "@monthly"),
    }
    assert registry.plugins.schedule_owners == dict.fromkeys(mine, "fleetdata")
    assert mine["Daily Data Cleanup"]["data"] == {"cleanup_type": "gps_tracks",
                                                  "older_than_days": 90}  # fmt: skip
    assert mine["Daily Data Cleanup"]["priority"] == 1


def test_fleetd_run_on_the_embedded_default(config: Config, tmp_path: Path) -> None:
    """A newcomer's first run: no [data] url, so fleet.db appears in the state directory
    with a demo fleet on the first job, and last month's report has content; the
    default schedules exist and run."""
    env = fleetd_env(config) | {"FLEETD_DAEMON_ROLES": "worker,scheduler",
                                "FLEETD_DATA_DEMO": "true"}  # fmt: skip
    fleet = Fleet(tmp_path / "fleet")
    try:
        fleet.start(env)
        done = cli_json(env, "enqueue", "report_generation", "--data",
                        '{"report_type": "fleet_summary"}', "--wait", "--json")  # fmt: skip
        job = done["job"]
        assert job["status"] == "completed", job
        assert job["result"]["summary"]["trips"] > 20
        assert (config.state_dir / "fleet.db").exists()
        listed = cli_json(env, "schedules", "list", "--json")["scheduled_jobs"]
        assert {s["id"] for s in listed} >= {
            "daily-data-cleanup", "weekly-maintenance-check", "monthly-fleet-report"
        }  # fmt: skip
        fired = cli_json(env, "schedules", "run-now", "weekly-maintenance-check", "--json")
        shown = wait_job(env, fired["job_id"])
        active = Raw(f"sqlite:///{config.state_dir / 'fleet.db'}").value(
            "SELECT COUNT(*) FROM vehicles WHERE status = 'active'"
        )
        assert shown["result"]["vehicles_checked"] == active >= 3
        assert "company_id" not in shown  # the default schedules span every company
        bad = run_cli(env, "enqueue", "data_export", "--data", '{"export_type": "trucks"}')
        assert bad.returncode == 2 and "data.export_type: must be one of" in bad.stderr
    finally:
        fleet.close()
    assert "created a demo fleet" in fleet.procs[0].log()


def wait_job(env: dict[str, str], job_id: str) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job: dict[str, Any] = cli_json(env, "jobs", "show", job_id, "--json")["job"]
        if job["status"] in ("completed", "failed", "cancelled"):
            assert job["status"] == "completed", job
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_demo_data_command_fills_postgresql(config: Config, tmp_path: Path) -> None:
    url = empty_url("postgresql", tmp_path)
    try:
        env = fleetd_env(config) | {"FLEETD_DATA_URL": url}
        args = ("demo-data", "--companies", "2", "--vehicles", "2", "--days", "3", "--seed", "4")
        bare = run_cli(env, *args)  # fleetd makes no tables unless told to
        assert bare.returncode == 2 and "use --create for a new demo database" in bare.stderr
        body = cli_json(env, *args, "--create", "--json")
        raw = Raw(url)
        again_create = run_cli(env, *args, "--create")
        assert again_create.returncode == 2 and "already holds tables" in again_create.stderr
        for table, n in body["rows"].items():
            assert raw.value(f"SELECT COUNT(*) FROM {table}") == n
        assert body["rows"]["companies"] == 2 and body["rows"]["vehicles"] == 4
        again = run_cli(env, *args)
        assert again.returncode == 2
        assert "already holds the demo companies of seed 4; use --replace" in again.stderr
        more = cli_json(env, *args[:-1], "5", "--json")  # another seed adds companies
        assert raw.value("SELECT COUNT(*) FROM companies") == 4
        replaced = cli_json(env, *args, "--replace", "--json")
        assert replaced["rows"] == body["rows"] and replaced["replaced_rows"] > 0
        assert raw.value("SELECT COUNT(*) FROM companies") == 4
        assert set(more["company_ids"]) <= {str(c) for (c,) in raw.rows("SELECT id FROM companies")}
    finally:
        drop(url)
    assert os.environ.get("FLEETD_DATA_URL") is None  # the test's env only
