"""fleetd.backend.codec: every field of a job row, through every script that reads it.

The fields come from the codec's own definitions (`ROW_FIELDS`, `ClaimedJob`), so a field
added there is covered here without editing this file: it gets a distinctive value from
its type, and must arrive unchanged in the job hash (enqueue.lua, and schedule_fire.lua
for a schedule's job), in the job.enqueued event where the event carries it, and in
`ClaimedJob` (claim.lua) when ClaimedJob has a field of that name. Values include unicode
(multi-byte and astral), quotes, backslashes, empty strings, integers past 2^53 and
floats, which a JSON number or a Lua double would mangle. Run against the real
redis-server and against the embedded `memory://` store (fakeredis's own cjson).
"""

from __future__ import annotations

import dataclasses
import json
import typing
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_config

from fleetd.backend.codec import (
    COMPUTED_FIELDS,
    ROW_FIELDS,
    ClaimedJob,
    JobRow,
    decode_claim,
    encode_row,
    row_from_request,
)
from fleetd.config import Config
from fleetd.config.queue_section import Served
from fleetd.engine import Engine
from fleetd.jobs.model import EnqueueRequest
from fleetd.schedules.fire_call import schedule_fire
from fleetd.schedules.store import ScheduleOps

# A string no JSON or Lua layer passes through by accident: multi-byte and astral
# characters, a quote, a backslash, a slash (cjson escapes it), a newline and ':'.
TRICKY = 'żółw 🐢 "q" \\ a/b\n:'
# 2^53 + 1: the first integer a double cannot hold; a Lua number prints it as 9.007e+15.
BIG = 2**53 + 1
# Year 9999 in ms: 15 digits, past the 14 significant digits Lua prints.
FAR_FUTURE_MS = 253_402_300_799_999
# The job's data, as JSON text: everything JSON can hold, nothing normalised away.
DATA = {
    "empty": "", "text": TRICKY, "big": 12345678901234567890123, "float": 0.1,
    "tiny": -1.5e-300, "list": [1, "", None, True, {}], "nested": {"": {"a": []}},
}  # fmt: skip
# Semantics some fields need (a priority within 1-20, JSON data, a due time).
OVERRIDES: dict[str, Any] = {
    "type": f"codec {TRICKY}",
    "data": json.dumps(DATA, ensure_ascii=False),
    "priority": 20,
    "run_at_ms": FAR_FUTURE_MS,
    "tags": ("", TRICKY, "x" * 128, "a,b"),
}
# What the codec leaves out as absent.
ABSENT = (None, "", ())
# ClaimedJob fields claim.lua makes rather than carries from the row.
# Made by the scripts, not carried from the row (`wf_in`: wf_submit.lua marks workflow
# nodes that read their parents; tests/workflows send it through a claim).
CLAIM_MADE = {"attempts", "retry_count", "created_at_ms", "token", "wf_in"}
# What each event type carries of a row: event field -> row attribute.
EVENT_FIELDS = {"job_id": "id", "job_type": "type", "company_id": "company_id"}
EVENT_DATA_FIELDS = {"priority": "priority", "run_at": "run_at_ms"}


def distinctive(name: str, kind: Any) -> Any:
    """A value for field `name` of type `kind` that shows any mangling."""
    if name in OVERRIDES:
        return OVERRIDES[name]
    base = {typing.get_args(kind)[0]} - {type(None)} if typing.get_args(kind) else {kind}
    if int in base:
        return BIG + len(name)
    if float in base:
        return 86399.123456789
    if str in base:
        return f"{name} {TRICKY}"
    raise AssertionError(f"give JobRow.{name} ({kind}) a distinctive value in OVERRIDES")


def full_row() -> JobRow:
    hints = typing.get_type_hints(JobRow)
    values = {f.name: distinctive(f.name, hints[f.name]) for f in dataclasses.fields(JobRow)}
    return JobRow(**{**values, "id": f"job_codec_{uuid.uuid4().hex} {TRICKY}"})


