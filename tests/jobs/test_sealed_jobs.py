"""Sealed job data end to end, against the real test redis-server: sensitive fields and
`"encrypt": true` over the Python API, HTTP, the sync client, the CLI and schedules.

Every test looks for the plaintext where it must not be — every key of the namespace
(job hashes, the events and audit streams, schedules), the HTTP and CLI bodies, and
the log records (formatted as the JSON log lines would print them) — and checks that
the handler got it all the same.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import pytest
from api_client import PREFIX, api_config, running_api
from conftest import fleetd_env
from daemons import Fleet, cli_json, run_cli, settings, wait_for
from pool import registry_with, running_pool, wait_status

from fleetd.client import Client
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.context import JobContext
from fleetd.jobs.handlers import JobHandler
from fleetd.jobs.model import JobStatus, ValidationError
from fleetd.jobs.sealing import format_key
from fleetd.runtime.log import JsonFormatter
from fleetd.schedules.firing import FiringOps
from fleetd.schedules.store import ScheduleOps

PASSWORD = "pw-Zebra-8841-secret"
PHONE = "+49-151-77770001"
WHOLE = "whole-data-Quokka-4242"
SECRETS = (PASSWORD, PHONE, WHOLE)
K1 = format_key("k1", b"\x11" * 32)
K2 = format_key("k2", b"\x22" * 32)


class Vault(JobHandler):
    """Marks two fields sensitive and records what it was given."""

    job_type = "vault"
    sensitive = ("smtp_password", "recipient.phone")
    schema = {
        "type": "object",
        "properties": {
            "to": {"type": "string"},
            "smtp_password": {"type": "string", "minLength": 8},
            "recipient": {"type": "object", "properties": {"phone": {"type": "string"}}},
        },
        "required": ["to"],
    }

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.job_data: list[dict[str, Any]] = []

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(data)
        self.job_data.append(ctx.job.data)
        ctx.logger.info("delivering to %s", data["to"])
        return {"delivered": True}


class Spy(JobHandler):
    """No sensitive fields: what it gets of a job enqueued with `encrypt`."""

    job_type = "spy"

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(data)
        return {}


def _with_keys(cfg: Config, *keys: str) -> Config:
    return dataclasses.replace(cfg, encryption=dataclasses.replace(cfg.encryption, keys=keys))


def everything_stored(engine: Engine) -> str:
    """Every key of the test's namespace and its whole content, as one text."""
    client = engine.link.client
    out = []
    for key in client.scan_iter(match=engine.keys.prefix + "*"):
        kind = client.type(key)
        if kind == "hash":
            value: Any = client.hgetall(key)
        elif kind == "stream":
            value = client.xrange(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = client.smembers(key)
        else:
            value = client.get(key)
        out.append(f"{key} {value!r}")
    assert out, "nothing stored: the dump itself is broken"
    return "\n".join(out)


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} found in {where}"


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    assert caplog.records, "no log records captured: the check would prove nothing"
    fmt = JsonFormatter()
    return "\n".join(fmt.format(r) for r in caplog.records)


