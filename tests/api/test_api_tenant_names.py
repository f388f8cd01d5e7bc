"""Caller-chosen names and ids tell a company nothing of another's, against a real daemon.

Companies acme and globex choose the same schedule name, template name, workflow name
and idempotency key: each gets its own object, numbered and flagged as if the other did
not exist, while a company's own duplicate still answers 409 (or the duplicate job).
Schedule ids are unique across companies, so a company-bound token cannot choose one:
an id globex uses, a platform default's id and an unused id answer acme the same 422;
platform admins choose ids as before, and a schedule stored with a chosen id (by a
platform admin, or by an earlier version for a company token) keeps working. A
company's schedule cannot fan out over a plugin's list of every company.
"""

from __future__ import annotations

from typing import Any

import httpx
from api_client import PREFIX, Api, api_config, auth, running_api

from fleetd.config import Config

SCHEDULED = f"{PREFIX}/scheduled"
TEMPLATES = "/api/v1/admin/templates"
WORKFLOWS = "/api/v1/admin/workflows"
ACME = auth("acme", subject="alice", ttl=86_400)
GLOBEX = auth("globex", subject="bob", ttl=86_400)
DAILY = {"name": "daily-report", "job_type": "noop", "schedule": "@daily"}


async def create(api: Api, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    r = await api.post(SCHEDULED, json=body, headers=headers)
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()["scheduled_job"]
    return job


def error(r: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = r.json()["error"]
    return body


async def test_two_companies_share_a_schedule_name_and_own_duplicates_conflict(
    config: Config,
) -> None:
    async with running_api(api_config(config)) as api:
        g = await create(api, DAILY, GLOBEX)
        a = await create(api, DAILY, ACME)
        assert (a["company_id"], g["company_id"]) == ("acme", "globex") and a["id"] != g["id"]
        # A company's own duplicate name is a conflict naming its own schedule only.
        dup = await api.post(SCHEDULED, json=DAILY, headers=ACME)
        assert dup.status_code == 409 and error(dup)["code"] == "conflict", dup.text
        assert a["id"] in error(dup)["message"] and g["id"] not in dup.text
        # Renaming onto a name only the other company uses is no conflict either.
        other = await create(api, {**DAILY, "name": "weekly"}, GLOBEX)
        mine = await create(api, {**DAILY, "name": "mine"}, ACME)
        r = await api.put(f"{SCHEDULED}/{mine['id']}", json={"name": "weekly"}, headers=ACME)
        assert r.status_code == 200 and r.json()["scheduled_job"]["name"] == "weekly", r.text
        r = await api.put(f"{SCHEDULED}/{mine['id']}", json={"name": "daily-report"}, headers=ACME)
        assert r.status_code == 409 and other["id"] not in r.text, r.text


async def test_a_company_token_cannot_choose_a_schedule_id(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        # Platform admins choose ids: globex's "nightly", and a default-like id of no company.
        theirs = await create(api, {**DAILY, "id": "nightly", "company_id": "globex"}, auth())
        assert theirs["id"] == "nightly" and theirs["company_id"] == "globex"
        await create(api, {**DAILY, "id": "daily-data-cleanup", "name": "cleanup"}, auth())
        answers = [
            await api.post(SCHEDULED, json={**DAILY, "id": sid}, headers=ACME)
            for sid in ("nightly", "daily-data-cleanup", "never-used")
        ]
        for r in answers:
            assert r.status_code == 422, r.text
            assert error(r)["code"] == "validation_failed"
            assert [f["field"] for f in error(r)["details"]["fields"]] == ["id"]
        assert answers[0].json() == answers[1].json() == answers[2].json()
        # Nothing was stored for acme; globex's schedule is untouched.
        listed = (await api.get(SCHEDULED, headers=ACME)).json()
        assert listed["count"] == 0, listed
        kept = (await api.get(f"{SCHEDULED}/nightly", headers=GLOBEX)).json()["scheduled_job"]
        assert kept == theirs
        # Without an id (or with null) acme gets one assigned, whatever globex chose.
        made = await create(api, {**DAILY, "id": None}, ACME)
        assert made["id"].startswith("sch_") and made["company_id"] == "acme"
        # A platform admin's own duplicate id is still a conflict.
        r = await api.post(SCHEDULED, json={**DAILY, "id": "nightly", "name": "x"}, headers=auth())
        assert r.status_code == 409 and error(r)["code"] == "conflict", r.text


async def test_a_company_schedule_with_a_chosen_id_keeps_working(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        # As stored by a platform admin, or by a version that let company tokens choose.
        await create(api, {**DAILY, "id": "acme-nightly", "company_id": "acme"}, auth())
        path = f"{SCHEDULED}/acme-nightly"
        r = await api.get(path, headers=ACME)
        assert r.status_code == 200 and r.json()["scheduled_job"]["company_id"] == "acme"
        r = await api.put(path, json={"id": "acme-nightly", "priority": 9}, headers=ACME)
        assert r.status_code == 200 and r.json()["scheduled_job"]["priority"] == 9, r.text
        assert (await api.get(path, headers=GLOBEX)).status_code == 404
        r = await api.delete(path, headers=ACME)
        assert r.status_code == 200 and r.json() == {"id": "acme-nightly", "deleted": True}


async def test_templates_workflows_and_idempotency_keys_are_per_company(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        tmpl = {"name": "export", "job": {"type": "noop"}}
        for _ in range(2):
            r = await api.post(TEMPLATES, json=tmpl, headers=GLOBEX)
            assert r.status_code == 201, r.text
        # acme's first version of the name is 1, as if globex had none.
        r = await api.post(TEMPLATES, json=tmpl, headers=ACME)
        assert r.status_code == 201 and r.json()["template"]["version"] == 1, r.text
        flow = {"name": "nightly", "nodes": [{"name": "a", "type": "noop"}]}
        ids = set()
        for who in (GLOBEX, ACME, ACME):
            r = await api.post(WORKFLOWS, json=flow, headers=who)
            assert r.status_code == 201, r.text
            ids.add(r.json()["workflow_id"])
        assert len(ids) == 3  # workflow names are labels, never unique
        key = "order-42"
        g = await api.enqueue({"type": "noop"}, headers={**GLOBEX, "Idempotency-Key": key})
        a = await api.enqueue({"type": "noop"}, headers={**ACME, "Idempotency-Key": key})
        assert a["job_id"] != g["job_id"] and not a.get("duplicate"), a
        again = await api.enqueue({"type": "noop"}, headers={**ACME, "Idempotency-Key": key})
        assert again["job_id"] == a["job_id"] and again.get("duplicate") is True, again


async def test_a_company_schedule_cannot_fan_out_over_a_list_of_every_company(
    config: Config,
) -> None:
    async with running_api(api_config(config)) as api:
        report = {
            "name": "report",
            "params": {"type": "object", "properties": {"company_id": {"type": "string"}}},
            "job": {"type": "noop", "data": {"for": {"$param": "company_id"}}},
        }
        r = await api.post(TEMPLATES, json=report, headers=auth())  # a platform template
        assert r.status_code == 201, r.text
        fan_out = {"name": "fan", "schedule": "@monthly", "template": {"name": "report"}}
        # "companies" (the fleetdata plugin's list: every company's id and name) and a
        # list that does not exist answer acme alike; so does a platform admin's schedule
        # of acme.
        sent = [
            ({**fan_out, "for_each": "companies"}, ACME),
            ({**fan_out, "for_each": "no-such-list"}, ACME),
            ({**fan_out, "for_each": "companies", "company_id": "acme"}, auth()),
        ]
        answers = [await api.post(SCHEDULED, json=body, headers=who) for body, who in sent]
        for r in answers:
            assert r.status_code == 422, r.text
            assert [f["field"] for f in error(r)["details"]["fields"]] == ["for_each"]
        assert error(answers[0]) == error(answers[1]) == error(answers[2])
        # A list given inline is the company's own; an update cannot name a list either.
        mine = await create(api, {**fan_out, "for_each": [{"company_id": "acme"}]}, ACME)
        r = await api.put(f"{SCHEDULED}/{mine['id']}", json={"for_each": "companies"},
                          headers=ACME)  # fmt: skip
        assert r.status_code == 422 and error(r)["details"]["fields"][0]["field"] == "for_each"
        # A platform schedule (no company) still names one: each run is the company its
        # rendered body names.
        theirs = await create(api, {**fan_out, "name": "all", "for_each": "companies"}, auth())
        assert theirs["for_each"] == "companies" and theirs.get("company_id") is None