def minimal_row() -> JobRow:
    """Only the required fields: every optional one absent."""
    required = {f.name for f in dataclasses.fields(JobRow) if f.default is dataclasses.MISSING}
    full = full_row()
    return JobRow(**{**{n: getattr(full, n) for n in required}, "data": "{}", "priority": 5})


def wire_text(row: JobRow) -> dict[str, str]:
    """Each present field's name in the hash and its text, as the codec sends it."""
    return {wire: text(v) for a, wire, text in ROW_FIELDS if (v := getattr(row, a)) not in ABSENT}


def expect_claimed(row: JobRow, name: str) -> Any:
    value = getattr(row, name)
    if name == "data":
        return json.loads(value)
    return value


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest, config: Config, tmp_path: Path) -> Iterator[Engine]:
    cfg = config
    if request.param == "memory":
        cfg = make_config("memory://", config.redis.namespace, tmp_path / "m", redis={
            "memory_listen": "",
        })  # fmt: skip
    eng = Engine.build(cfg, daemon=True)
    try:
        for script in eng.scripts.all():
            script.load(eng.link.client)
        yield eng
    finally:
        eng.close()


def enqueued_event(engine: Engine, job_id: str) -> dict[str, str]:
    event: dict[str, str]
    [event] = [
        f for _, f in engine.link.client.xrange(engine.keys.events)
        if f["type"] == "job.enqueued" and f["job_id"] == job_id
    ]  # fmt: skip
    return event


def check_stored(engine: Engine, row: JobRow) -> None:
    """The job hash holds each present field's text under its name, and nothing for an
    absent one; the job.enqueued event carries what events carry."""
    h = engine.link.client.hgetall(engine.keys.job(row.id))
    sent = wire_text(row)
    for attr, wire, _ in ROW_FIELDS:
        assert h.get(wire) == sent.get(wire), (attr, h.get(wire), sent.get(wire))
    event = enqueued_event(engine, row.id)
    for field, attr in EVENT_FIELDS.items():
        assert event[field] == (getattr(row, attr) or ""), field
    data = json.loads(event["data"])
    for field, attr in EVENT_DATA_FIELDS.items():
        assert data.get(field) == getattr(row, attr), field


def check_claimed(engine: Engine, row: JobRow) -> None:
    if row.run_at_ms is not None:  # due in the far future: make it due now
        assert engine.link.client.zadd(engine.keys.delayed, {row.id: 0}, xx=True, ch=True)
    # Served as is (not parsed): the row's queue is a distinctive text, not a valid name.
    scripts = engine.scripts.for_claims(None, "", Served(((row.queue or "default", 0),)))
    result = scripts.claim(engine.link.client, 10, 30_000, "tok-ü", "daemon:1:ab")
    [job] = result.jobs
    h = engine.link.client.hgetall(engine.keys.job(row.id))
    row_names = {f.name for f in dataclasses.fields(JobRow)}
    for f in dataclasses.fields(ClaimedJob):
        got = getattr(job, f.name)
        if f.name in row_names:
            want = expect_claimed(row, f.name)
            if want in ABSENT:  # absent: the ClaimedJob default ("" / None / ())
                assert got in ABSENT, f.name
            else:
                assert got == want and type(got) is type(want), (f.name, got, want)
        else:
            assert f.name in CLAIM_MADE, f"ClaimedJob.{f.name} is neither carried nor made"
    assert (job.attempts, job.retry_count, job.token) == (1, 0, "tok-ü")
    assert job.created_at_ms == int(h["created_at"])


@pytest.mark.parametrize("make_row", [full_row, minimal_row], ids=["every-field", "required"])
def test_enqueue_then_claim_carries_every_field(store: Engine, make_row: Any) -> None:
    row = make_row()
    [(job_id, status, dup, _)] = store.scripts.enqueue(store.link.client, [row])
    assert (job_id, status, dup) == (row.id, "pending", False)
    check_stored(store, row)
    check_claimed(store, row)


