"""Early answers and connection limits of the admin API (fleetd.api.linger).

A request refused before its body was read (413 over `[http] max_body_size`, 401)
gets its JSON answer — never a reset — and its connection either stays usable (the
rest of the body arrived in time) or is closed gracefully with `Connection: close`;
an idle keep-alive connection is closed after hypercorn's keep-alive timeout.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import hypercorn.config
import pytest
import trio
from api_client import PREFIX, api_config, running_api, token

from fleetd.api import linger
from fleetd.config import Config

# Over the default 256 KiB limit and under linger.DRAIN_BYTES: drained, connection kept.
MEDIUM = 2 * 1024 * 1024
# Over DRAIN_BYTES: answered with Connection: close while the client is still sending.
LARGE = 24 * 1024 * 1024
CHUNK = 64 * 1024


def body_of(size: int) -> bytes:
    return b'{"type": "noop", "data": {"x": "' + b"a" * size + b'"}}'


def request_head(length: int, *, bearer: str | None) -> bytes:
    lines = [
        f"POST {PREFIX}/enqueue HTTP/1.1",
        "Host: localhost",
        "Content-Type: application/json",
        f"Content-Length: {length}",
    ]
    if bearer is not None:
        lines.append(f"Authorization: Bearer {bearer}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_answer(stream: trio.SocketStream) -> tuple[int, dict[str, str], Any, bytes]:
    """(status, headers, JSON body, bytes read after it) of one HTTP/1.1 answer."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(CHUNK)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = await stream.receive_some(CHUNK)
        assert chunk, "connection closed inside the answer"
        rest += chunk
    return int(status_line.split()[1]), headers, json.loads(rest[:length]), rest[length:]


async def read_to_eof(stream: trio.SocketStream) -> bytes:
    """What follows until the server closes; a reset fails the test."""
    extra = b""
    while chunk := await stream.receive_some(CHUNK):
        extra += chunk
    return extra


async def test_oversized_body_answered_and_connection_reused(config: Config) -> None:
    """httpx (one pooled connection) gets the 413 on the first try, and its next request
    on the same connection is answered (it used to hang: the connection was left
    half-closed, reading the refused body)."""
    async with running_api(api_config(config)) as api:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=api.url, timeout=10, limits=limits) as client:
            for headers in (api.headers, {}):
                r = await client.post(
                    f"{PREFIX}/enqueue",
                    content=body_of(MEDIUM),
                    headers={**headers, "Content-Type": "application/json"},
                )
                assert r.status_code == (413 if headers else 401), r.text
                code = r.json()["error"]["code"]
                assert code == ("payload_too_large" if headers else "unauthorized")
                with trio.fail_after(10):
                    r = await client.post(
                        f"{PREFIX}/enqueue", json={"type": "noop"}, headers=api.headers
                    )
                assert r.status_code == 201, r.text


async def test_oversized_body_while_still_sending(config: Config) -> None:
    """A raw client that writes a large body while it reads gets the whole 413 answer,
    `Connection: close`, then an orderly end of the connection (no reset)."""
    async with running_api(api_config(config)) as api:
        host, _, port = api.url.removeprefix("http://").rpartition(":")
        body = body_of(LARGE)
        with trio.fail_after(30):
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream, trio.open_nursery() as nursery:

                async def write() -> None:
                    try:
                        await stream.send_all(request_head(len(body), bearer=token()))
                        for at in range(0, len(body), CHUNK):
                            await stream.send_all(body[at : at + CHUNK])
                    except trio.BrokenResourceError:
                        pass  # the server closed after answering: expected

                nursery.start_soon(write)
                status, headers, answer, _ = await read_answer(stream)
                assert status == 413 and answer["error"]["code"] == "payload_too_large"
                assert headers["connection"] == "close"
                assert await read_to_eof(stream) == b""


async def test_slow_oversized_body_is_cut_off(config: Config, monkeypatch: Any) -> None:
    """A client trickling a body it never finishes gets the 413 and then the connection
    is closed: the server does not keep reading it."""
    monkeypatch.setattr(linger, "DRAIN_SECONDS", 0.1)
    monkeypatch.setattr(linger, "LINGER_SECONDS", 0.2)
    async with running_api(api_config(config)) as api:
        host, _, port = api.url.removeprefix("http://").rpartition(":")
        with trio.fail_after(30):
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream, trio.open_nursery() as nursery:

                async def trickle() -> None:
                    try:
                        await stream.send_all(request_head(LARGE, bearer=token()))
                        while True:
                            await stream.send_all(b"a" * 1024)
                            await trio.sleep(0.01)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass

                nursery.start_soon(trickle)
                status, headers, answer, _ = await read_answer(stream)
                assert status == 413 and headers["connection"] == "close"
                assert answer["error"]["code"] == "payload_too_large"
                await read_to_eof(stream)
                nursery.cancel_scope.cancel()


@pytest.mark.parametrize("requests", [0, 2])
async def test_idle_keep_alive_connection_is_closed(
    config: Config, monkeypatch: Any, requests: int
) -> None:
    """hypercorn's keep-alive timeout closes an idle connection, also after requests (it
    was never re-armed after the first one)."""
    monkeypatch.setattr(hypercorn.config.Config, "keep_alive_timeout", 0.3)
    async with running_api(api_config(config)) as api:
        host, _, port = api.url.removeprefix("http://").rpartition(":")
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                payload = b'{"type": "noop"}'
                for _ in range(requests):
                    await stream.send_all(request_head(len(payload), bearer=token()) + payload)
                    status, _, _, extra = await read_answer(stream)
                    assert status == 201 and extra == b""
                assert await read_to_eof(stream) == b""
