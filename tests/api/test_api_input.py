"""The bad-input battery: each refused with the right status and error code, never a 500,
and every error is the JSON body of docs/ARCHITECTURE.md#http-api."""

from __future__ import annotations

from typing import Any

import httpx
from api_client import PREFIX, Api, api_config, running_api

from fleetd.config import Config


def error_of(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"] == "application/json", r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    error: dict[str, Any] = body["error"]
    return error


async def raw(
    api: Api, body: bytes, content_type: str | None = "application/json"
) -> httpx.Response:
    headers = dict(api.headers)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return await api.post(f"{PREFIX}/enqueue", content=body, headers=headers)


async def oversized(api: Api, body: bytes) -> httpx.Response:
    """POST a body over the limit on a connection of its own: the answer (413) arrives
    whole even while the client is still writing (fleetd.api.linger), first time."""
    headers = {**api.headers, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        return await client.post(f"{PREFIX}/enqueue", content=body, headers=headers)


def fields(r: httpx.Response) -> list[str]:
    return [f["field"] for f in error_of(r)["details"]["fields"]]


async def test_syntax_size_and_media_type(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        cases: list[tuple[bytes, str | None, int, str]] = [
            (b'{"type": "noop",', "application/json", 400, "invalid_json"),
            (b"", "application/json", 400, "invalid_json"),
            (b"\xff\xfe{}", "application/json", 400, "invalid_json"),
            (b'{"type": "noop", "data": {"x": NaN}}', "application/json", 400, "invalid_json"),
            (b'{"type": "noop", "data": {"x": Infinity}}', "application/json", 400, "invalid_json"),
            (b'{"type": "noop", "data": {"x": 1' + b"0" * 5000 + b"}}", None, 400, "invalid_json"),
            (b'{"type": "noop"}', None, 415, "unsupported_media_type"),
            (b'{"type": "noop"}', "text/plain", 415, "unsupported_media_type"),
            (b"type=noop", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ]
        for body, ctype, status, code in cases:
            r = await raw(api, body, ctype or ("application/json" if status == 400 else None))
            assert r.status_code == status, (body[:40], r.text)
            assert error_of(r)["code"] == code
        # application/json with a charset is JSON too.
        r = await raw(api, b'{"type": "noop"}', "application/json; charset=utf-8")
        assert r.status_code == 201

        deep = b'{"type": "noop", "data": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}"
        r = await raw(api, deep)
        assert r.status_code == 400 and error_of(r)["code"] == "nesting_too_deep"
        very_deep = b"[" * 150_000 + b"]" * 150_000
        r = await oversized(api, very_deep)
        assert r.status_code == 413  # over 256 KiB: refused before parsing
        recursion = b"[" * 50_000 + b"]" * 50_000
        r = await raw(api, recursion)
        assert r.status_code == 400 and error_of(r)["code"] == "nesting_too_deep"

        big = b'{"type": "noop", "data": {"x": "' + b"a" * (300 * 1024) + b'"}}'
        r = await oversized(api, big)
        assert r.status_code == 413 and error_of(r)["code"] == "payload_too_large"

        async def chunked() -> Any:
            yield b'{"type": "noop", "data": {"x": "'
            for _ in range(40):
                yield b"a" * 8192
            yield b'"}}'

        async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
            r = await client.post(
                f"{PREFIX}/enqueue",
                content=chunked(),
                headers={**api.headers, "Content-Type": "application/json"},
            )
        assert r.status_code == 413 and error_of(r)["code"] == "payload_too_large"


async def test_fields_types_and_schemas(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        cases: list[tuple[Any, list[str]]] = [
            ([1, 2], ["body"]),
            ("noop", ["body"]),
            ({"type": "noop", "colour": "red"}, ["colour"]),
            ({"type": "teleport"}, ["type"]),
            ({}, ["type"]),
            ({"type": 7}, ["type"]),
            ({"type": "noop", "data": [1]}, ["data"]),
            ({"type": "noop", "priority": "urgent"}, ["priority"]),
            ({"type": "noop", "priority": 21}, ["priority"]),
            ({"type": "noop", "priority": True}, ["priority"]),
            ({"type": "noop", "max_retries": -1}, ["max_retries"]),
            ({"type": "noop", "max_retries": 2**70}, ["max_retries"]),
            ({"type": "noop", "timeout": "forever"}, ["timeout"]),
            ({"type": "noop", "tags": "a,b"}, ["tags"]),
            ({"type": "noop", "run_at": "tomorrow"}, ["run_at"]),
            ({"type": "noop", "run_at": "2030-01-01T09:00:00"}, ["run_at"]),
            ({"type": "noop", "data": {"n": 2**64}}, ["data.n"]),
            ({"type": "noop", "data": {"list": [0, -(2**63) - 1]}}, ["data.list[1]"]),
            (
                {"type": "email_notification", "data": {"to": "not-an-address", "cc": 3}},
                ["data.body", "data.cc", "data.subject", "data.to"],
            ),
            # Every problem at once: unknown fields, bad fields and the data's own.
            (
                {"type": "email_notification", "colour": "red", "priority": 0, "data": {}},
                ["colour", "data.body", "data.subject", "data.to", "priority"],
            ),
            ({"type": "noop", "tags": [""], "encrypt": "yes", "x": 1}, ["encrypt", "tags", "x"]),
        ]
        for body, expected in cases:
            r = await api.post(f"{PREFIX}/enqueue", json=body)
            assert r.status_code == 422, (body, r.text)
            error = error_of(r)
            assert error["code"] == "validation_failed"
            assert sorted(fields(r)) == expected, (body, r.text)
            assert error["message"]


async def test_bad_schedules(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        good = {"name": "Nightly", "job_type": "noop", "schedule": "@daily"}
        cases: list[tuple[dict[str, Any], str]] = [
            ({**good, "schedule": "every tuesday"}, "schedule"),
            ({**good, "schedule": "61 * * * *"}, "schedule"),
            ({**good, "timezone": "Mars/Olympus"}, "timezone"),
            ({**good, "job_type": "teleport"}, "job_type"),
            ({**good, "is_active": "yes"}, "is_active"),
            ({**good, "misfire_policy": "sometimes"}, "misfire_policy"),
            ({**good, "next_run": "2030-01-01T00:00:00Z"}, "next_run"),
            ({"job_type": "noop", "schedule": "@daily"}, "name"),
        ]
        for body, field in cases:
            r = await api.post(f"{PREFIX}/scheduled", json=body)
            assert r.status_code == 422, (body, r.text)
            assert fields(r)[0] == field, (body, r.text)
        every = {**good, "name": "", "timezone": "Mars/Olympus", "next_run": "soon"}
        r = await api.post(f"{PREFIX}/scheduled", json=every)
        assert r.status_code == 422 and fields(r) == ["name", "timezone", "next_run"]


async def test_query_and_header_inputs(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        for params in ({"limit": "ten"}, {"limit": "0"}, {"cursor": "garbage"}):
            r = await api.get(f"{PREFIX}/status/pending", params=params)
            assert r.status_code == 422, params
        r = await api.get(f"{PREFIX}/audit", params={"since": "yesterday"})
        assert r.status_code == 422 and fields(r) == ["since"]
        r = await api.post(
            f"{PREFIX}/enqueue",
            json={"type": "noop"},
            headers={**api.headers, "Idempotency-Key": "x" * 300},
        )
        assert r.status_code == 422 and fields(r) == ["Idempotency-Key"]
        r = await api.get(f"{PREFIX}/{'j' * 500}")
        assert r.status_code == 404


async def test_what_the_caller_sent_comes_back_escaped_in_an_error(config: Config) -> None:
    """An error quotes the body's keys (a field path): a lone surrogate there, which
    no UTF-8 encoder writes, comes back escaped as JSON allows, never as a 500."""
    deep = '{"type": "noop", "data": ' + '{"\\ud800": ' * 80 + "1" + "}" * 80 + "}"
    cases: list[tuple[str, str, int, str]] = [
        (f"{PREFIX}/enqueue", '{"type": {"\\ud800": 9223372036854775808}}', 422, "type.\ud800"),
        (f"{PREFIX}/enqueue", '{"type": "noop", "\\udfff": 1}', 422, "body"),
        (f"{PREFIX}/enqueue", '{"type": "noop", "data": {"\\ud800x": 1e400}}', 422, ""),
        (f"{PREFIX}/enqueue/bulk",
         '{"jobs": [{"type": "noop", "data": {"\\ud800": 18446744073709551616}}]}', 422, ""),
        (f"{PREFIX}/scheduled", '{"name": "n", "job_type": "noop", "schedule": "@daily", '
         '"data": {"\\udc00": -9223372036854775809}}', 422, ""),
        (f"{PREFIX}/enqueue", deep, 400, ""),
    ]  # fmt: skip
    async with running_api(api_config(config)) as api:
        headers = {**api.headers, "Content-Type": "application/json"}
        for path, body, status, field in cases:
            r = await api.post(path, content=body.encode(), headers=headers)
            assert r.status_code == status, (body[:80], r.text)
            error = error_of(r)
            assert error["message"]
            if field:
                assert field in fields(r), r.text