async def test_python_api_seals_at_rest_opens_for_the_handler_and_shows_redacted(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    vault, spy = Vault(), Spy()
    data = {"to": "ada@example.com", "smtp_password": PASSWORD, "recipient": {"phone": PHONE}}
    async with running_pool(config, registry_with(vault, spy)) as (engine, _pool):
        fields = await engine.queue.enqueue({"type": "vault", "data": data})
        whole = await engine.queue.enqueue(
            {"type": "spy", "data": {"note": WHOLE, "n": 1}, "encrypt": True}
        )
        plain = await engine.queue.enqueue({"type": "vault", "data": {"to": "bob@example.com"}})
        for r in (fields, whole, plain):
            await wait_status(engine, r.job_id, JobStatus.COMPLETED)
        raw = engine.link.client.hgetall(engine.keys.job(fields.job_id))
        assert json.loads(raw["sealed"]) == ["smtp_password", "recipient.phone"]
        assert json.loads(raw["data"])["to"] == "ada@example.com"
        raw_whole = engine.link.client.hgetall(engine.keys.job(whole.job_id))
        assert raw_whole["sealed"] == "data"
        assert "sealed" not in engine.link.client.hgetall(engine.keys.job(plain.job_id))
        assert_no_secret(everything_stored(engine), "Redis")

        got = await engine.queue.get(fields.job_id)
        assert got is not None and got.encrypted
        assert got.data == {"to": "ada@example.com", "smtp_password": "***",
                            "recipient": {"phone": "***"}}  # fmt: skip
        got_whole = await engine.queue.get(whole.job_id)
        assert got_whole is not None and got_whole.data == {"encrypted": True}
        assert got_whole.to_dict()["encrypted"] is True
        got_plain = await engine.queue.get(plain.job_id)
        assert got_plain is not None and not got_plain.encrypted
        assert "encrypted" not in got_plain.to_dict()
        page = await engine.queue.list_jobs("completed")
        assert_no_secret(json.dumps([j.to_dict() for j in page.jobs]), "a listing")
    assert sorted(vault.seen, key=lambda d: d["to"]) == [data, {"to": "bob@example.com"}]
    assert spy.seen == [{"note": WHOLE, "n": 1}]
    # ctx.job.data (and the lifecycle hooks, which get the same job) stay redacted.
    assert {"to": "ada@example.com", "smtp_password": "***",
            "recipient": {"phone": "***"}} in vault.job_data  # fmt: skip
    text = log_text(caplog)
    assert fields.job_id in text  # the job's lines were captured …
    assert_no_secret(text, "the logs")  # … and carry no secret


async def test_rotation_old_jobs_still_run_and_new_jobs_use_the_new_key(config: Config) -> None:
    vault = Vault()
    data = {"to": "a@example.com", "smtp_password": PASSWORD}
    old_cfg = _with_keys(config, K1)
    engine = Engine.build(old_cfg, daemon=True, registry=registry_with(vault))
    await engine.link.connect(engine.scripts.all())
    try:
        old = await engine.queue.enqueue({"type": "vault", "data": data})
    finally:
        engine.close()
    async with running_pool(_with_keys(config, K2, K1), registry_with(vault)) as (engine, _):
        new = await engine.queue.enqueue({"type": "vault", "data": data})
        for r in (old, new):
            await wait_status(engine, r.job_id, JobStatus.COMPLETED)
        raw_old = engine.link.client.hget(engine.keys.job(old.job_id), "data")
        raw_new = engine.link.client.hget(engine.keys.job(new.job_id), "data")
    assert '"fleetd:v1:k1:' in raw_old and '"fleetd:v1:k2:' in raw_new
    assert vault.seen == [data, data]


async def test_a_job_sealed_with_a_removed_key_fails_for_good_and_the_worker_goes_on(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    vault = Vault()
    engine = Engine.build(_with_keys(config, K1), daemon=True, registry=registry_with(vault))
    await engine.link.connect(engine.scripts.all())
    try:
        lost = await engine.queue.enqueue(
            {"type": "vault", "data": {"to": "x", "smtp_password": PASSWORD}, "max_retries": 3}
        )
    finally:
        engine.close()
    async with running_pool(_with_keys(config, K2), registry_with(vault)) as (engine, _):
        job = await wait_status(engine, lost.job_id, JobStatus.FAILED)
        after = await engine.queue.enqueue({"type": "vault", "data": {"to": "y"}})
        await wait_status(engine, after.job_id, JobStatus.COMPLETED)
    assert job.error.startswith("cannot decrypt data: unknown key id 'k1'")
    assert job.retry_count == 0 and job.attempts == 1  # no retry can cure it
    assert vault.seen == [{"to": "y"}]
    assert "unknown key id 'k1'" in log_text(caplog)


async def test_a_sealed_value_moved_into_another_job_fails_to_open(config: Config) -> None:
    spy = Spy()
    engine = Engine.build(config, daemon=True, registry=registry_with(spy))
    await engine.link.connect(engine.scripts.all())
    try:
        donor = await engine.queue.enqueue({"type": "spy", "data": {"x": WHOLE}, "encrypt": True})
        victim = await engine.queue.enqueue({"type": "spy", "data": {"x": 1}, "encrypt": True})
        client = engine.link.client
        stolen = client.hget(engine.keys.job(donor.job_id), "data")
        client.hset(engine.keys.job(victim.job_id), "data", stolen)
        await engine.queue.cancel(donor.job_id)
    finally:
        engine.close()
    async with running_pool(config, registry_with(spy)) as (engine, _):
        job = await wait_status(engine, victim.job_id, JobStatus.FAILED)
    assert "cannot decrypt data: sealed value of the data failed authentication" in job.error
    assert spy.seen == []


# -- HTTP --------------------------------------------------------------------------------


async def test_http_enqueue_and_bulk_with_encrypt_and_sensitive_fields(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    vault, spy = Vault(), Spy()
    cfg = api_config(config)
    async with running_api(cfg, roles=("api", "worker"), registry=registry_with(vault, spy)) as api:
        one = await api.enqueue({"type": "spy", "data": {"note": WHOLE}, "encrypt": True})
        r = await api.post(f"{PREFIX}/enqueue/bulk", json={"jobs": [
            {"type": "vault", "data": {"to": "a@example.com", "smtp_password": PASSWORD,
                                       "recipient": {"phone": PHONE}}},
            {"type": "vault", "data": {"to": "b@example.com"}, "encrypt": True},
            {"type": "spy", "data": {"plain": "visible"}, "encrypt": False},
        ]})  # fmt: skip
        assert r.status_code == 201, r.text
        ids = [one["job_id"], *(j["job_id"] for j in r.json()["jobs"])]
        bodies = [await api.wait_status(i, "completed") for i in ids]
        jobs = [b["job"] for b in bodies]
        assert jobs[0]["data"] == {"encrypted": True} and jobs[0]["encrypted"] is True
        assert jobs[1]["data"] == {"to": "a@example.com", "smtp_password": "***",
                                   "recipient": {"phone": "***"}}  # fmt: skip
        assert jobs[1]["encrypted"] is True
        assert jobs[2]["data"] == {"encrypted": True}
        assert jobs[3]["data"] == {"plain": "visible"} and "encrypted" not in jobs[3]
        listing = await api.get(f"{PREFIX}/status/completed")
        assert listing.status_code == 200
        assert_no_secret(json.dumps(bodies) + listing.text, "HTTP bodies")
        engine = api.daemon.engine
        assert engine is not None
        assert_no_secret(everything_stored(engine), "Redis")
    # Jobs run concurrently: compare without order.
    assert sorted(map(json.dumps, spy.seen)) == sorted(
        map(json.dumps, [{"note": WHOLE}, {"plain": "visible"}])
    )
    assert sorted(map(json.dumps, vault.seen)) == sorted(map(json.dumps, [
        {"to": "a@example.com", "smtp_password": PASSWORD, "recipient": {"phone": PHONE}},
        {"to": "b@example.com"},
    ]))  # fmt: skip
    assert_no_secret(log_text(caplog), "the logs")


def _fields(r: Any) -> list[str]:
    return [f["field"] for f in r.json()["error"]["details"]["fields"]]


async def test_http_encrypt_must_be_a_boolean(config: Config) -> None:
    async with running_api(api_config(config), registry=registry_with(Spy())) as api:
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "spy", "encrypt": "yes"})
        assert r.status_code == 422
        assert _fields(r) == ["encrypt"], r.text
        r = await api.post(f"{PREFIX}/enqueue/bulk", json={"jobs": [
            {"type": "spy"}, {"type": "spy", "encrypt": 1}]})  # fmt: skip
        assert r.status_code == 422
        assert _fields(r) == ["jobs[1].encrypt"], r.text
        r = await api.post(
            f"{PREFIX}/scheduled",
            json={"name": "s", "job_type": "spy", "schedule": "@daily", "encrypt": "no"},
        )
        assert r.status_code == 422
        assert _fields(r) == ["encrypt"], r.text


# -- the sync client and the CLI -------------------------------------------------------


def test_client_enqueue_with_encrypt(config: Config, engine: Engine) -> None:
    with Client(config) as jobs:
        result = jobs.enqueue("noop", {"token": WHOLE}, encrypt=True)
        job = jobs.get(result.job_id)
    assert job is not None and job.encrypted and job.data == {"encrypted": True}
    assert_no_secret(everything_stored(engine), "Redis")


def test_cli_enqueue_encrypt_with_a_daemon_that_never_logs_the_data(
    config: Config, engine: Engine, tmp_path: Any
) -> None:
    env = fleetd_env(config)
    fleet = Fleet(tmp_path / "daemons")
    try:
        logs = settings(daemon_log_level="debug", daemon_log_format="json")
        daemon = fleet.start(env | logs, "--roles", "worker")
        data = json.dumps({"token": WHOLE, "sleep_ms": 1})
        body = cli_json(env, "enqueue", "noop", "--data", data, "--encrypt", "--wait", "--json")
        job = body["job"]
        assert job["status"] == "completed", body
        assert job["data"] == {"encrypted": True} and job["encrypted"] is True
        assert job["result"]["echo"] == {"encrypted": True}
        shown = run_cli(env, "jobs", "show", job["id"])
        assert shown.returncode == 0 and "encrypted" in shown.stdout
        assert_no_secret(shown.stdout + json.dumps(body), "the CLI output")
        assert_no_secret(everything_stored(engine), "Redis")
        wait_for(lambda: job["id"] in daemon.log(), 5, "the job's log line")
        assert_no_secret(daemon.log(), "the daemon's output")
    finally:
        fleet.close()


def test_cli_enqueue_encrypt_needs_no_value() -> None:
    from fleetd.cli.commands import _parser

    assert _parser().parse_args(["enqueue", "noop", "--encrypt"]).encrypt is True
    assert _parser().parse_args(["enqueue", "noop"]).encrypt is False


# -- schedules ---------------------------------------------------------------------------


def _schedule_ops(engine: Engine) -> ScheduleOps:
    return ScheduleOps(engine.keys, engine.scripts, engine.ops)


async def test_schedules_store_sealed_data_and_seal_each_job_again(config: Config) -> None:
    vault, spy = Vault(), Spy()
    data = {"to": "a@example.com", "smtp_password": PASSWORD}
    async with running_pool(config, registry_with(vault, spy)) as (engine, _):
        ops = _schedule_ops(engine)
        run = engine.link.run_sync
        fields = run(lambda c: ops.add(c, {"name": "f", "job_type": "vault", "schedule": "@daily",
                                           "data": data}))  # fmt: skip
        whole = run(lambda c: ops.add(c, {"name": "w", "job_type": "spy", "schedule": "@daily",
                                          "data": {"x": WHOLE}, "encrypt": True}))  # fmt: skip
        assert fields.data == {"to": "a@example.com", "smtp_password": "***"}
        assert fields.to_dict()["encrypted"] is True and "encrypt" not in fields.to_dict()
        assert whole.to_dict()["data"] == {"encrypted": True}
        assert whole.to_dict()["encrypt"] is True
        # A change of the name only: the data stays, sealed again with the same key.
        renamed = run(lambda c: ops.update(c, fields.id, {"name": "f2"}))
        assert renamed.name == "f2" and renamed.sealed
        assert ops.spec_of(renamed).data == data
        results = [run(ops.run_now, s.id) for s in (renamed, whole)]
        for r in results:
            await wait_status(engine, r.job_id, JobStatus.COMPLETED)
        raw = [engine.link.client.hgetall(engine.keys.job(r.job_id)) for r in results]
        assert json.loads(raw[0]["sealed"]) == ["smtp_password"] and raw[1]["sealed"] == "data"
        assert_no_secret(everything_stored(engine), "Redis")
        # Turning encrypt off needs the data sent again: sealed data never comes back
        # plain (the answer would show it), and the refusal does not quote it.
        with pytest.raises(ValidationError) as refused:
            run(lambda c: ops.update(c, whole.id, {"encrypt": False}))
        assert refused.value.field == "data" and WHOLE not in str(refused.value)
        assert run(ops.require, whole.id).encrypt
        off = run(lambda c: ops.update(c, whole.id, {"encrypt": False, "data": {"x": "new"}}))
        assert not off.sealed and off.data == {"x": "new"}
    assert vault.seen == [data] and spy.seen == [{"x": WHOLE}]


async def test_a_schedule_whose_key_is_gone_records_an_error_when_due(config: Config) -> None:
    spy = Spy()
    old = Engine.build(_with_keys(config, K1), daemon=True, registry=registry_with(spy))
    await old.link.connect(old.scripts.all())
    try:
        made = old.link.run_sync(lambda c: _schedule_ops(old).add(c, {
            "name": "w", "job_type": "spy", "schedule": "1h", "data": {"x": WHOLE},
            "encrypt": True}))  # fmt: skip
    finally:
        old.close()
    engine = Engine.build(_with_keys(config, K2), daemon=True, registry=registry_with(spy))
    await engine.link.connect(engine.scripts.all())
    try:
        ops = _schedule_ops(engine)
        firing = FiringOps(ops)
        # Make it due now (by Redis time), as if the hour had passed.
        due = ops.now_ms(engine.link.client) - 1000
        engine.link.client.zadd(engine.keys.schedules_due, {made.id: due})
        result = engine.link.run_sync(lambda c: firing.fire_due(c, made.id, due, due, 60_000))
        assert result is not None and result.action == "error"
        assert "cannot decrypt data: unknown key id 'k1'" in result.error
        stored = engine.link.run_sync(ops.require, made.id)
        assert "unknown key id 'k1'" in (stored.last_error or "")
        # Pausing needs no key: the data is kept exactly as stored …
        before = engine.link.client.hget(engine.keys.schedule(made.id), "data")
        paused = engine.link.run_sync(ops.pause, made.id)
        assert not paused.is_active and paused.sealed == "data"
        assert engine.link.client.hget(engine.keys.schedule(made.id), "data") == before
        # … a change that must check or re-seal the data is refused, saying why …
        with pytest.raises(ValueError, match=r"unknown key id 'k1'.*send the data again"):
            engine.link.run_sync(ops.update, made.id, {"encrypt": False})
        # … while new data replaces it, sealed with the new key.
        fixed = engine.link.run_sync(ops.update, made.id, {"data": {"x": 2}})
        assert engine.link.run_sync(firing.load, [fixed.id])[0]["data"].count("fleetd:v1:k2:")
    finally:
        engine.close()


async def test_http_schedules_show_sealed_data_redacted(config: Config) -> None:
    cfg = api_config(config)
    async with running_api(cfg, registry=registry_with(Vault())) as api:
        r = await api.post(f"{PREFIX}/scheduled", json={
            "name": "nightly", "job_type": "vault", "schedule": "@daily",
            "data": {"to": "a@example.com", "recipient": {"phone": PHONE}}})  # fmt: skip
        assert r.status_code == 201, r.text
        made = r.json()["scheduled_job"]
        assert made["data"] == {"to": "a@example.com", "recipient": {"phone": "***"}}
        listing = await api.get(f"{PREFIX}/scheduled")
        one = await api.get(f"{PREFIX}/scheduled/{made['id']}")
        assert_no_secret(r.text + listing.text + one.text, "HTTP bodies")
        engine = api.daemon.engine
        assert engine is not None
        assert_no_secret(everything_stored(engine), "Redis")


async def test_a_process_without_the_handler_never_unseals_a_schedule(config: Config) -> None:
    """Pause, resume and rename from a process (same keys and namespace) that lacks
    the job type's handler: the data stays sealed at the stored paths, sealed again
    with its active key, and the next job opens to the plaintext for the handler."""
    vault = Vault()
    data = {"to": "a@example.com", "smtp_password": PASSWORD, "recipient": {"phone": PHONE}}
    rotated = _with_keys(config, K2, K1)
    a = Engine.build(_with_keys(config, K1), daemon=True, registry=registry_with(vault))
    await a.link.connect(a.scripts.all())
    try:
        made = a.link.run_sync(lambda c: _schedule_ops(a).add(c, {
            "name": "n", "job_type": "vault", "schedule": "@daily", "data": data}))  # fmt: skip
    finally:
        a.close()
    b = Engine.build(rotated, daemon=True, registry=registry_with())
    await b.link.connect(b.scripts.all())
    try:
        ops = _schedule_ops(b)
        for step in (ops.pause, ops.resume):
            b.link.run_sync(step, made.id)
        renamed = b.link.run_sync(ops.update, made.id, {"name": "n2"})
        raw = b.link.client.hgetall(b.keys.schedule(made.id))
        assert json.loads(raw["sealed"]) == ["smtp_password", "recipient.phone"]
        assert raw["data"].count('"fleetd:v1:k2:') == 2  # re-sealed with the new key
        assert renamed.is_active and renamed.name == "n2"
        assert_no_secret(everything_stored(b), "Redis")
    finally:
        b.close()
    async with running_pool(rotated, registry_with(vault)) as (engine, _):
        result = engine.link.run_sync(_schedule_ops(engine).run_now, made.id)
        await wait_status(engine, result.job_id, JobStatus.COMPLETED)
        assert_no_secret(everything_stored(engine), "Redis")
    assert vault.seen == [data]


async def test_http_update_of_a_sealed_schedule_keeps_or_refuses_the_placeholders(
    config: Config,
) -> None:
    vault = Vault()
    data = {"to": "a@example.com", "smtp_password": PASSWORD}
    async with running_api(api_config(config), registry=registry_with(vault)) as api:
        r = await api.post(f"{PREFIX}/scheduled", json={
            "name": "n", "job_type": "vault", "schedule": "@daily", "data": data})  # fmt: skip
        assert r.status_code == 201, r.text
        made = r.json()["scheduled_job"]
        url = f"{PREFIX}/scheduled/{made['id']}"
        engine = api.daemon.engine
        assert engine is not None
        before = engine.link.client.hgetall(engine.keys.schedule(made["id"]))
        # The edit dialog's old body: everything shown, the placeholder included.
        echoed = {k: made[k] for k in ("name", "job_type", "schedule", "priority", "data")}
        r = await api.put(url, json=echoed | {"name": "changed"})
        assert r.status_code == 422, r.text
        assert _fields(r) == ["data.smtp_password"]
        assert "cannot be sent back redacted" in r.text
        assert engine.link.client.hgetall(engine.keys.schedule(made["id"])) == before
        # Leaving data out keeps the secret.
        r = await api.put(url, json={"name": "renamed"})
        assert r.status_code == 200, r.text
        assert r.json()["scheduled_job"]["data"] == made["data"]
        ops = _schedule_ops(engine)
        assert ops.spec_of(engine.link.run_sync(ops.require, made["id"])).data == data
        assert_no_secret(everything_stored(engine), "Redis")


async def test_whole_data_placeholder_is_refused_for_a_schedule_sealed_whole(
    config: Config, engine: Engine
) -> None:
    ops = _schedule_ops(engine)
    run = engine.link.run_sync
    made = run(lambda c: ops.add(c, {"name": "w", "job_type": "noop", "schedule": "@daily",
                                     "data": {"x": WHOLE}, "encrypt": True}))  # fmt: skip
    with pytest.raises(ValueError, match="cannot be sent back redacted") as info:
        run(ops.update, made.id, {"data": {"encrypted": True}, "name": "w2"})
    assert getattr(info.value, "field", None) == "data"
    assert ops.spec_of(run(ops.require, made.id)) == ops.spec_of(made)


# -- keys the process cannot use ---------------------------------------------------------


async def test_unusable_keys_are_the_servers_error_and_nothing_is_enqueued(
    config: Config, engine: Engine, tmp_path: Any
) -> None:
    missing = tmp_path / "not-mounted" / "keys"
    cfg = dataclasses.replace(
        config, encryption=dataclasses.replace(config.encryption, key_file=str(missing))
    )
    async with running_api(api_config(cfg), registry=registry_with(Spy())) as api:
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "spy", "encrypt": True})
        assert r.status_code == 500, r.text
        error = r.json()["error"]
        assert error["code"] == "encryption_unavailable" and str(missing) in error["message"]
        # Plain jobs still go through.
        assert (await api.post(f"{PREFIX}/enqueue", json={"type": "spy"})).status_code == 201
    assert engine.link.client.zcard(engine.keys.status(JobStatus.PENDING)) == 1
    assert not missing.exists()  # a configured key file is never invented
    env = fleetd_env(cfg) | {"FLEETD_ENCRYPTION_KEY_FILE": str(missing)}
    out = run_cli(env, "enqueue", "noop", "--encrypt")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "cannot encrypt" in out.stderr
