"""The events WebSocket (fleetd.api.ws, fleetd.api.ws_session, fleetd.events) against a
real redis-server and an in-process daemon, with trio-websocket as the client.

Refused handshakes are checked with httpx sending the upgrade request (trio-websocket
leaks its socket when a handshake is refused). Events are appended with XADD where a
test needs exact shapes (filters, companies, trimming); the cross-daemon test uses real
jobs. No test waits for something *not* to arrive: a filtered-out event is followed by
one that matches, and the next frame must be that one.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import trio
import trio.lowlevel
from api_client import PREFIX, Api, api_config, running_api, token
from conftest import make_config
from quart.wrappers.websocket import Websocket
from trio_websocket import ConnectionClosed, WebSocketConnection

from fleetd.api import tickets, ws_session
from fleetd.api.auth import Principal
from fleetd.backend.keys import Keys
from fleetd.cli.events import connect
from fleetd.config import Config
from fleetd.runtime.daemon import Daemon
from fleetd.runtime.events import Event, EventHub, id_key
from fleetd.runtime.replay import read_replay

FEED = f"{PREFIX}/events"
WAIT = 10.0


def cfg_with(redis_url: str, namespace: str, tmp_path: Path, **events: Any) -> Config:
    return api_config(make_config(redis_url, namespace, tmp_path / "state", events=events))


@asynccontextmanager
async def feed(
    api: Api, query: str = "", *, tok: str | None = None, headers: dict[str, str] | None = None
) -> AsyncIterator[WebSocketConnection]:
    url = api.url.replace("http://", "ws://") + FEED + (f"?{query}" if query else "")
    hdrs = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    async with connect(url, None if tok == "" else tok or token(), hdrs) as ws:
        yield ws


async def recv(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(WAIT):
        body: dict[str, Any] = json.loads(await ws.get_message())
        return body


async def closed_with(ws: WebSocketConnection) -> tuple[int, str | None]:
    """Read until the server closes; (code, reason)."""
    with trio.fail_after(WAIT):
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as exc:
            assert exc.reason is not None
            return exc.reason.code, exc.reason.reason


async def handshake(api: Api, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """An upgrade request the server is expected to refuse."""
    key = base64.b64encode(os.urandom(16)).decode()
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
    return await api.client.get(
        path, headers={**upgrade, "Sec-WebSocket-Key": key, **(headers or {})}
    )


def xadd(api: Api, kind: str = "job.completed", **fields: Any) -> str:
    """Append an event the way the scripts do; its id."""
    row = {"type": kind, "job_id": "job_X", "job_type": "noop", "company_id": "",
           "status": "completed", "ts": int(time.time() * 1000), "data": "{}"}  # fmt: skip
    row.update({k: str(v) for k, v in fields.items()})
    link = api.daemon.engine.link
    return str(link.run_sync(lambda c: c.xadd(api.daemon.engine.keys.events, row)))


def error_of(r: httpx.Response) -> dict[str, Any]:
    err: dict[str, Any] = r.json()["error"]
    return err


def hub_of(api: Api) -> EventHub:
    assert api.daemon.http is not None and api.daemon.http.state.hub is not None
    return api.daemon.http.state.hub


# -- handshake ------------------------------------------------------------------------


async def test_handshake_needs_an_admin_token(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        r = await handshake(api, FEED)
        assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
        r = await handshake(api, FEED, {"Authorization": "Bearer nope"})
        assert r.status_code == 401
        r = await handshake(api, FEED, {"Authorization": f"Bearer {token(secret='x' * 64)}"})
        assert r.status_code == 401
        r = await handshake(api, FEED, {"Authorization": f"Bearer {token(role='viewer')}"})
        assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
        # A plain GET of the feed says how to use it.
        r = await api.get(FEED)
        assert r.status_code == 426 and r.headers["Upgrade"] == "websocket"
        async with feed(api) as ws:
            first = await recv(ws)
        assert first["type"] == "subscribed" and "last_event_id" in first
        assert first["filters"] == {"type": [], "status": [], "job_id": [], "company_id": None}


async def test_ticket_works_once(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        assert (await api.client.post(f"{FEED}/ticket")).status_code == 401
        r = await api.post(f"{FEED}/ticket")
        assert r.status_code == 201, r.text
        body = r.json()
        assert set(body) == {"ticket", "expires_at"} and body["expires_at"].endswith("Z")
        async with feed(api, f"ticket={body['ticket']}", tok="") as ws:
            assert (await recv(ws))["type"] == "subscribed"
        r = await handshake(api, f"{FEED}?ticket={body['ticket']}")
        assert r.status_code == 401 and "already used" in error_of(r)["message"]
        r = await handshake(api, f"{FEED}?ticket=../../etc")
        assert r.status_code == 401


async def test_refused_query_leaves_the_ticket_usable(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        ticket = (await api.post(f"{FEED}/ticket")).json()["ticket"]
        for query, field in (("status=done", "status"), ("last_event_id=abc", "last_event_id"),
                             ("batch=maybe", "batch")):  # fmt: skip
            r = await handshake(api, f"{FEED}?ticket={ticket}&{query}")
            assert r.status_code == 422 and error_of(r)["details"]["fields"][0]["field"] == field
        async with feed(api, f"ticket={ticket}&status=failed", tok="") as ws:
            assert (await recv(ws))["filters"]["status"] == ["failed"]
        r = await handshake(api, f"{FEED}?ticket={ticket}")
        assert r.status_code == 401 and "already used" in error_of(r)["message"]


async def test_expired_ticket_is_refused(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        link, keys = api.daemon.engine.link, api.daemon.engine.keys
        who = Principal("tester", None)
        short = link.run_sync(lambda c: tickets.issue(c, keys, who, time.time() + 60, 0.05))
        stale = link.run_sync(lambda c: tickets.issue(c, keys, who, time.time() + 60, 60))
        # The token behind `stale` has expired since the ticket was issued.
        record = json.dumps({"sub": "tester", "company_id": None, "exp": time.time() - 1})
        link.run_sync(lambda c: c.set(keys.ws_ticket(stale.value), record))
        await trio.sleep(0.1)
        r = await handshake(api, f"{FEED}?ticket={short.value}")
        assert r.status_code == 401 and "expired" in error_of(r)["message"]
        r = await handshake(api, f"{FEED}?ticket={stale.value}")
        assert r.status_code == 401 and error_of(r)["message"] == "token expired"


async def test_origin_check(redis_url: str, namespace: str, tmp_path: Path) -> None:
    cfg = cfg_with(redis_url, namespace, tmp_path)
    cfg = dataclasses.replace(
        cfg, http=dataclasses.replace(cfg.http, allowed_origins=("https://ops.example",))
    )
    async with running_api(cfg) as api:
        bearer = {"Authorization": f"Bearer {token()}"}
        r = await handshake(api, FEED, {**bearer, "Origin": "https://evil.example"})
        assert r.status_code == 403 and "origin" in error_of(r)["message"]
        own = api.url.rstrip("/")
        for origin in (own, "https://ops.example"):
            async with feed(api, headers={"Origin": origin}) as ws:
                assert (await recv(ws))["type"] == "subscribed"


async def test_socket_closes_when_the_token_expires(config: Config) -> None:
    async with running_api(api_config(config)) as api, feed(api, tok=token(ttl=2)) as ws:
        assert (await recv(ws))["type"] == "subscribed"
        assert await closed_with(ws) == (1008, "token expired")


async def test_bad_query_is_refused_naming_the_field(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        bearer = {"Authorization": f"Bearer {token()}"}
        top = 2**64 - 1
        for query, field in (
            ("status=done", "status"), ("last_event_id=abc", "last_event_id"),
            # Ids Redis refuses as a replay's start: a part over 64 bits, the largest id.
            (f"last_event_id={top + 1}-0", "last_event_id"),
            (f"last_event_id={top}-{top}", "last_event_id"),
        ):  # fmt: skip
            r = await handshake(api, f"{FEED}?{query}", bearer)
            assert r.status_code == 422, query
            assert error_of(r)["details"]["fields"][0]["field"] == field


# -- messages and filters -------------------------------------------------------------


async def test_query_filters(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        async with feed(api, "type=email,noop&type=report&status=failed&status=completed") as ws:
            first = await recv(ws)
            assert first["filters"]["type"] == ["email", "noop", "report"]
            xadd(api, job_type="other")
            xadd(api, status="pending")
            wanted = xadd(
                api, "job.failed", job_type="email", status="failed", data='{"error":"x"}'
            )
            ev = await recv(ws)
        assert ev["id"] == wanted and ev["data"] == {"error": "x"}
        assert set(ev) == {"id", "type", "job_id", "job_type", "company_id", "status", "ts", "data"}
        assert ev["type"] == "job.failed" and ev["company_id"] is None and isinstance(ev["ts"], int)
        async with feed(api, "job_id=job_A") as ws:
            await recv(ws)
            xadd(api, job_id="job_B")
            wanted = xadd(api, job_id="job_A")
            assert (await recv(ws))["id"] == wanted


async def test_subscribe_message_replaces_the_filters(config: Config) -> None:
    async with running_api(api_config(config)) as api, feed(api, "status=failed") as ws:
        await recv(ws)
        await ws.send_message(json.dumps({"action": "subscribe", "status": ["pending"]}))
        reply = await recv(ws)
        filters = {"type": [], "status": ["pending"], "job_id": [], "company_id": None}
        assert reply == {"type": "subscribed", "filters": filters}
        xadd(api, status="failed")
        wanted = xadd(api, status="pending")
        assert (await recv(ws))["id"] == wanted
        await ws.send_message(json.dumps({"action": "subscribe", "status": ["nope"]}))
        err = await recv(ws)
        assert err["type"] == "error" and err["error"]["code"] == "validation_failed"
        assert err["error"]["details"]["fields"][0]["field"] == "status"
        await ws.send_message("not json")
        err = await recv(ws)
        assert err["type"] == "error" and err["error"]["code"] == "bad_request"
        assert "not valid JSON" in err["error"]["message"]


async def test_a_lone_surrogate_in_a_subscription_is_escaped_not_a_crash(config: Config) -> None:
    """What the client sent comes back in the answer (the filters): a lone surrogate,
    which a text frame cannot carry, is escaped, and the socket serves on."""
    async with running_api(api_config(config)) as api, feed(api) as ws:
        await recv(ws)
        await ws.send_message('{"action": "subscribe", "company_id": "\\ud800"}')
        reply = await recv(ws)
        assert reply["type"] == "subscribed" and reply["filters"]["company_id"] == "\ud800"
        await ws.send_message(json.dumps({"action": "subscribe", "status": ["pending"]}))
        assert (await recv(ws))["filters"]["status"] == ["pending"]


# Deeper than Python's recursion limit (1,000): json.loads raises RecursionError. Within
# the WebSocket message limit (64 KiB).
NESTED = "[" * 60_000


def test_a_nested_entry_parses_like_bad_json() -> None:
    ev = Event.parse("1700000000000-0", {"type": "job.completed", "data": NESTED})
    assert ev.data == {} and json.loads(ev.frame)["data"] == {}


async def test_deeply_nested_json_is_an_error_not_a_crash(config: Config) -> None:
    async with running_api(api_config(config)) as api, feed(api) as ws:
        await recv(ws)
        await ws.send_message(NESTED)
        err = await recv(ws)
        assert err["type"] == "error" and err["error"]["code"] == "bad_request"
        assert "not valid JSON" in err["error"]["message"]
        # The same in a stream entry (a third party's): delivered with empty data, and
        # the hub reads on.
        deep = xadd(api, data=NESTED)
        after = xadd(api)
        ev = await recv(ws)
        assert ev["id"] == deep and ev["data"] == {}
        assert (await recv(ws))["id"] == after


async def test_company_is_forced_by_the_token(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        acme = token("acme")
        r = await handshake(api, f"{FEED}?company_id=globex", {"Authorization": f"Bearer {acme}"})
        assert r.status_code == 403
        async with (
            feed(api, tok=acme) as bound,
            feed(api, "company_id=globex") as chosen,
            feed(api) as platform,
        ):
            assert (await recv(bound))["filters"]["company_id"] == "acme"
            assert (await recv(chosen))["filters"]["company_id"] == "globex"
            await recv(platform)
            alert = xadd(
                api, "alert.raised", job_id="", job_type="", status="", data='{"alert":"backlog"}'
            )
            other = xadd(api, company_id="globex")
            sched = xadd(api, "schedule.fired", company_id="acme", status="active")
            assert (await recv(bound))["id"] == sched
            assert (await recv(chosen))["id"] == other
            got = [(await recv(platform))["id"] for _ in range(3)]
            assert got == [alert, other, sched]
            await bound.send_message(json.dumps({"action": "subscribe", "company_id": "globex"}))
            assert (await recv(bound))["error"]["code"] == "forbidden"


async def test_events_read_during_the_handshake_are_delivered(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_api(api_config(config)) as api:
        hub = hub_of(api)
        injected: list[str] = []
        accept = Websocket.accept

        async def accept_late(self: Websocket, *args: Any, **kwargs: Any) -> None:
            # The hub reads and fans out an event after the session took its start
            # position and before it has accepted the handshake.
            if not injected:
                injected.append(xadd(api, n="handshake"))
                with trio.fail_after(WAIT):
                    while hub.position_key < id_key(injected[0]):
                        await trio.sleep(0.01)
            await accept(self, *args, **kwargs)

        monkeypatch.setattr(Websocket, "accept", accept_late)
        async with feed(api) as ws:
            first = await recv(ws)
            assert id_key(first["last_event_id"]) < id_key(injected[0])
            after = xadd(api)
            assert (await recv(ws))["id"] == injected[0]
            assert (await recv(ws))["id"] == after


# -- resume ---------------------------------------------------------------------------


async def test_resume_has_no_gap_and_no_duplicate(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        async with feed(api) as ws:
            await recv(ws)
            seen = [xadd(api, n=i) for i in range(3)]
            assert [(await recv(ws))["id"] for _ in range(3)] == seen
        # Events keep coming while the client is away and while it resumes.
        backlog = [xadd(api, n=i) for i in range(1200)]  # more than one replay chunk
        async with trio.open_nursery() as nursery, feed(api, f"last_event_id={seen[-1]}") as ws:
            live: list[str] = []

            async def produce() -> None:
                for i in range(200):
                    live.append(xadd(api, n=i))
                    await trio.lowlevel.checkpoint()

            # The resume point, not the hub's newest event: the replay follows.
            assert await recv(ws) == {
                "type": "subscribed",
                "filters": {"type": [], "status": [], "job_id": [], "company_id": None},
                "last_event_id": seen[-1],
            }
            nursery.start_soon(produce)
            got = [(await recv(ws))["id"] for _ in range(1400)]
        assert got == backlog + live


async def test_gap_after_trimming(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        ids = [xadd(api, n=i) for i in range(10)]
        link, keys = api.daemon.engine.link, api.daemon.engine.keys
        link.run_sync(lambda c: c.xtrim(keys.events, maxlen=3, approximate=False))
        async with feed(api, f"last_event_id={ids[0]}") as ws:
            await recv(ws)
            gap = await recv(ws)
            assert gap == {
                "type": "gap",
                "data": {"last_event_id": ids[0], "first_available": ids[7]},
            }
            assert [(await recv(ws))["id"] for _ in range(3)] == ids[7:]


async def test_gap_when_trimmed_during_the_replay(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ws_session, "REPLAY_CHUNK", 5)
    reads = 0

    def trimming(client: Any, keys: Keys, after: str, count: int, company: str | None) -> Any:
        nonlocal reads
        reads += 1
        if reads == 2:  # between the first chunk and the second
            client.xtrim(keys.events, maxlen=3, approximate=False)
        return read_replay(client, keys, after, count, company)

    monkeypatch.setattr(ws_session, "read_replay", trimming)
    async with running_api(api_config(config)) as api:
        ids = [xadd(api, n=i) for i in range(20)]
        async with feed(api, f"last_event_id={ids[0]}") as ws:
            assert (await recv(ws))["last_event_id"] == ids[0]
            assert [(await recv(ws))["id"] for _ in range(5)] == ids[1:6]
            gap = await recv(ws)
            assert gap == {
                "type": "gap",
                "data": {"last_event_id": ids[5], "first_available": ids[17]},
            }
            assert [(await recv(ws))["id"] for _ in range(3)] == ids[17:]
            after = xadd(api)
            assert (await recv(ws))["id"] == after


async def test_redis_lost_during_a_replay_closes_with_its_own_reason(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(client: Any, keys: Keys, after: str, count: int, company: str | None) -> Any:
        raise redis.exceptions.ConnectionError("Connection refused")

    async with running_api(api_config(config)) as api:
        start = xadd(api)
        monkeypatch.setattr(ws_session, "read_replay", unreachable)
        async with feed(api, f"last_event_id={start}") as ws:
            await recv(ws)
            code, reason = await closed_with(ws)
        assert code == 1013 and reason == f"redis unavailable; resume with last_event_id={start}"


# -- slow consumers, limits, keepalive ------------------------------------------------


async def test_slow_consumer_is_closed_and_others_are_not(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    async with running_api(cfg_with(redis_url, namespace, tmp_path, buffer=10)) as api:
        async with feed(api) as slow, feed(api) as fast:
            await recv(slow)
            await recv(fast)
            big = json.dumps({"pad": "x" * 20_000})
            # ~40 MB: more than the loopback socket buffers hold, so the slow client's
            # session stops draining and its channel of 10 overflows.
            # One at a time: a burst larger than the buffer of 10 would overflow `fast`
            # too (the hub fans out a whole XREAD at once).
            ids = []
            for _ in range(2000):
                ids.append(xadd(api, data=big))
                assert (await recv(fast))["id"] == ids[-1]
            received: list[str] = []
            with trio.fail_after(WAIT):
                try:
                    while True:
                        received.append(json.loads(await slow.get_message())["id"])
                except ConnectionClosed as exc:
                    assert exc.reason is not None
                    code, reason = exc.reason.code, exc.reason.reason
        assert code == 1013
        assert 0 < len(received) < len(ids) and received == ids[: len(received)]
        assert reason == f"subscriber fell behind; resume with last_event_id={received[-1]}"


async def test_too_many_subscribers(redis_url: str, namespace: str, tmp_path: Path) -> None:
    cfg = cfg_with(redis_url, namespace, tmp_path, max_subscribers=1)
    async with running_api(cfg) as api, feed(api) as first, feed(api) as second:
        assert (await recv(first))["type"] == "subscribed"
        code, reason = await closed_with(second)
        assert code == 1013 and reason == "too many subscribers; try again later"


async def test_no_company_holds_more_than_its_share_of_subscribers(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    cfg = cfg_with(redis_url, namespace, tmp_path, max_subscribers=4, company_share=0.5)
    acme, globex = token("acme"), token("globex")
    async with running_api(cfg) as api:
        async with feed(api, tok=acme) as a1, feed(api, tok=acme) as a2, feed(api, tok=acme) as a3:
            assert (await recv(a1))["type"] == (await recv(a2))["type"] == "subscribed"
            code, reason = await closed_with(a3)
            assert (code, reason) == (1013, "too many subscribers of this company; try again later")
            # Another company, and the platform's own dashboards, still get in.
            async with feed(api, tok=globex) as g1, feed(api) as platform:
                assert (await recv(g1))["type"] == (await recv(platform))["type"] == "subscribed"
        # acme's sessions ended: its share is free again.
        async with feed(api, tok=acme) as again:
            assert (await recv(again))["type"] == "subscribed"


async def test_silent_peer_is_cut_off(redis_url: str, namespace: str, tmp_path: Path) -> None:
    cfg = cfg_with(redis_url, namespace, tmp_path, ping_interval=0.5)
    async with running_api(cfg) as api, feed(api) as alive, feed(api):
        await recv(alive)
        # trio-websocket queues one message and stops reading the socket (and so
        # answering pings) until it is taken: the second client never takes the next.
        xadd(api)
        assert (await recv(alive))["type"] == "job.completed"
        await gauge_is(api, 1)
        # The one that answered pings all along still gets events.
        wanted = xadd(api)
        assert (await recv(alive))["id"] == wanted
        # The server closes first: a ping crossing a client's own close frame makes
        # trio-websocket fail (see fleetd.api.ws_stream).
        api.daemon.request_stop()
        assert (await closed_with(alive))[0] == 1001


# -- fan-out across daemons, stop, metrics --------------------------------------------


async def test_events_of_jobs_run_by_another_daemon(config: Config) -> None:
    cfg = api_config(config)
    worker = Daemon(
        dataclasses.replace(cfg, daemon=dataclasses.replace(cfg.daemon, roles=("worker",)))
    )
    async with running_api(cfg) as api, trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        async with feed(api, "type=noop") as ws:
            await recv(ws)
            job = await api.enqueue({"type": "noop", "data": {}})
            kinds: list[str] = []
            while not kinds or kinds[-1] != "job.completed":
                ev = await recv(ws)
                assert ev["job_id"] == job["job_id"]
                kinds.append(ev["type"])
                if ev["type"] == "job.started":
                    assert ev["data"]["worker"] == worker.daemon_id
        assert kinds == ["job.enqueued", "job.started", "job.completed"]
        worker.request_stop()


async def test_graceful_stop_closes_with_1001(config: Config) -> None:
    cfg = api_config(config)
    daemon = Daemon(
        dataclasses.replace(cfg, daemon=dataclasses.replace(cfg.daemon, roles=("api",)))
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        assert daemon.http is not None
        url = daemon.http.urls[0].replace("http://", "ws://") + FEED
        async with connect(url, token()) as ws:
            await recv(ws)
            daemon.request_stop()
            assert await closed_with(ws) == (1001, "server shutting down")


async def gauge_is(api: Api, n: int) -> None:
    with trio.fail_after(WAIT):
        while True:
            text = (await api.get("/metrics")).text
            if f"fleetd_websocket_subscribers {float(n)}" in text:
                return
            await trio.sleep(0.02)


async def test_subscribers_gauge(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        await gauge_is(api, 0)
        async with feed(api) as a, feed(api) as b:
            await recv(a)
            await recv(b)
            await gauge_is(api, 2)
        await gauge_is(api, 0)


def test_ticket_key_is_namespaced() -> None:
    assert Keys("n").ws_ticket("abc") == "fleetd:{n}:ws:ticket:abc"


# -- batch frames ---------------------------------------------------------------------


def xadd_many(api: Api, n: int, **fields: Any) -> list[str]:
    """`n` events appended in one MULTI/EXEC: the hub reads them in one go."""
    row = {"type": "job.completed", "job_id": "job_X", "job_type": "noop", "company_id": "",
           "status": "completed", "ts": int(time.time() * 1000), "data": "{}"}  # fmt: skip
    row.update({k: str(v) for k, v in fields.items()})
    stream = api.daemon.engine.keys.events

    def append(c: Any) -> list[str]:
        pipe = c.pipeline()
        for i in range(n):
            pipe.xadd(stream, {**row, "data": json.dumps({"n": i})})
        return [str(i) for i in pipe.execute()]

    return list(api.daemon.engine.link.run_sync(append))


async def recv_any(ws: WebSocketConnection) -> Any:
    with trio.fail_after(WAIT):
        return json.loads(await ws.get_message())


async def frames_until(ws: WebSocketConnection, last: str) -> tuple[list[str], list[Any]]:
    """Frames until the one holding event `last`: (event ids in order, the frames)."""
    ids: list[str] = []
    frames: list[Any] = []
    while last not in ids:
        frame = await recv_any(ws)
        frames.append(frame)
        ids += [ev["id"] for ev in frame] if isinstance(frame, list) else [frame["id"]]
    return ids, frames


async def test_batch_frames_carry_a_burst_in_order(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    # A burst of 2,000 at once is 2,000 events waiting: more than the default buffer.
    cfg = cfg_with(redis_url, namespace, tmp_path, buffer=5000)
    async with running_api(cfg) as api, feed(api, "batch=1") as ws:
        first = await recv(ws)
        assert first["type"] == "subscribed" and first["batch"] is True
        one = xadd(api)
        ids, frames = await frames_until(ws, one)
        assert ids == [one] and isinstance(frames[0], list)
        assert set(frames[0][0]) == {"id", "type", "job_id", "job_type", "company_id",
                                     "status", "ts", "data"}  # fmt: skip
        burst = xadd_many(api, 2000)  # two XREADs of [events] read_count (1,000)
        ids, frames = await frames_until(ws, burst[-1])
        assert ids == burst
        assert all(isinstance(f, list) and 1 <= len(f) <= 500 for f in frames)
        assert len(frames) < len(burst)  # one read of 1,000 is at least two frames of 500
        assert [ev["data"]["n"] for f in frames for ev in f] == list(range(2000))


async def test_batch_mode_is_validated_and_switchable(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        bearer = {"Authorization": f"Bearer {token()}"}
        r = await handshake(api, f"{FEED}?batch=maybe", bearer)
        assert r.status_code == 422 and error_of(r)["details"]["fields"][0]["field"] == "batch"
        async with feed(api, "batch=0") as ws:
            assert "batch" not in await recv(ws)
            plain = xadd(api)
            assert (await recv(ws))["id"] == plain
            await ws.send_message(json.dumps({"action": "subscribe", "batch": "maybe"}))
            err = await recv(ws)
            assert err["type"] == "error" and err["error"]["code"] == "validation_failed"
            assert err["error"]["details"]["fields"][0]["field"] == "batch"
            await ws.send_message(json.dumps({"action": "subscribe", "batch": True}))
            assert (await recv(ws))["batch"] is True
            batched = xadd(api)
            ids, frames = await frames_until(ws, batched)
            assert ids == [batched] and frames == [[frames[0][0]]]


async def test_batch_resume_has_no_gap_and_no_duplicate(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        start = xadd(api)
        backlog = xadd_many(api, 1200)  # more than one replay chunk
        live: list[str] = []

        async def produce() -> None:
            for _ in range(20):
                live.extend(xadd_many(api, 10))
                await trio.lowlevel.checkpoint()

        async with (
            trio.open_nursery() as nursery,
            feed(api, f"last_event_id={start}&batch=1") as ws,
        ):
            assert (await recv(ws))["type"] == "subscribed"
            nursery.start_soon(produce)
            ids: list[str] = []
            while len(ids) < 1400:
                frame = await recv_any(ws)
                assert isinstance(frame, list)
                ids += [ev["id"] for ev in frame]
        assert ids == backlog + live


async def test_batch_slow_consumer_is_closed_and_others_are_not(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    async with running_api(cfg_with(redis_url, namespace, tmp_path, buffer=10)) as api:
        async with feed(api, "batch=1") as slow, feed(api, "batch=1") as fast:
            await recv(slow)
            await recv(fast)
            big = json.dumps({"pad": "x" * 20_000})
            ids = []
            for _ in range(2000):  # ~40 MB, one at a time (see the single-frame test)
                ids.append(xadd(api, data=big))
                got, _ = await frames_until(fast, ids[-1])
                assert got == [ids[-1]]
            received: list[str] = []
            with trio.fail_after(WAIT):
                try:
                    while True:
                        received += [ev["id"] for ev in json.loads(await slow.get_message())]
                except ConnectionClosed as exc:
                    assert exc.reason is not None
                    code, reason = exc.reason.code, exc.reason.reason
        assert code == 1013
        assert 0 < len(received) < len(ids) and received == ids[: len(received)]
        assert reason == f"subscriber fell behind; resume with last_event_id={received[-1]}"


async def test_shared_filters_do_not_leak_across_subscribers(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        async with (
            feed(api, "type=noop&batch=1") as noop_a,
            feed(api, "type=noop") as noop_b,  # same filter, single frames
            feed(api, "type=noop&batch=1", tok=token("acme")) as acme,
            feed(api, "status=failed&batch=1") as failed,
        ):
            for ws in (noop_a, noop_b, acme, failed):
                await recv(ws)
            made = [
                xadd(api, company_id="globex"),
                xadd(api, company_id="acme"),
                xadd(api, company_id="acme", job_type="email", status="failed"),
                xadd(api, company_id="globex", status="failed"),
            ]
            made += xadd_many(api, 3, company_id="acme")
            made += xadd_many(api, 3, company_id="globex", status="failed")
            last = xadd(api, company_id="acme", status="failed")  # everyone's
            got = {}
            for name, ws in (("a", noop_a), ("b", noop_b), ("acme", acme), ("f", failed)):
                got[name] = (await frames_until(ws, last))[0]
        m = made
        assert got["a"] == got["b"] == [m[0], m[1], m[3], *m[4:10], last]
        assert got["acme"] == [m[1], *m[4:7], last]
        assert got["f"] == [m[2], m[3], *m[7:10], last]


async def upgrade_answer(api: Api, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    """Status and headers of the server's answer to a WebSocket upgrade (raw socket)."""
    host, _, port = api.url.removeprefix("http://").rstrip("/").rpartition(":")
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {FEED} HTTP/1.1", f"Host: {host}:{port}", "Connection: Upgrade",
             "Upgrade: websocket", "Sec-WebSocket-Version: 13", f"Sec-WebSocket-Key: {key}",
             *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        with trio.fail_after(WAIT):
            while b"\r\n\r\n" not in answer:
                chunk = await stream.receive_some()
                assert chunk, answer
                answer += chunk
    head = answer.split(b"\r\n\r\n")[0].decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), {k.lower(): v for k, v in fields.items()}


async def test_compression_only_when_configured(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    offer = {"Authorization": f"Bearer {token()}", "Sec-WebSocket-Extensions": "permessage-deflate"}
    for compression in (False, True):
        cfg = cfg_with(redis_url, namespace, tmp_path, compression=compression)
        async with running_api(cfg) as api:
            status, headers = await upgrade_answer(api, offer)
            assert status == 101, headers
            accepted = headers.get("sec-websocket-extensions", "")
            assert accepted.startswith("permessage-deflate") is compression, headers
