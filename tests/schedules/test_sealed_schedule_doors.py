"""Sealed schedule data stays sealed through every door, against a real daemon and the
test redis-server: turning `encrypt` off needs the data sent again in full (HTTP PUT
and `fleetd schedules update --no-encrypt`), and no answer, error message, listing,
event, audit entry or `last_error` ever shows the plaintext of data stored sealed —
including the handler's messages about stored data that no longer validates (they
quote the value).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_client import PREFIX, api_config, running_api
from cli_runner import cli_runner
from pool import registry_with

from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.context import JobContext
from fleetd.jobs.handlers import JobHandler
from fleetd.schedules.firing import FiringOps
from fleetd.schedules.store import ScheduleOps

SECRET = "sealed-Pangolin-5150"


class Lenient(JobHandler):
    job_type = "mailer"

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        return {}


class Strict(Lenient):
    """The same job type, a later version: `to` must be an email address (the schema's
    message quotes the value it refuses)."""

    schema = {"type": "object", "properties": {"to": {"type": "string", "format": "email"}}}


def dump(engine: Engine) -> str:
    """Every key of the namespace with its content (streams: events and audit)."""
    client, out = engine.link.client, []
    for key in client.scan_iter(match=engine.keys.prefix + "*"):
        kind = client.type(key)
        read = {"hash": client.hgetall, "stream": client.xrange, "string": client.get}
        value: Any = read[kind](key) if kind in read else kind
        out.append(f"{key} {value!r}")
    return "\n".join(out)


async def add_sealed(config: Config) -> str:
    """An encrypted schedule of `mailer` whose data the Strict version refuses, saved by
    a process with the Lenient version (an older deployment)."""
    old = Engine.build(config, daemon=True, registry=registry_with(Lenient()))
    await old.link.connect(old.scripts.all())
    try:
        made = old.link.run_sync(lambda c: ScheduleOps.from_engine(old).add(c, {
            "name": "n", "job_type": "mailer", "schedule": "1h", "data": {"to": SECRET},
            "encrypt": True}))  # fmt: skip
    finally:
        old.close()
    return made.id


async def test_http_put_never_unseals_without_the_data_and_never_shows_it(
    config: Config,
) -> None:
    sid = await add_sealed(config)
    async with running_api(api_config(config), registry=registry_with(Strict())) as api:
        url = f"{PREFIX}/scheduled/{sid}"
        # Off without the data: refused on `data`, and it stays sealed.
        off = await api.put(url, json={"encrypt": False})
        assert off.status_code == 422, off.text
        assert [f["field"] for f in off.json()["error"]["details"]["fields"]] == ["data"]
        assert "send the data again" in off.json()["error"]["message"]
        # The stored data checked against the new version of its handler (a priority
        # change rechecks it): refused without quoting it.
        bad = await api.put(url, json={"priority": 9})
        assert bad.status_code == 422, bad.text
        assert "not valid for this job type" in bad.json()["error"]["message"]
        # The dashboard's editor sends every field but data and encrypt: still sealed.
        edit = {"name": "n2", "job_type": "mailer", "schedule": "2h", "timezone": "UTC",
                "priority": 5, "misfire_policy": "run_once", "is_active": True}  # fmt: skip
        renamed = await api.put(url, json=edit)
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["scheduled_job"]["data"] == {"encrypted": True}
        texts = [off.text, bad.text, renamed.text]
        texts += [(await api.get(p)).text for p in (f"{PREFIX}/scheduled", url)]
        audit = await api.get(f"{PREFIX}/audit", params={"action": "schedule.update"})
        assert audit.json()["count"] == 3
        texts.append(audit.text)
        assert all(SECRET not in t for t in texts), texts
        assert SECRET not in dump(api.daemon.engine)
        # Off with new data: the caller's own data, stored and answered plain.
        plain = {"to": "ops@example.com"}
        on = await api.put(url, json={"encrypt": False, "data": plain})
        assert on.status_code == 200, on.text
        body = on.json()["scheduled_job"]
        assert body["data"] == plain and "encrypted" not in body and "encrypt" not in body


async def test_a_firing_of_sealed_data_that_no_longer_validates_does_not_quote_it(
    config: Config,
) -> None:
    made_id = await add_sealed(config)
    engine = Engine.build(config, daemon=True, registry=registry_with(Strict()))
    await engine.link.connect(engine.scripts.all())
    try:
        ops = ScheduleOps.from_engine(engine)
        due = ops.now_ms(engine.link.client) - 1000
        engine.link.client.zadd(engine.keys.schedules_due, {made_id: due})
        firing = FiringOps(ops)
        result = engine.link.run_sync(lambda c: firing.fire_due(c, made_id, due, due, 60_000))
        assert result is not None and result.action == "error"
        assert "not valid for this job type" in result.error and SECRET not in result.error
        with pytest.raises(ValueError) as refused:
            engine.link.run_sync(ops.run_now, made_id)
        assert SECRET not in str(refused.value)
        stored = engine.link.run_sync(ops.require, made_id)
        assert stored.last_error and SECRET not in stored.last_error
        assert SECRET not in dump(engine)
    finally:
        engine.close()


def test_cli_update_no_encrypt_needs_the_data_and_show_list_stay_redacted(
    config: Config,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    engine: Engine,
) -> None:
    run = cli_runner(config, monkeypatch, capsys, "schedules")

    def cli(*args: str) -> tuple[int, str]:
        code, out, err = run(*args)
        return code, out + err

    code, out = cli("add", "s", "--type", "noop", "--schedule", "@daily", "--encrypt",
                    "--data", json.dumps({"token": SECRET}), "--json")  # fmt: skip
    assert code == 0, out
    sid = json.loads(out)["scheduled_job"]["id"]
    code, refused = cli("update", sid, "--no-encrypt", "--json")
    assert code == 2 and "data" in refused and "send the data again" in refused
    outputs = [out, refused]
    for args in (("show", sid, "--json"), ("list", "--json"), ("show", sid)):
        code, text = cli(*args)
        assert code == 0, text
        outputs.append(text)
    assert all(SECRET not in t for t in outputs), outputs
    assert SECRET not in dump(engine)
    code, text = cli("update", sid, "--no-encrypt", "--data", '{"token": "new"}', "--json")
    assert code == 0, text
    assert json.loads(text)["scheduled_job"]["data"] == {"token": "new"}
