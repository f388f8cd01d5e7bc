"""Poison values (hardening issue #14, points 1, 2 and 7), against a real daemon and a
real Redis: one regression test per class.

- Values no reader could render are refused at enqueue and schedule creation with 422
  naming the field, and nothing is written (far dates, lone surrogates, huge intervals).
- Values that used to answer 500 or 503 answer 422 (odd priorities, surrogates in ids,
  huge or path-like time zones), and no message carries a path.
- A stored row that cannot be read or shown (written by an older version or by hand:
  the hash is written straight into Redis here) degrades that row only; every listing
  and the row's own GET answer 200.
- The data limits hold on every door: HTTP, the Python client, the CLI, follow-up jobs
  (the async Queue that `ctx.enqueue` uses) and schedules.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_client import PREFIX, api_config, running_api
from conftest import fleetd_env
from daemons import run_cli

from fleetd.client import Client
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus, ValidationError
from fleetd.schedules.store import ScheduleOps

SCHEDULED = f"{PREFIX}/scheduled"
# Enqueue bodies no reader could render, and the field each is refused on.
POISON_JOBS: list[tuple[dict[str, Any], str]] = [
    ({"run_at": "9999-12-31T23:59:59-12:00"}, "run_at"),  # year 10000 in UTC
    ({"run_at": "0001-01-01T00:00:00+14:00"}, "run_at"),  # before year 1 in UTC
    ({"data": {"x": "\ud800"}}, "data.x"),
    ({"data": {"a": [{"\udfff": 1}]}}, "data.a[0]"),
    ({"timeout": "9999999w"}, "timeout"),
    ({"timeout": 1e300}, "timeout"),
    ({"priority": "--5"}, "priority"),
    ({"priority": "²"}, "priority"),
    ({"priority": "5.0"}, "priority"),
    ({"priority": True}, "priority"),
    ({"company_id": "\ud800"}, "company_id"),
    ({"user_id": "a\x00b"}, "user_id"),
    ({"idempotency_key": "\ud800"}, "idempotency_key"),
    ({"tags": ["ok", "a\nb"]}, "tags"),
]
POISON_SCHEDULES: list[tuple[dict[str, Any], str]] = [
    ({"schedule": "9999999w"}, "schedule"),
    ({"name": "b\ud800"}, "name"),
    ({"name": "line\nbreak"}, "name"),
    ({"data": {"x": "\udfff"}}, "data.x"),
    ({"priority": "--5"}, "priority"),
    ({"priority": "²"}, "priority"),
    ({"timezone": "x" * 5000}, "timezone"),
    ({"timezone": "../../etc/passwd"}, "timezone"),
    ({"timezone": "/etc/passwd"}, "timezone"),
    ({"timezone": "Europe"}, "timezone"),  # a directory of the database
    ({"company_id": "\ud800"}, "company_id"),
    ({"schedule": "@daily\ud800"}, "schedule"),
]


def raw_json(body: dict[str, Any]) -> bytes:
    """JSON as a client may send it: lone surrogates as \\u escapes (json.dumps's
    default), which Python's json accepts but cannot re-encode as UTF-8."""
    return json.dumps(body).encode()


