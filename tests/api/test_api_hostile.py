"""Hostile requests the fuzz test (test_api_fuzz.py) does not make, against a real daemon
and a real Redis: what a query string, a header or a stored value from another door can
do to the admin API.

- a declared query parameter given twice is refused naming it (422), on every endpoint
  that reads a query string and on the events WebSocket — never one of them picked;
- a body with a `Content-Encoding` (gzip…) is refused (415 naming the header), whether
  or not the bytes really are compressed — never read as if they were not;
- two `Authorization` headers are refused (401), on HTTP and on the WebSocket;
- a request the HTTP/1.1 parser refuses before the app sees it (a malformed request
  line or header, conflicting Content-Lengths, a head over 16 KiB) gets the error
  body too, not an empty 400 or 431;
- a stored string no UTF-8 encoder can write (the CLI writes one in the audit log when
  given a non-UTF-8 argument) never turns a listing into a 500: its entry is sent
  degraded, alone.
"""

from __future__ import annotations

import gzip
import json
import socket
from typing import Any

import httpx
import trio
from api_client import PREFIX, api_config, auth, running_api, token
from test_ws_events import FEED, error_of, feed, handshake, recv

from fleetd.config import Config
from fleetd.engine import Engine

TEMPLATES = "/api/v1/admin/templates"


def refused_field(r: httpx.Response, status: int, field: str) -> dict[str, Any]:
    """The error of `r`, which must have `status` and name `field`."""
    assert r.status_code == status, r.text
    err = error_of(r)
    assert {"code", "message"} <= set(err), err
    fields = [f["field"] for f in err["details"].get("fields", [])]
    assert field in fields, err
    return err


async def test_a_declared_query_parameter_given_twice_is_refused(config: Config) -> None:
    async with running_api(api_config(config), roles=("api",)) as api:
        job = await api.enqueue({"type": "noop"})
        cases = [
            ("GET", f"{PREFIX}/status/pending?limit=5&limit=500", "limit"),
            ("GET", f"{PREFIX}/status/pending?type=noop&type=report_generation", "type"),
            ("GET", f"{PREFIX}/audit?company_id=acme&company_id=globex", "company_id"),
            ("GET", f"{PREFIX}/analytics?window=hour&window=week", "window"),
            ("GET", f"{PREFIX}/throughput?step=10s&step=1m", "step"),
            ("POST", f"{PREFIX}/cleanup?older_than=30d&older_than=0s", "older_than"),
            ("GET", f"{PREFIX}/{job['job_id']}/artifact?name=a&name=b", "name"),
            ("GET", f"{TEMPLATES}/none?version=1&version=2", "version"),
        ]
        for method, path, field in cases:
            r = await api.client.request(method, path, headers=api.headers)
            err = refused_field(r, 422, field)
            assert "more than once" in err["message"], (path, err)
        # Both problems of one query in one answer.
        r = await api.get(f"{PREFIX}/status/pending?limit=0&q=a&q=b")
        err = refused_field(r, 422, "q")
        assert "limit" in [f["field"] for f in err["details"]["fields"]]
        # Undeclared parameters stay ignored, repeated or not (a proxy's cache buster).
        r = await api.get(f"{PREFIX}/status/pending?_=1&_=2&limit=5")
        assert r.status_code == 200, r.text
        # The clean-up that was refused deleted nothing.
        assert (await api.get(f"{PREFIX}/{job['job_id']}")).status_code == 200


async def test_the_events_feed_refuses_a_single_value_parameter_given_twice(
    config: Config,
) -> None:
    async with running_api(api_config(config), roles=("api",)) as api:
        platform = {"Authorization": f"Bearer {token()}"}
        for query, field in (
            ("company_id=acme&company_id=globex", "company_id"),
            ("last_event_id=0-0&last_event_id=1-0", "last_event_id"),
            ("batch=1&batch=0", "batch"),
        ):
            r = await handshake(api, f"{FEED}?{query}", platform)
            refused_field(r, 422, field)
        # A ticket given twice is refused before it is redeemed: it still opens once.
        ticket = (await api.post(f"{PREFIX}/events/ticket")).json()["ticket"]
        r = await handshake(api, f"{FEED}?ticket={ticket}&ticket=x{ticket}")
        refused_field(r, 422, "ticket")
        async with feed(api, f"ticket={ticket}", tok="") as ws:
            assert (await recv(ws))["type"] == "subscribed"
        # A subscribe message naming two companies is an error frame, not the last one.
        async with feed(api) as ws:
            assert (await recv(ws))["filters"]["company_id"] is None
            await ws.send_message(json.dumps({"action": "subscribe", "company_id": ["a", "b"]}))
            answer = await recv(ws)
            assert answer["type"] == "error", answer
            assert answer["error"]["details"]["fields"][0]["field"] == "company_id"