@pytest.mark.parametrize("make_row", [full_row, minimal_row], ids=["every-field", "required"])
def test_schedule_fire_enqueues_every_field(store: Engine, make_row: Any) -> None:
    """schedule_fire.lua decodes the same row (a manual run takes it as given)."""
    ops = ScheduleOps.from_engine(store)
    client = store.link.client
    schedule = ops.add(client, {"name": "codec", "job_type": "noop", "schedule": "@daily"})
    row = make_row()
    code, _, job_id, dup, _ = schedule_fire(store.scripts, client, schedule.id, "manual", row=row)
    assert (code, job_id, dup) == (1, row.id, False)
    check_stored(store, row)
    check_claimed(store, row)


def test_every_row_field_is_exercised() -> None:
    """The full row sets every field (a new one cannot hide behind its default)."""
    row = full_row()
    assert [a for a, _, _ in ROW_FIELDS if getattr(row, a) in ABSENT] == []
    assert [a for a, _, _ in ROW_FIELDS if getattr(minimal_row(), a) not in ABSENT] == [
        f.name for f in dataclasses.fields(JobRow) if f.default is dataclasses.MISSING
    ]


def test_a_row_copies_every_field_the_queue_does_not_compute_from_the_request() -> None:
    full = full_row()
    copied = {f.name for f in dataclasses.fields(JobRow)} - set(COMPUTED_FIELDS)
    # Built without validation: the full row's values are beyond what a caller may send.
    req = EnqueueRequest.model_construct(**{name: getattr(full, name) for name in copied})
    assert {name: getattr(req, name) for name in copied} == {
        name: getattr(full, name) for name in copied
    }
    computed = {name: getattr(full, name) for name in COMPUTED_FIELDS}
    assert row_from_request(req, **computed) == full


def test_encoding_is_one_json_object_of_strings_without_absent_fields() -> None:
    row = full_row()
    decoded = json.loads(encode_row(row))
    assert decoded == wire_text(row)
    assert all(isinstance(v, str) for v in decoded.values())
    assert decoded["run_at"] == str(FAR_FUTURE_MS) and decoded["timeout"] == repr(row.timeout)
    assert "żółw 🐢" in encode_row(row)  # UTF-8 as is, not \u escapes
    assert json.loads(encode_row(minimal_row())).keys() == {
        "id", "type", "data", "priority", "max_retries",
    }  # fmt: skip


def test_decode_claim_reads_named_fields_in_any_order() -> None:
    job = {"sealed": "", "created_at": "17", "tags": '["a"]', "retry_count": "2",
           "attempts": "3", "max_retries": "4", "priority": "5", "type": "t",
           "id": "j"}  # fmt: skip
    result = decode_claim([100, -1, json.dumps([job]), '[{"k": 1}]'], "tok")
    assert (result.now_ms, result.next_due_ms) == (100, None)
    assert result.jobs == [
        ClaimedJob(id="j", type="t", data={"k": 1}, priority=5, attempts=3, retry_count=2,
                   max_retries=4, timeout=None, company_id=None, user_id=None, tags=("a",),
                   created_at_ms=17, token="tok")
    ]  # fmt: skip
    assert decode_claim([5, 42, "[]", "[]"], "tok") == type(result)(5, 42, [])


def test_a_null_in_a_row_reads_as_absent(store: Engine) -> None:
    """cjson decodes null to a truthy value; the scripts must treat it as absent (Python
    leaves absent fields out, but another client of the scripts may not)."""
    row = minimal_row()
    text = json.dumps({**json.loads(encode_row(row)), **dict.fromkeys(
        ["timeout", "company_id", "user_id", "tags", "run_at", "idempotency_key", "sealed"]
    )})  # fmt: skip
    k = store.keys
    keys = [k.queue, k.delayed, k.seq, k.status("pending"), k.events, k.wake]
    store.scripts._run(store.link.client, "enqueue", keys, [1, 64, text])
    check_stored(store, row)
    check_claimed(store, row)