def fields_of(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [f["field"] for f in response.json()["error"]["details"]["fields"]]


async def listings_answer(api: Any) -> dict[str, Any]:
    """Every job listing, the schedule listing and stats: each must answer 200."""
    bodies: dict[str, Any] = {}
    for status in JobStatus:
        r = await api.get(f"{PREFIX}/status/{status.value}?limit=500")
        assert r.status_code == 200, (status, r.text)
        bodies[status.value] = r.json()
    r = await api.get(SCHEDULED)
    assert r.status_code == 200, r.text
    bodies["scheduled"] = r.json()
    assert (await api.get(f"{SCHEDULED}/stats")).status_code == 200
    return bodies


@pytest.mark.parametrize(("extra", "field"), POISON_JOBS, ids=[f for _, f in POISON_JOBS])
async def test_unrenderable_enqueue_is_refused_naming_the_field(
    config: Config, engine: Engine, extra: dict[str, Any], field: str
) -> None:
    async with running_api(api_config(config)) as api:
        headers = {**api.headers, "Content-Type": "application/json"}
        body = {"type": "noop", **extra}
        r = await api.post(f"{PREFIX}/enqueue", content=raw_json(body), headers=headers)
        assert field in fields_of(r)
        bulk = {"jobs": [{"type": "noop"}, body]}
        r = await api.post(f"{PREFIX}/enqueue/bulk", content=raw_json(bulk), headers=headers)
        assert f"jobs[1].{field}" in fields_of(r)
        assert engine.link.run_sync(engine.ops.stats)["total"] == 0  # nothing written
        await listings_answer(api)


@pytest.mark.parametrize(
    ("extra", "field"),
    POISON_SCHEDULES,
    ids=[f"{f}-{i}" for i, (_, f) in enumerate(POISON_SCHEDULES)],
)
async def test_unrenderable_schedule_is_refused_on_create_and_update(
    config: Config, extra: dict[str, Any], field: str
) -> None:
    async with running_api(api_config(config)) as api:
        headers = {**api.headers, "Content-Type": "application/json"}
        body = {"name": "poison", "job_type": "noop", "schedule": "@daily", **extra}
        r = await api.post(SCHEDULED, content=raw_json(body), headers=headers)
        assert fields_of(r) == [field]
        # No message carries a path of this host (the time zone database's directory).
        assert "/usr/" not in r.text and "site-packages" not in r.text
        assert (await listings_answer(api))["scheduled"]["count"] == 0  # nothing saved
        created = await api.post(
            SCHEDULED, json={"name": "fine", "job_type": "noop", "schedule": "@daily"}
        )
        assert created.status_code == 201, created.text
        sid = created.json()["scheduled_job"]["id"]
        r = await api.put(f"{SCHEDULED}/{sid}", content=raw_json(extra), headers=headers)
        assert field in fields_of(r)
        got = (await api.get(f"{SCHEDULED}/{sid}")).json()["scheduled_job"]
        assert got["name"] == "fine" and got["schedule"] == "@daily"  # unchanged


async def test_query_parameters_answer_422_not_500(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        for path, field in [
            (f"{PREFIX}/status/pending?cursor=9{'9' * 400}.0", "cursor"),
            (f"{PREFIX}/status/pending?cursor=%C2%B2.0", "cursor"),
            (f"{PREFIX}/status/pending?type={'t' * 10_000}", "type"),
            (f"{PREFIX}/status/pending?type=a%00b", "type"),
            (f"{PREFIX}/audit?cursor=%C2%B2-0", "cursor"),
            (f"{PREFIX}/audit?cursor=99999999999999999999999-0", "cursor"),
            (f"{PREFIX}/audit?since=9999-12-31T23:59:59-12:00", "since"),
            (f"{PREFIX}/throughput?window={'9' * 5000}h", "window"),
        ]:
            r = await api.get(path)
            assert field in fields_of(r), path
        for older_than in ("9999999w", "1" * 5000 + "s"):
            r = await api.post(f"{PREFIX}/cleanup?older_than={older_than}")
            assert fields_of(r) == ["older_than"]


POISON_HASHES: list[dict[str, str]] = [
    {"run_at": str(253_402_300_799_000 + 86_400_000)},  # year 10000
    {"completed_at": str(10**20)},
    {"data": '{"x": "\\ud800"}'},  # JSON escape: loads fine, cannot be encoded
    {"data": "{not json"},
    {"priority": "high"},
    {"tags": '"just a string"'},
    {"type": "bad\ud800type"},
]


def write_poison_job(engine: Engine, job_id: str, changes: dict[str, str]) -> None:
    """A completed job hash as an older version (or a hand) could have written it."""
    now = engine.link.run_sync(lambda c: c.time())[0] * 1000
    h = {
        "id": job_id, "type": "noop", "data": "{}", "priority": "5", "status": "completed",
        "created_at": str(now), "completed_at": str(now), "retry_count": "0",
        "max_retries": "3", "attempts": "1",
    }  # fmt: skip
    h.update(changes)
    key = engine.keys.job(job_id)

    def write(client: Any) -> None:
        # The raw client: redis-py encodes a lone surrogate only with surrogatepass.
        client.hset(key, mapping={k: v.encode("utf-8", "surrogatepass") for k, v in h.items()})
        client.zadd(engine.keys.status(JobStatus.COMPLETED), {job_id: now})

    engine.link.run_sync(write)


async def test_a_poison_row_degrades_alone(config: Config, engine: Engine) -> None:
    async with running_api(api_config(config), roles=("api", "worker")) as api:
        good = (await api.enqueue({"type": "noop", "data": {"n": 1}}))["job_id"]
        await api.wait_status(good, "completed")
        poison = [f"job_poison{i}" for i in range(len(POISON_HASHES))]
        for job_id, changes in zip(poison, POISON_HASHES, strict=True):
            write_poison_job(engine, job_id, changes)
        listed = (await listings_answer(api))["completed"]["jobs"]
        by_id = {j["id"]: j for j in listed}
        assert set(by_id) == {good, *poison}
        assert "unreadable" not in by_id[good] and by_id[good]["data"] == {"n": 1}
        for job_id, changes in zip(poison, POISON_HASHES, strict=True):
            row = by_id[job_id]
            assert row["unreadable"]["code"] == "unreadable", row
            named = " ".join(row["unreadable"]["fields"])
            assert next(iter(changes)).split("_")[0] in named, (changes, row)
            r = await api.get(f"{PREFIX}/{job_id}")
            assert r.status_code == 200 and r.json()["job"]["unreadable"], r.text
        # The platform admin and a company admin both list without error.
        r = await api.get(f"{PREFIX}/status/completed", headers={**api.headers})
        assert r.status_code == 200


async def test_a_poison_schedule_degrades_alone(config: Config, engine: Engine) -> None:
    async with running_api(api_config(config)) as api:
        fine = await api.post(SCHEDULED, json={"name": "f", "job_type": "noop", "schedule": "1h"})
        bad = await api.post(SCHEDULED, json={"name": "b", "job_type": "noop", "schedule": "1h"})
        bad_id = bad.json()["scheduled_job"]["id"]
        key = engine.keys.schedule(bad_id)
        engine.link.run_sync(
            lambda c: c.hset(
                key,
                mapping={
                    "next_run": str(10**18),
                    "name": "old\ud800name".encode("utf-8", "surrogatepass"),
                    "runs": "many",
                },
            )
        )
        r = await api.get(SCHEDULED)
        assert r.status_code == 200, r.text
        rows = {s["id"]: s for s in r.json()["scheduled_jobs"]}
        assert "unreadable" not in rows[fine.json()["scheduled_job"]["id"]]
        assert set(rows[bad_id]["unreadable"]["fields"]) >= {"next_run", "name", "runs"}
        assert (await api.get(f"{SCHEDULED}/{bad_id}")).status_code == 200
        assert (await api.get(f"{SCHEDULED}/stats")).status_code == 200
        r = await api.put(f"{SCHEDULED}/{bad_id}", json={"is_active": False})
        assert r.status_code == 422, r.text  # cannot be rewritten from what cannot be read
        assert (await api.delete(f"{SCHEDULED}/{bad_id}")).status_code == 200


BIG = {"blob": "x" * (300 * 1024)}  # over [http] max_body_size's default of 256 KiB
DEEP: dict[str, Any] = {}
_node = DEEP
for _ in range(40):  # over [http] max_json_depth's default of 32
    _node["d"] = {}
    _node = _node["d"]


def test_python_client_holds_the_data_limits(config: Config, engine: Engine) -> None:
    with Client(config) as client:
        for data, says in [
            (BIG, "over the limit"),
            (DEEP, "nested deeper"),
            ({"n": 2**70}, "64-bit"),
            ({"x": "\ud800"}, "surrogate"),
            ({"x": float("nan")}, "JSON"),
        ]:
            with pytest.raises(ValidationError) as err:
                client.enqueue("noop", data)
            assert says in str(err.value)
        with pytest.raises(ValidationError, match="tags"):
            client.enqueue("noop", {}, tags=["t"] * 65)
        with pytest.raises(ValidationError, match="run_at"):
            client.enqueue("noop", {}, run_at="9999-12-31T23:59:59-12:00")
    assert engine.link.run_sync(engine.ops.stats)["total"] == 0


async def test_follow_up_jobs_hold_the_data_limits(engine: Engine) -> None:
    """ctx.enqueue sends follow-ups through the async Queue (fleetd.jobs.context)."""
    with pytest.raises(ValidationError, match="over the limit"):
        await engine.queue.enqueue({"type": "noop", "data": BIG})
    with pytest.raises(ValidationError, match=r"jobs\[1\]\.data"):
        await engine.queue.enqueue_many([{"type": "noop"}, {"type": "noop", "data": DEEP}])
    assert engine.link.run_sync(engine.ops.stats)["total"] == 0


def test_cli_holds_the_data_limits(config: Config, engine: Engine) -> None:
    env = fleetd_env(config)
    # As a JSON line on stdin: 300 KB is more than one command-line argument may hold.
    line = json.dumps({"type": "noop", "data": BIG})
    done = run_cli(env, "enqueue", "--jsonl", "-", stdin=line)
    assert done.returncode == 2 and "over the limit" in done.stderr, done.stderr
    done = run_cli(env, "enqueue", "noop", "--data", json.dumps(DEEP))
    assert done.returncode == 2 and "nested deeper" in done.stderr, done.stderr
    done = run_cli(env, "enqueue", "noop", "--run-at", "9999-12-31T23:59:59-12:00")
    assert done.returncode == 2 and "run_at" in done.stderr, done.stderr
    assert engine.link.run_sync(engine.ops.stats)["total"] == 0


def test_schedules_hold_the_data_limits(engine: Engine) -> None:
    """Schedules created or changed outside HTTP (the CLI, a deployment script) hold
    the limits of a job's data: the store checks a schedule as an enqueue would."""
    store = ScheduleOps.from_engine(engine)
    body = {"name": "big", "job_type": "noop", "schedule": "@daily"}
    for data, says in [(BIG, "over the limit"), (DEEP, "nested deeper"), ({"n": -(2**64)}, "64")]:
        with pytest.raises(ValidationError) as err:
            engine.link.run_sync(lambda c, d=data: store.add(c, {**body, "data": d}))
        assert says in str(err.value)
    created = engine.link.run_sync(lambda c: store.add(c, body))
    with pytest.raises(ValidationError, match="over the limit"):
        engine.link.run_sync(lambda c: store.update(c, created.id, {"data": BIG}))
    assert [s.id for s in engine.link.run_sync(store.list_schedules)] == [created.id]
