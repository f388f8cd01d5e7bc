"""Every door writes its audit entry, against a real daemon and the test redis-server:
the HTTP API, the CLI, fleetd.client.Client, the scheduler and handlers' ctx.enqueue —
each with its door, its subject form and its outcome — and the listing refuses an
unknown `action` (or `door`) filter with a 422 naming it.

CLI commands run in-process through `fleetd.cli.main` in a worker thread (the daemon
keeps running on the trio thread); each builds and closes its own engine, as the
`fleetd` executable does.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from typing import Any

import pytest
import trio
from api_client import PREFIX, Api, api_config, running_api
from conftest import fleetd_env
from pool import registry_with

from fleetd.audit.entry import Action
from fleetd.cli.commands import main
from fleetd.client import Client
from fleetd.config import Config
from fleetd.jobs.context import JobContext
from fleetd.jobs.handlers import JobHandler

CLI_SUBJECT = f"cli:{getpass.getuser()}"


class Parent(JobHandler):
    """Enqueues one follow-up job: the handler door."""

    job_type = "parent"

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        child = await ctx.enqueue("noop", {"from": ctx.job.id})
        return {"child": child.job_id}


@pytest.fixture
def cli(
    config: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Any]:
    """await cli(*args) → the parsed --json output of `fleetd <args> --json` (exit 0)."""
    for key, value in fleetd_env(api_config(config)).items():
        if key.startswith("FLEETD_"):
            monkeypatch.setenv(key, value)

    async def run(*args: str) -> Any:
        code = await trio.to_thread.run_sync(main, [*args, "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out)

    return run


async def entries(api: Api, count: int, **filters: str) -> list[dict[str, Any]]:
    """The newest entries matching `filters`, once there are at least `count`."""
    with trio.fail_after(10):
        while True:
            r = await api.get(f"{PREFIX}/audit", params={"limit": 100, **filters})
            assert r.status_code == 200, r.text
            found: list[dict[str, Any]] = r.json()["entries"]
            if len(found) >= count:
                return found
            await trio.sleep(0.05)


def brief(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["action"], e["subject"], e["target"], e["outcome"]) for e in reversed(found)]


async def test_http_entries_carry_their_door(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        job_id = (await api.enqueue({"type": "noop"}))["job_id"]
        [entry] = await entries(api, 1, door="http")
        assert entry["action"] == "job.enqueue" and entry["target"] == job_id
        assert entry["subject"] == "tester" and entry["status"] == 201
        assert len(entry["uid"]) == 32


async def test_cli_mutations_are_audited_with_the_os_user(
    config: Config, cli: Callable[..., Any]
) -> None:
    async with running_api(api_config(config)) as api:
        job_id = (await cli("enqueue", "noop", "--company", "acme"))["job_id"]
        await cli("jobs", "cancel", job_id)
        await cli("jobs", "reset", job_id)
        await cli("cleanup", "--older-than", "1d")
        sid = (await cli("schedules", "add", "n", "--type", "noop", "--schedule", "1h"))[
            "scheduled_job"
        ]["id"]
        await cli("schedules", "update", sid, "--schedule", "2h")
        await cli("schedules", "pause", sid)
        await cli("schedules", "resume", sid)
        run_now = await cli("schedules", "run-now", sid)
        await cli("schedules", "rm", sid)
        # A refusal is audited too (there is no such job).
        assert await trio.to_thread.run_sync(main, ["jobs", "cancel", "job_nope"]) == 2
        found = await entries(api, 11, door="cli")
        assert brief(found) == [
            ("job.enqueue", CLI_SUBJECT, job_id, "ok"),
            ("job.cancel", CLI_SUBJECT, job_id, "ok"),
            ("job.reset", CLI_SUBJECT, job_id, "ok"),
            ("job.cleanup", CLI_SUBJECT, None, "ok"),
            ("schedule.create", CLI_SUBJECT, sid, "ok"),
            ("schedule.update", CLI_SUBJECT, sid, "ok"),
            ("schedule.pause", CLI_SUBJECT, sid, "ok"),
            ("schedule.resume", CLI_SUBJECT, sid, "ok"),
            ("schedule.run_now", CLI_SUBJECT, sid, "ok"),
            ("schedule.delete", CLI_SUBJECT, sid, "ok"),
            ("job.cancel", CLI_SUBJECT, "job_nope", "not_found"),
        ]
        by_action = {e["action"]: e for e in found}
        assert by_action["job.enqueue"]["company_id"] == "acme"
        assert by_action["job.enqueue"]["detail"] == {"type": "noop", "duplicate": False}
        assert by_action["schedule.update"]["detail"] == {"fields": ["schedule"]}
        assert by_action["schedule.run_now"]["detail"]["job_id"] == run_now["job_id"]
        assert by_action["job.cleanup"]["detail"] == {"older_than": "1d", "deleted": 0}
        assert {e["status"] for e in found} == {0} and {e["method"] for e in found} == {""}


async def test_client_calls_are_audited_in_the_background(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        client = Client(config, name="billing")
        try:
            one = await trio.to_thread.run_sync(lambda: client.enqueue("noop", {"n": 1}))
            many = await trio.to_thread.run_sync(
                lambda: client.enqueue_many([{"type": "noop"}, {"type": "noop"}])
            )
            await trio.to_thread.run_sync(client.cancel, one.job_id)
            await trio.to_thread.run_sync(client.reset, one.job_id)
            await trio.to_thread.run_sync(client.cancel, many[0].job_id)
            await trio.to_thread.run_sync(client.cancel, many[0].job_id)  # already final
            with pytest.raises(ValueError):
                client.enqueue("no-such-type")
            # Written in the background, before close.
            found = await entries(api, 7, door="client")
        finally:
            await trio.to_thread.run_sync(client.close)
        assert brief(found) == [
            ("job.enqueue", "client:billing", one.job_id, "ok"),
            ("job.enqueue_bulk", "client:billing", None, "ok"),
            ("job.cancel", "client:billing", one.job_id, "ok"),
            ("job.reset", "client:billing", one.job_id, "ok"),
            ("job.cancel", "client:billing", many[0].job_id, "ok"),
            ("job.cancel", "client:billing", many[0].job_id, "conflict"),
            ("job.enqueue", "client:billing", None, "validation_failed"),
        ]
        assert found[-2]["detail"] == {"count": 2, "duplicates": 0}


async def test_scheduler_and_handler_jobs_are_audited(config: Config) -> None:
    registry = registry_with(Parent())
    roles = ("api", "worker", "scheduler")
    async with running_api(api_config(config), roles=roles, registry=registry) as api:
        r = await api.post(
            f"{PREFIX}/scheduled",
            json={"name": "tick", "job_type": "parent", "schedule": "1s", "company_id": "acme"},
        )
        assert r.status_code == 201, r.text
        sid = r.json()["scheduled_job"]["id"]
        [fired, *_] = await entries(api, 1, door="scheduler", action="job.enqueue")
        assert fired["subject"] == f"scheduler:{sid}" and fired["company_id"] == "acme"
        assert fired["detail"]["schedule_id"] == sid and fired["outcome"] == "ok"
        parent = fired["target"]
        await api.delete(f"{PREFIX}/scheduled/{sid}")
        handler = await entries(api, 1, door="handler", subject=f"job:{parent}")
        assert handler[-1]["action"] == "job.enqueue" and handler[-1]["outcome"] == "ok"
        assert handler[-1]["company_id"] == "acme"
        child = (await api.get(f"{PREFIX}/{handler[-1]['target']}")).json()["job"]
        assert child["data"] == {"from": parent}


async def test_unknown_action_or_door_filter_is_a_422_naming_it(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        for name, value in (("action", "job.delete"), ("door", "smtp")):
            r = await api.get(f"{PREFIX}/audit", params={name: value})
            assert r.status_code == 422, r.text
            error = r.json()["error"]
            assert [f["field"] for f in error["details"]["fields"]] == [name]
            assert "job.enqueue" in error["message"] or "http" in error["message"]
        for action in Action:  # every documented value is accepted
            r = await api.get(f"{PREFIX}/audit", params={"action": action.value})
            assert r.status_code == 200, action
