"""Overload is answered, not dropped (issue #14, point 5), against a real daemon and Redis.

Admission control (fleetd.api.admission): past `[http] max_in_flight` requests in
flight, an immediate 503 `overloaded` with Retry-After and the JSON error body; the
probes and the events WebSocket still served; the slots come back. A burst of
connections at once: every one answered (2xx or 503 with Retry-After), none reset, every
acknowledged job in Redis. A probe queued behind a burst does not wait for the burst
(fleetd.api.acceptor). The listen backlog. And a company admin's filtered listing does
bounded work per page.
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import trio
from api_client import PREFIX, Api, api_config, auth, running_api, token
from prometheus_client.parser import text_string_to_metric_families

from fleetd.api.acceptor import ACCEPT_BATCH
from fleetd.api.admission import RETRY_AFTER
from fleetd.api.server import LISTEN_BACKLOG
from fleetd.cli.events import connect
from fleetd.config import Config
from fleetd.jobs import pages as pages_module

BODY = json.dumps({"type": "noop"}).encode()
# A refusal does no work: it must come back well within this, however busy the daemon.
REFUSAL_BOUND = 0.5
# Connections opened at once by the burst test: above hypercorn's old backlog of 100,
# small enough for a shared 2-core test box (~1 s).
BURST = 300


def address(api: Api) -> tuple[str, int]:
    host, _, port = api.url.removeprefix("http://").rpartition(":")
    return host, int(port)


def enqueue_request(
    host: str, port: int, *, body_sent: int | None = None, company: str | None = None
) -> bytes:
    """An enqueue on the wire; with `body_sent`, only that many bytes of its body; with
    `company`, by that company's token."""
    head = (
        f"POST {PREFIX}/enqueue HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token(company)}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head + BODY[: len(BODY) if body_sent is None else body_sent]


async def read_answer(stream: trio.SocketStream) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data or not _whole(data):
        chunk = await stream.receive_some(65536)
        assert chunk, f"connection closed without a whole answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _whole(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return match is not None and len(body) >= int(match[1])


def scalar(text: str, name: str) -> float:
    """The value of the unlabelled sample `name` in a Prometheus text page."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return sample.value
    raise AssertionError(f"no sample {name}")


def in_flight(api: Api) -> int:
    assert api.daemon.http is not None
    return api.daemon.http.admission.in_flight


async def hold(api: Api, n: int, *, company: str | None = None) -> list[trio.SocketStream]:
    """`n` enqueues (by `company`'s token) whose bodies are still being sent: they hold
    `n` slots until `complete`."""
    host, port = address(api)
    held = [await trio.open_tcp_stream(host, port) for _ in range(n)]
    for stream in held:
        await stream.send_all(enqueue_request(host, port, body_sent=3, company=company))
    with trio.fail_after(5):
        while in_flight(api) < n:
            await trio.sleep(0.01)
    return held


async def complete(held: list[trio.SocketStream]) -> None:
    """The rest of each held request's body sent: each is answered 201."""
    for stream in held:
        await stream.send_all(BODY[3:])
        with trio.fail_after(5):
            status, _, body = await read_answer(stream)
        assert status == 201, body
        await stream.aclose()


async def test_past_max_in_flight_503_at_once_probes_and_websocket_served(
    config: Config,
) -> None:
    async with running_api(api_config(config, max_in_flight=3)) as api:
        # Three enqueues whose bodies are still being sent hold the three slots.
        held = await hold(api, 3)
        for method, path in (("POST", f"{PREFIX}/enqueue"), ("GET", f"{PREFIX}/stats")):
            started = time.monotonic()
            r = await api.client.request(method, path, headers=auth(), json={"type": "noop"})
            assert time.monotonic() - started < REFUSAL_BOUND, path
            assert r.status_code == 503, (path, r.text)
            assert r.headers["retry-after"] == str(RETRY_AFTER)
            assert r.headers["content-type"] == "application/json"
            error = r.json()["error"]
            assert error["code"] == "overloaded", path
            assert error["details"] == {"max_in_flight": 3, "retry_after": RETRY_AFTER}
        # Refused before auth: an anonymous caller learns nothing more.
        assert (await api.client.get(f"{PREFIX}/stats")).status_code == 503
        # The probes answer, uncounted.
        assert (await api.client.get("/healthz")).json() == {"status": "ok"}
        assert (await api.client.get("/readyz")).status_code == 200
        # So does the events WebSocket (it has its own limits).
        url = api.url.replace("http://", "ws://") + f"{PREFIX}/events"
        with trio.fail_after(5):
            async with connect(url, token(), []) as ws:
                assert not ws.closed
        assert in_flight(api) == 3
        # The held requests complete; their slots come back.
        await complete(held)
        with trio.fail_after(5):
            while in_flight(api) > 0:
                await trio.sleep(0.01)
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"})
        assert r.status_code == 201
        text = (await api.get("/metrics")).text
        assert scalar(text, "fleetd_http_overloaded_total") == 3
        assert scalar(text, "fleetd_http_in_flight") == 1  # this scrape itself


async def test_no_company_holds_more_than_its_share_of_the_requests_in_flight(
    config: Config,
) -> None:
    async with running_api(api_config(config, max_in_flight=4, company_share=0.5)) as api:
        # Two of acme's enqueues whose bodies are still being sent hold its share.
        held = await hold(api, 2, company="acme")
        await trio.sleep(0.2)  # both authenticated, their bodies awaited
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"}, headers=auth("acme"))
        assert r.status_code == 429, r.text
        assert r.headers["retry-after"] == str(RETRY_AFTER)
        error = r.json()["error"]
        assert error["code"] == "overloaded"
        assert error["details"] == {"company_id": "acme", "max_in_flight": 2,
                                    "retry_after": RETRY_AFTER}  # fmt: skip
        # The slots left serve everyone else: another company, the platform.
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"}, headers=auth("globex"))
        assert r.status_code == 201, r.text
        assert (await api.post(f"{PREFIX}/enqueue", json={"type": "noop"})).status_code == 201
        await complete(held)
        # acme's share came back with its requests.
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"}, headers=auth("acme"))
        assert r.status_code == 201, r.text


async def test_a_burst_of_connections_is_answered_never_reset(config: Config) -> None:
    async with running_api(api_config(config, max_in_flight=16)) as api:
        host, port = address(api)
        outcomes: list[tuple[int, dict[str, str], bytes]] = []
        go = trio.Event()

        async def one() -> None:
            await go.wait()
            async with await trio.open_tcp_stream(host, port) as stream:
                await stream.send_all(enqueue_request(host, port))
                outcomes.append(await read_answer(stream))

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(BURST):
                    nursery.start_soon(one)
                await trio.sleep(0.1)
                go.set()
        assert len(outcomes) == BURST  # a reset or an early close raised above
        statuses = {status for status, _, _ in outcomes}
        assert statuses <= {201, 503}, statuses
        acknowledged = [json.loads(body)["job_id"] for s, _, body in outcomes if s == 201]
        refused = [(h, json.loads(body)) for s, h, body in outcomes if s == 503]
        assert acknowledged and refused  # 16 slots for 300 at once: both happen
        for headers, body in refused:
            assert headers["retry-after"] == str(RETRY_AFTER)
            assert body["error"]["code"] == "overloaded"
        ops, link = api.daemon.engine.ops, api.daemon.engine.link
        jobs = link.run_sync(lambda c: ops.get_many(c, acknowledged))
        assert all(job is not None for job in jobs)
        stats = (await api.get(f"{PREFIX}/stats")).json()["stats"]
        assert stats["total"] == len(acknowledged)  # a refusal wrote nothing


async def test_a_probe_queued_behind_a_burst_is_answered_before_the_burst_is_served(
    config: Config,
) -> None:
    burst = ACCEPT_BATCH + 44  # the probe is in the second batch the daemon accepts
    async with running_api(api_config(config, max_in_flight=burst)) as api:
        host, port = address(api)
        # Connected and sent while the daemon cannot run (no await here): the kernel
        # queues them all, then the probe, for the daemon's accept loop.
        held = [socket.create_connection((host, port), timeout=10) for _ in range(burst)]
        for sock in held:
            sock.sendall(enqueue_request(host, port, body_sent=3))  # bodies held back
        probe = socket.create_connection((host, port), timeout=10)
        probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: fleetd\r\nConnection: close\r\n\r\n")
        try:
            with trio.fail_after(30):
                probe_stream = trio.SocketStream(trio.socket.from_stdlib_socket(probe))
                status, _, body = await read_answer(probe_stream)
            assert status == 200 and json.loads(body) == {"status": "ok"}
            # Answered before the requests queued ahead of it had all even started;
            # hypercorn's one accept per scheduling round served them all first.
            assert in_flight(api) < burst
            streams = [trio.SocketStream(trio.socket.from_stdlib_socket(s)) for s in held]
            with trio.fail_after(60):
                while in_flight(api) < burst:
                    await trio.sleep(0.01)
                for stream in streams:
                    await stream.send_all(BODY[3:])
                for stream in streams:
                    status, _, body = await read_answer(stream)
                    assert status == 201, body
        finally:
            probe.close()
            for sock in held:
                sock.close()


def somaxconn() -> int:
    """The kernel's cap on any listen backlog."""
    return int(Path("/proc/sys/net/core/somaxconn").read_text())


async def test_listeners_have_a_backlog_for_bursts(config: Config) -> None:
    cap = somaxconn()
    async with running_api(api_config(config)) as api:
        _, port = address(api)
        out = await trio.run_process(
            ["ss", "-ltnH", f"sport = :{port}"], capture_stdout=True, check=True
        )
        # For a listening socket, ss shows the backlog as Send-Q.
        send_q = int(out.stdout.decode().split()[2])
        assert send_q == min(LISTEN_BACKLOG, cap) > 100  # hypercorn's default was 100


async def test_a_company_admins_filtered_listing_does_bounded_work_per_page(
    config: Config, monkeypatch: Any
) -> None:
    scan = 100
    monkeypatch.setattr(pages_module, "MAX_FILTER_SCAN", scan)
    async with running_api(api_config(config)) as api:
        ours = await api.enqueue({"type": "noop"}, headers=auth("acme"))
        others = {"jobs": [{"type": "noop", "company_id": "globex"}] * 250}
        r = await api.post(f"{PREFIX}/enqueue/bulk", json=others)
        assert r.status_code == 201
        acme = auth("acme")
        pages: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            r = await api.get(f"{PREFIX}/status/pending", params=params, headers=acme)
            assert r.status_code == 200
            pages.append(r.json())
            cursor = pages[-1]["next_cursor"]
            if cursor is None:
                break
            assert len(pages) < 10
        # The newest 250 are the other company's: the first pages are empty but for a
        # cursor, and one request never looks at more than `scan` of them.
        assert [p["count"] for p in pages] == [0, 0, 1]
        assert pages[-1]["jobs"][0]["id"] == ours["job_id"]
