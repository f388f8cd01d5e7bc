"""Fuzzing the admin API (hardening issue #14): odd values in every field of every
endpoint never answer 5xx, and never leave a listing that answers anything but 200.

Two drivers, against one real `fleetd run --roles api` and a real Redis:

- schemathesis over every operation of the generated OpenAPI document, its string
  fields drawn from ODD_TEXT (lone surrogates, control characters, 10k-character
  values, paths, far dates, absurd durations) instead of plain text, in positive mode
  (the document's shapes) and negative mode (wrong types, missing fields);
- a hypothesis test of its own that puts ODD_VALUES (those strings, huge and negative
  integers beyond 2^53 and 64 bits, NaN and infinities, far dates, deep and wide
  nesting, wrong types) into each field of the enqueue, bulk, schedule create and
  schedule update bodies, sent as raw JSON (lone surrogates as \\u escapes, NaN as
  Python writes it), then reads every listing (each status, schedules, scheduler
  stats, audit) and the rows it created.

Examples are bounded (EXAMPLES, OWN_EXAMPLES) so the module takes well under a minute;
hypothesis is not derandomized, and prints the failing example and a reproduction
blob. The number of requests sent is printed at the end of the module (see the
closing note of the issue).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from api_client import PREFIX, SECRET, auth
from conftest import fleetd_env, make_config
from daemons import Fleet
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from redis_server import RedisServer
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from fleetd.api.openapi import document
from fleetd.jobs.model import JobStatus

# Generated cases per operation and mode (about 27 operations, two modes).
EXAMPLES = 15
# Bodies of the field-by-field test.
OWN_EXAMPLES = 600
# Every this many bodies, all listings are read (and once more at the end).
LISTING_EVERY = 50
SCHEDULED = f"{PREFIX}/scheduled"

ODD_STRINGS = [
    "\ud800", "a\udfffb", "\udc80\ud800", "\x00", "line\nbreak", "tab\there", "\x1b[31m",
    "\x7f", "\x85", "\u2028", "\ufeff", "../../etc/passwd", "/etc/passwd", "Europe",
    "zoneinfo", "x" * 10_000, "9" * 5_000, "--5", "²", "5.0", "-5", "1e400", "NaN",
    "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "10000-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z", "9999999w", "99999999999999999999h", "0s", "-1h", "@reboot",
    "0 0 30 2 *", "* * * * * *", "*/0 * * * *", "", " ", "null", "{}", "%s%n",
]  # fmt: skip
ODD_TEXT = st.one_of(
    st.sampled_from(ODD_STRINGS),
    st.text(st.characters(codec=None, categories=["Cs", "Cc", "Lo", "Nd", "No"]), max_size=12),
    st.text(max_size=40),
)
ODD_NUMBERS = st.one_of(
    st.sampled_from([0, -1, 2**53 + 1, 2**63, -(2**63) - 1, 2**64, 10**30, 1e308, -1e-308]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)


def _nested(depth: int) -> Any:
    node: Any = "leaf"
    for _ in range(depth):
        node = {"d": node}
    return node


ODD_VALUES = st.one_of(
    ODD_TEXT,
    ODD_NUMBERS,
    st.booleans(),
    st.none(),
    st.lists(ODD_TEXT, max_size=70),
    st.dictionaries(ODD_TEXT, ODD_TEXT | ODD_NUMBERS, max_size=3),
    st.sampled_from([_nested(40), _nested(400), list(range(3000)), {"k": "v" * 300_000}]),
)

FAR_DATES = [
    "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00", "9999-12-31", "0001-01-01",
    "10000-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "2024-02-30", "9999-12-31T24:00:00Z",
]  # fmt: skip
DURATIONS = ["9999999w", "99999999999999999999h", "521w", "0s", "-1h", "1" * 5000 + "s", 1e300]
IDS = ["\ud800", "a\udfffb", "a\x00b", "line\nbreak", "\x1b[31m", "x" * 10_000, "", " "]
# What each field is most likely to choke on; drawn half of the time for that field.
FOCUS: dict[str, st.SearchStrategy[Any]] = {
    "run_at": st.sampled_from(FAR_DATES),
    "start_date": st.sampled_from(FAR_DATES),
    "end_date": st.sampled_from(FAR_DATES),
    "timeout": st.sampled_from(DURATIONS),
    "schedule": st.sampled_from([*DURATIONS, "@reboot", "0 0 30 2 *", "*/0 * * * *", "\ud800"]),
    "priority": st.sampled_from(["--5", "²", "5.0", "-5", "21", True, 5.0, 2**63, "\ud800"]),
    "max_retries": st.sampled_from([-1, 2**63, 2**70, 1e308, "3", True]),
    "older_than_days": st.sampled_from([-1, 0, 2**63, 10**9, 1e308, "90"]),
    "timezone": st.sampled_from(
        ["x" * 5000, "../../etc/passwd", "/etc/passwd", "Europe", "zoneinfo", "\ud800", ""]
    ),
    "tags": st.lists(st.sampled_from(IDS), min_size=1, max_size=3) | st.just(["t"] * 65),
    "data": st.sampled_from(
        [{"x": "\ud800"}, {"\udfff": 1}, {"n": 2**64}, {"n": 2**53 + 1}, _nested(40)]
    ),
    **{name: st.sampled_from(IDS) for name in ("type", "job_type", "name", "company_id")},
    **{name: st.sampled_from(IDS) for name in ("user_id", "idempotency_key", "id", "to")},
}


def odd_value(field: str) -> st.SearchStrategy[Any]:
    focus = FOCUS.get(field)
    # Three parts in four from the field's own list: a uniform pick among 40-odd
    # general values would reach the one that breaks a field too rarely.
    return ODD_VALUES if focus is None else st.one_of(focus, focus, focus, ODD_VALUES)


ENQUEUE_FIELDS = [
    "type", "data", "priority", "max_retries", "timeout", "company_id", "user_id", "tags",
    "run_at", "idempotency_key", "encrypt", "unknown",
]  # fmt: skip
SCHEDULE_FIELDS = [
    "name", "job_type", "schedule", "data", "priority", "is_active", "company_id", "user_id",
    "timezone", "misfire_policy", "id", "encrypt", "unknown",
]  # fmt: skip
# Job types and data fields whose handlers check data at enqueue (the built-in plugins).
TYPED_DATA = {
    "noop": ["sleep_ms", "fail"],
    "email_notification": ["to", "subject", "body", "cc"],
    "report_generation": ["report_type", "start_date", "end_date"],
    "data_export": ["export_type", "format"],
    "data_cleanup": ["cleanup_type", "older_than_days"],
    "maintenance_reminder": ["vehicle_id", "maintenance_type"],
}


class Sent:
    """The requests sent by this module, counted for the closing note."""

    count = 0


@pytest.fixture(scope="module")
def live(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """One `fleetd run --roles api` subprocess (jobs stay as enqueued) and a client."""
    namespace = f"t{uuid.uuid4().hex}"
    workdir = tmp_path_factory.mktemp("fuzz")
    cfg = make_config(redis_server.url, namespace, workdir / "state")
    env = fleetd_env(cfg) | {"FLEETD_AUTH_SECRET": SECRET, "FLEETD_HTTP_METRICS_AUTH": "false"}
    fleet = Fleet(workdir)
    try:
        fleet.start(env, "--roles", "api")
        url = fleet.api_url(Path(cfg.state_dir))
        with httpx.Client(base_url=url, headers=auth(), timeout=30) as client:
            yield client
    finally:
        fleet.close()
        redis_server.delete_matching(f"fleetd:{{{namespace}}}:*")
        print(f"\nfuzz: {Sent.count} requests sent to the admin API")


def send(client: httpx.Client, method: str, path: str, body: Any = None) -> httpx.Response:
    """One request; the body as raw JSON the way Python writes it (lone surrogates as
    \\u escapes, NaN and Infinity as bare words)."""
    Sent.count += 1
    content = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if content is not None else {}
    response = client.request(method, path, content=content, headers=headers)
    assert response.status_code < 500, f"{method} {path} -> {response.text[:500]}"
    return response


def listings_answer(client: httpx.Client, limit: int = 500) -> None:
    """Every listing answers 200 and the first rows of each can be fetched on their own."""
    for status in JobStatus:
        r = send(client, "GET", f"{PREFIX}/status/{status.value}?limit={limit}")
        assert r.status_code == 200, r.text
        for job in r.json()["jobs"][:5]:
            assert send(client, "GET", f"{PREFIX}/{job['id']}").status_code == 200
    for path in (
        SCHEDULED,
        f"{SCHEDULED}/stats",
        f"{PREFIX}/audit?limit={limit}",
        f"{PREFIX}/stats",
    ):
        r = send(client, "GET", path)
        assert r.status_code == 200, (path, r.text)


def unsendable(exc: BaseException) -> bool:
    """A request the client could not encode (a lone surrogate in its URL, a header or
    a form): no server ever sees it, so it is not a case."""
    causes = (exc, exc.__cause__, exc.__context__)
    return any(isinstance(e, UnicodeError) for e in causes)


def _odd_format(schema: Any) -> Any:
    """The document with every free-text string drawn from ODD_TEXT (format
    `fleetd-odd`, length limits dropped so the 10k-character values are tried)."""
    if isinstance(schema, list):
        return [_odd_format(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _odd_format(v) for k, v in schema.items()}
    free = not {"enum", "const", "pattern", "format", "$ref"} & set(out)
    if out.get("type") == "string" and free:
        out = {k: v for k, v in out.items() if k not in ("maxLength", "minLength")}
        out["format"] = "fleetd-odd"
    return out


def test_every_operation_with_odd_strings_and_wrong_types(live: httpx.Client) -> None:
    schemathesis.openapi.format("fleetd-odd", ODD_TEXT.filter(lambda s: "\x00" not in s))
    # Positive mode on the document with odd strings; negative mode (wrong types,
    # missing fields) on the document itself: schemathesis's negative generator
    # UTF-8-encodes the query values it makes, and a lone surrogate breaks it.
    odd = schemathesis.openapi.from_dict(_odd_format(document()))
    plain = schemathesis.openapi.from_dict(document())
    runs: list[tuple[GenerationMode, Any]] = [
        (mode, result.ok())  # type: ignore[union-attr]
        for mode, schema in ((GenerationMode.POSITIVE, odd), (GenerationMode.NEGATIVE, plain))
        for result in schema.get_all_operations()
    ]
    assert len(runs) >= 40
    base = str(live.base_url)
    failures = []
    for mode, operation in runs:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            print_blob=True,
        )
        def check(case: Any) -> None:
            Sent.count += 1
            try:
                response = case.call(base_url=base, headers=auth(), timeout=30)
            except Exception as exc:
                if unsendable(exc):
                    reject()
                raise

            case.validate_response(response, checks=[not_a_server_error])

        try:
            check()
        except Unsatisfiable:  # negative mode: nothing to break (no parameter, no body)
            continue
        except Exception as exc:  # every operation's failure, then one report
            failures.append(f"{mode.value} {operation.method.upper()} {operation.path}: {exc}")
    listings_answer(live)
    assert not failures, "\n\n".join(failures)


# (body kind, field): every field of every body, and every data field of each type.
TARGETS = [
    *((kind, field) for kind in ("enqueue", "bulk") for field in ENQUEUE_FIELDS),
    *((kind, field) for kind in ("schedule", "update") for field in SCHEDULE_FIELDS),
    *(
        (kind, f"{job_type}.{field}")
        for kind in ("enqueue", "schedule")
        for job_type, fields in TYPED_DATA.items()
        for field in fields
    ),
]


@st.composite
def odd_body(draw: st.DrawFn) -> tuple[str, str, Any]:
    """(method, path, body): a valid enqueue, bulk, schedule create or schedule update
    body with one field (or data field) set to an odd value, sometimes two."""
    body: dict[str, Any] = {}
    kind = ""
    for _ in range(draw(st.sampled_from([1, 1, 1, 2]))):
        kind, target = (
            draw(st.sampled_from(TARGETS))
            if not kind
            else (kind, draw(st.sampled_from([t for k, t in TARGETS if k == kind])))
        )
        job_type, _, field = target.rpartition(".")
        if job_type:
            body.setdefault("data", {})
            if isinstance(body["data"], dict):  # a copy: drawn values are shared objects
                body["data"] = {**body["data"], field: draw(odd_value(field))}
            body.setdefault("type" if kind == "enqueue" else "job_type", job_type)
        else:
            body[field] = draw(odd_value(field))
    if kind in ("schedule", "update"):
        body = {"name": f"n{uuid.uuid4().hex[:8]}", "job_type": "noop", "schedule": "@daily"} | body
    else:
        body = {"type": "noop"} | body
    if kind == "bulk":
        return "POST", f"{PREFIX}/enqueue/bulk", {"jobs": [{"type": "noop"}, body]}
    if kind == "update":
        return "PUT", "update", body
    return "POST", SCHEDULED if kind == "schedule" else f"{PREFIX}/enqueue", body


class State:
    schedule_id: str | None = None
    examples = 0


@given(request=odd_body())
@settings(
    max_examples=OWN_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    print_blob=True,
)
def _each_field_with_odd_values(live: httpx.Client, request: tuple[str, str, Any]) -> None:
    method, path, body = request
    if path == "update":
        if State.schedule_id is None:
            base = {"name": "target", "job_type": "noop", "schedule": "@daily"}
            State.schedule_id = send(live, "POST", SCHEDULED, base).json()["scheduled_job"]["id"]
        path = f"{SCHEDULED}/{State.schedule_id}"
        body = {k: v for k, v in body.items() if k != "name" or not str(v).startswith("n")}
    r = send(live, method, path, body)
    if r.status_code in (200, 201):
        answer = r.json()
        if "job_id" in answer:
            assert send(live, "GET", f"{PREFIX}/{answer['job_id']}").status_code == 200
        for job in answer.get("jobs", []):
            assert send(live, "GET", f"{PREFIX}/{job['job_id']}").status_code == 200
        if "scheduled_job" in answer:
            sid = answer["scheduled_job"]["id"]
            assert send(live, "GET", f"{SCHEDULED}/{sid}").status_code == 200
    State.examples += 1
    if State.examples % LISTING_EVERY == 0:
        listings_answer(live, limit=50)  # the newest rows; all of them at the end


def test_each_body_field_with_odd_values_then_every_listing(live: httpx.Client) -> None:
    _each_field_with_odd_values(live)
    listings_answer(live)
