"""GET /jobs/scheduled in cursor pages against a real daemon and Redis: every schedule
exactly once, oldest first, while schedules are created and deleted between page reads;
a company-bound token pages through its own company's only, whatever cursor it sends;
a bad limit or cursor is a 422 naming the field, as the job listing answers."""

from __future__ import annotations

from typing import Any

from api_client import PREFIX, Api, api_config, auth, running_api

from fleetd.api.openapi import document
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.schedules.store import ScheduleOps

LIST = f"{PREFIX}/scheduled"


def create(engine: Engine, count: int, prefix: str, company: str | None = None) -> list[str]:
    """`count` schedules made through the store (the API's own code), their ids in order."""
    ops = ScheduleOps.from_engine(engine)
    body: dict[str, Any] = {"job_type": "noop", "schedule": "@daily", "company_id": company}
    return [
        engine.link.run_sync(lambda c, i=i: ops.add(c, {**body, "name": f"{prefix} {i}"})).id
        for i in range(count)
    ]


def in_listing_order(engine: Engine, ids: list[str]) -> list[str]:
    """Oldest first, ties (one millisecond) by id: the order the listing promises."""
    ops = ScheduleOps.from_engine(engine)
    made = {i: engine.link.run_sync(ops.require, i).created_at_ms for i in ids}
    return sorted(ids, key=lambda i: (made[i], i))


async def pages(
    api: Api, limit: int | None, headers: dict[str, str] | None = None, cursor: str | None = None
) -> list[dict[str, Any]]:
    """Every page from `cursor` on, following next_cursor."""
    out: list[dict[str, Any]] = []
    while True:
        params = {k: v for k, v in (("limit", limit), ("cursor", cursor)) if v is not None}
        r = await api.get(LIST, params=params, headers=headers or api.headers)
        assert r.status_code == 200, r.text
        out.append(r.json())
        if (cursor := out[-1]["next_cursor"]) is None:
            return out


def ids_of(listed: list[dict[str, Any]]) -> list[str]:
    return [s["id"] for page in listed for s in page["scheduled_jobs"]]


async def test_pages_list_every_schedule_once_oldest_first(config: Config, engine: Engine) -> None:
    made = create(engine, 250, "Export")
    async with running_api(api_config(config)) as api:
        listed = await pages(api, 100)
        assert [p["count"] for p in listed] == [100, 100, 50]
        assert all(set(p) == {"scheduled_jobs", "count", "limit", "next_cursor"} for p in listed)
        assert all(p["limit"] == 100 for p in listed)
        assert ids_of(listed) == in_listing_order(engine, made)
        # The default page is the job listing's: 50, with a cursor to go on.
        first = (await api.get(LIST)).json()
        assert first["count"] == 50 and first["limit"] == 50 and first["next_cursor"]
        assert [s["id"] for s in first["scheduled_jobs"]] == ids_of(listed)[:50]
        # A page that ends exactly at the last schedule says so: no empty page after it.
        exact = await pages(api, 125)
        assert [p["count"] for p in exact] == [125, 125] and exact[-1]["next_cursor"] is None


async def test_creates_and_deletes_between_pages_skip_and_repeat_nothing(
    config: Config, engine: Engine
) -> None:
    made = in_listing_order(engine, create(engine, 30, "Report"))
    async with running_api(api_config(config)) as api:
        first = (await api.get(LIST, params={"limit": 10})).json()
        assert [s["id"] for s in first["scheduled_jobs"]] == made[:10]
        # The cursor's own schedule, one seen before it and two not read yet go away...
        gone = {made[9], made[3], made[10], made[20]}
        for sid in gone:
            assert (await api.delete(f"{LIST}/{sid}")).status_code == 200
        # ...and new ones come.
        new = [
            (
                await api.post(
                    LIST, json={"name": f"New {i}", "job_type": "noop", "schedule": "1h"}
                )
            ).json()["scheduled_job"]["id"]
            for i in range(5)
        ]
        rest = await pages(api, 10, cursor=first["next_cursor"])
        expected = [i for i in made[10:] if i not in gone] + in_listing_order(engine, new)
        assert ids_of(rest) == expected


async def test_a_company_pages_through_its_own_schedules_only(
    config: Config, engine: Engine
) -> None:
    acme = create(engine, 60, "Acme", "acme")
    globex = create(engine, 70, "Globex", "globex")
    acme += create(engine, 15, "Acme late", "acme")
    async with running_api(api_config(config)) as api:
        mine = await pages(api, 25, auth("acme"))
        assert ids_of(mine) == in_listing_order(engine, acme)
        assert {s["company_id"] for p in mine for s in p["scheduled_jobs"]} == {"acme"}
        everyone = await pages(api, 50)
        assert sorted(ids_of(everyone)) == sorted(acme + globex)
        # A cursor is a position, never a door: the platform's cursor that stops among
        # globex's schedules gives acme its own schedules after that point, nothing else.
        cursor = everyone[1]["next_cursor"]
        assert cursor.split(".", 1)[1] in globex
        after = await pages(api, 25, auth("acme"), cursor=cursor)
        assert ids_of(after) == in_listing_order(engine, acme)[60:]
        for forged in ("0.a", f"0.{globex[0]}", "1.~"):
            got = ids_of(await pages(api, 500, auth("acme"), cursor=forged))
            assert set(got) <= set(acme), forged
        assert ids_of(await pages(api, 500, auth("nobody"))) == []


async def test_a_bad_limit_or_cursor_is_a_422_naming_it(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        cases = [
            ({"limit": "0"}, "limit"),
            ({"limit": "501"}, "limit"),
            ({"limit": "ten"}, "limit"),
            ({"limit": "-3"}, "limit"),
            ({"cursor": "garbage"}, "cursor"),
            ({"cursor": "123"}, "cursor"),
            ({"cursor": ".sch_x"}, "cursor"),
            ({"cursor": "12."}, "cursor"),
            ({"cursor": "12.a b"}, "cursor"),
            ({"cursor": "-1.sch_x"}, "cursor"),
            ({"cursor": "1" * 18 + ".sch_x"}, "cursor"),
            ({"cursor": "1." + "x" * 129}, "cursor"),
            ({"cursor": "1.\u00e9t\u00e9"}, "cursor"),
        ]
        for params, field in cases:
            r = await api.get(LIST, params=params)
            assert r.status_code == 422, (params, r.text)
            error = r.json()["error"]
            assert error["message"] and [f["field"] for f in error["details"]["fields"]] == [field]
            # The same code as the job listing's for its bad page inputs.
            if field == "limit":
                jobs = await api.get(f"{PREFIX}/status/pending", params=params)
                assert jobs.status_code == 422 and jobs.json()["error"]["code"] == error["code"]
        # An empty cursor is no cursor (as for the job listing), not an error.
        r = await api.get(LIST, params={"cursor": "", "limit": "5"})
        assert r.status_code == 200 and r.json()["next_cursor"] is None


def test_the_openapi_document_declares_the_page() -> None:
    op = document()["paths"]["/api/v1/admin/jobs/scheduled"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert set(params) >= {"limit", "cursor"}
    assert params["limit"]["schema"]["maximum"] == 500
    assert "422" in op["responses"]
    doc = document()
    body = doc["components"]["schemas"]["ScheduledJobList"]
    assert {"scheduled_jobs", "count", "limit", "next_cursor"} <= set(body["properties"])