async def test_a_body_with_a_content_encoding_is_refused(config: Config) -> None:
    async with running_api(api_config(config), roles=("api",)) as api:
        body = json.dumps({"type": "noop", "data": {}, "idempotency_key": "coded"}).encode()
        path = f"{PREFIX}/enqueue"
        for content, coding in ((gzip.compress(body), "gzip"), (body, "gzip"), (body, "br")):
            headers = {**api.headers, "Content-Type": "application/json",
                       "Content-Encoding": coding}  # fmt: skip
            r = await api.client.post(path, content=content, headers=headers)
            refused_field(r, 415, "Content-Encoding")
        # Nothing was stored: the key is still free (201, not a 200 duplicate).
        headers = {**api.headers, "Content-Type": "application/json",
                   "Content-Encoding": "identity"}  # fmt: skip
        r = await api.client.post(path, content=body, headers=headers)
        assert r.status_code == 201, r.text
        # The media type's refusal names its header too.
        r = await api.client.post(path, content=body, headers=api.headers)
        refused_field(r, 415, "Content-Type")


async def test_two_authorization_headers_are_refused(config: Config) -> None:
    async with running_api(api_config(config), roles=("api",)) as api:
        platform, acme = auth()["Authorization"], auth("acme")["Authorization"]
        two = [("Authorization", acme), ("Authorization", platform)]
        r = await api.client.get(f"{PREFIX}/stats", headers=two)
        assert r.status_code == 401 and error_of(r)["code"] == "unauthorized", r.text
        r = await api.client.get(f"{PREFIX}/status/pending", headers=two)
        assert r.status_code == 401, r.text
        r = await handshake(api, FEED, {"Authorization": platform})
        assert r.status_code != 401  # one header: the handshake goes on
        key_headers = {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "a" * 22 + "==",
        }
        r = await api.client.get(FEED, headers=[*key_headers.items(), *two])
        assert r.status_code == 401 and error_of(r)["code"] == "unauthorized", r.text


async def test_a_stored_lone_surrogate_never_breaks_a_listing(
    config: Config, engine: Engine
) -> None:
    # An audit entry whose detail holds a lone surrogate (\udcff, as Python reads a byte
    # of argv that is not UTF-8; the CLI of older versions audited such a refusal) must
    # not make the audit listing — every entry of it — a 500.
    async with running_api(api_config(config), roles=("api",)) as api:
        await api.enqueue({"type": "noop"})
        client = engine.link.client
        with trio.fail_after(10):  # the audit writer sends its entries in batches
            while not (written := client.xrange(engine.keys.audit, count=1)):
                await trio.sleep(0.02)
        [(_, fields)] = written
        planted = {**fields, "door": "cli", "detail": json.dumps({"type": "\udcff\udcfe"})}
        client.xadd(engine.keys.audit, planted)
        r = await api.get(f"{PREFIX}/audit")
        assert r.status_code == 200, r.text
        entries = r.json()["entries"]
        cli = [e for e in entries if e["door"] == "cli"]
        # The entry is sent degraded, alone (as a stored job row is): its detail left
        # out and named.
        assert cli and "detail" in cli[0]["unreadable"]["fields"], cli
        http = [e for e in entries if e["door"] == "http"]
        assert http and "unreadable" not in http[0], http


def raw_answer(url: str, request: bytes) -> tuple[int, dict[str, Any]]:
    """Send raw bytes on a fresh connection; the status and JSON body of the answer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), head
    return int(head.split(b" ", 2)[1]), json.loads(body)


async def test_requests_the_http_parser_refuses_get_the_error_body(config: Config) -> None:
    async with running_api(api_config(config), roles=("api",)) as api:
        tok = auth()["Authorization"].encode()
        stats = b"GET /api/v1/admin/jobs/stats HTTP/1.1\r\nHost: x\r\nAuthorization: " + tok
        cases = [
            (b"GET /healthz\r\n\r\n", 400),
            (b"GET /api/v1/admin/jobs/a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET /api/v1/admin/jobs/\xff HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (stats + b"\r\nContent-Length: 5\r\nContent-Length: 9\r\n\r\n", 400),
            (stats + b"\r\nBad Header: x\r\n\r\n", 400),
            # Heads still incomplete past 16 KiB (all of it read: no reset loses the answer).
            (stats + b"\r\nX-Big: " + b"v" * 20_000, 431),
            (b"GET /api/v1/admin/jobs/stats?q=" + b"a" * 20_000, 431),
        ]
        for request, status in cases:
            got, body = await trio.to_thread.run_sync(raw_answer, api.url, request)
            assert got == status, (request[:60], body)
            assert {"code", "message"} <= set(body["error"]), body
        # The connection is answered and closed; the daemon serves the next one.
        assert (await api.get(f"{PREFIX}/stats")).status_code == 200
