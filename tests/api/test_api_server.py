"""The http service in the daemon: listening (TCP, unix socket, TLS), readiness, Redis
outages answered with 503 in bounded time, a graceful stop, start-up errors, and the
probe shortcut (fleetd.api.probes.ProbeShortcut) answering what the route answers."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import signal
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from api_client import PREFIX, SECRET, Sleeper, api_config, auth, running_api
from conftest import make_config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis_server import RedisServerFactory

from fleetd.config import Config
from fleetd.engine import build_registry
from fleetd.jobs.context import JobContext
from fleetd.jobs.handlers import JobHandler
from fleetd.runtime.daemon import Daemon, DaemonError

# The bound: Redis unreachable answers 503 within 2 s, never hangs.
OUTAGE_BOUND = 2.0


async def start_error(cfg: Config) -> str:
    """The DaemonError a daemon with `cfg` stops with at start-up (as `fleetd run` shows)."""
    with trio.fail_after(10), pytest.raises(DaemonError) as info:
        await Daemon(cfg).run()
    return str(info.value)


async def test_http_json_records_the_urls_and_probes_answer(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        recorded = json.loads((config.state_dir / "http.json").read_text())
        assert recorded == {"urls": [api.url], "pid": os.getpid()}
        assert api.url.startswith("http://127.0.0.1:")
        r = await api.client.get("/healthz")
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        r = await api.client.get("/readyz")
        assert r.json() == {"status": "ready", "checks": {"services": "started", "redis": "ok"}}
        assert "server" not in r.headers
    assert not (config.state_dir / "http.json").exists()


async def raw_exchange(url: str, request: bytes, *, late: bool = False) -> bytes:
    """`request` on a new connection (sent a moment after connecting if `late`: the
    connection is accepted before its bytes come, and hypercorn answers), and
    everything the server sends until it closes or a whole answer has come."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        if late:
            await trio.sleep(0.1)
        await stream.send_all(request)
        data = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                data += chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length: *(\d+)", head)
                if sep and length and len(body) >= int(length[1]) and b"close" not in head:
                    break
    return data


def without_date(answer: bytes) -> bytes:
    return re.sub(rb"(?m)^date: [^\r]*\r\n", b"", answer)


async def test_the_probe_shortcut_answers_what_the_route_answers(config: Config) -> None:
    async with running_api(api_config(config, metrics_auth=False)) as api:
        for connection in (b"", b"Connection: close\r\n"):
            head = b"Host: fleetd\r\n" + connection + b"\r\n"
            # The query keeps the request off the shortcut: quart answers it.
            by_app = await raw_exchange(api.url, b"GET /healthz?via=app HTTP/1.1\r\n" + head)
            for late in (False, True):  # the shortcut's answer, then the app's again
                answer = await raw_exchange(api.url, b"GET /healthz HTTP/1.1\r\n" + head, late=late)
                assert re.search(rb"(?m)^date: \w{3}, \d\d \w{3} \d{4} ", answer)
                assert without_date(answer) == without_date(by_app), connection
        text = (await api.client.get("/metrics")).text
        assert 'fleetd_http_requests_total{method="GET",route="/healthz",status="200"} 6.0' in text


async def test_unix_socket(config: Config, tmp_path: Path) -> None:
    sock = tmp_path / "api.sock"
    sock.write_bytes(b"")  # not a socket: refused at start, with the key named
    cfg = api_config(config, listen=(f"unix:{sock}",))
    assert re.search("not a socket", await start_error(cfg))
    sock.unlink()
    async with running_api(cfg) as api:
        assert api.url.startswith("http://unix:") or sock.exists()
        transport = httpx.AsyncHTTPTransport(uds=str(sock))
        async with httpx.AsyncClient(transport=transport, base_url="http://fleetd") as client:
            r = await client.get(f"{PREFIX}/stats", headers=auth())
            assert r.status_code == 200 and "stats" in r.json()


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls(config: Config, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    assert re.search("set together", await start_error(api_config(config, tls_cert=str(cert))))
    async with running_api(api_config(config, tls_cert=str(cert), tls_key=str(key))) as api:
        assert api.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(base_url=api.url, verify=context) as client:
            r = await client.get(f"{PREFIX}/stats", headers=auth())
            assert r.status_code == 200
        async with httpx.AsyncClient(base_url=api.url, verify=True) as untrusting:
            with pytest.raises(httpx.ConnectError):
                await untrusting.get("/healthz")


async def test_an_address_in_use_stops_start_up_with_its_name(config: Config) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = api_config(config, listen=(f"127.0.0.1:{port}",))
        assert re.search(f"http.listen.*127.0.0.1:{port}", await start_error(cfg))


async def test_redis_outage_answers_503_quickly_and_readyz_follows(
    own_redis: RedisServerFactory, namespace: str, tmp_path: Path
) -> None:
    server = own_redis()
    # The enqueue spool off: an enqueue answers 503 too (tests/spool: 202 spooled).
    state = tmp_path / "state"
    cfg = api_config(make_config(server.url, namespace, state, spool={"enabled": False}))
    async with running_api(cfg) as api:
        assert (await api.client.get("/readyz")).status_code == 200
        proc: Any = server._proc  # the test's own server: paused, then killed
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            for call in (
                api.get(f"{PREFIX}/stats"),
                api.post(f"{PREFIX}/enqueue", json={"type": "noop"}),
                api.client.get("/readyz"),
            ):
                started = time.monotonic()
                r = await call
                elapsed = time.monotonic() - started
                assert r.status_code == 503, r.text
                assert elapsed < OUTAGE_BOUND, elapsed
                assert r.headers["retry-after"] == "2"
                assert r.json()["error"]["code"] in ("redis_unavailable", "not_ready")
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        server.kill()  # refused connections now
        started = time.monotonic()
        r = await api.get(f"{PREFIX}/status/pending")
        assert r.status_code == 503 and time.monotonic() - started < OUTAGE_BOUND
        readyz = await api.client.get("/readyz")
        assert readyz.status_code == 503
        # The public probe says what, not Redis's own words (its address, its refusals).
        assert readyz.json()["error"]["details"]["checks"]["redis"] == "unreachable"
        assert str(server.port) not in readyz.text and str(server.port) not in r.text
        assert (await api.client.get("/healthz")).status_code == 200
        server.start()  # same port: the API recovers by itself
        with trio.fail_after(10):
            while (await api.client.get("/readyz")).status_code != 200:
                await trio.sleep(0.1)
        assert (await api.get(f"{PREFIX}/stats")).status_code == 200


async def test_probes_answer_while_the_daemon_waits_for_redis(
    own_redis: RedisServerFactory, namespace: str, tmp_path: Path
) -> None:
    server = own_redis()
    server.stop()
    cfg = api_config(make_config(server.url, namespace, tmp_path / "state"))
    cfg = dataclasses.replace(cfg, daemon=dataclasses.replace(cfg.daemon, roles=("api",)))
    daemon = Daemon(cfg)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(daemon.run)
        with trio.fail_after(10):
            while daemon.http is None or not daemon.http.urls:
                await trio.sleep(0.02)
        async with httpx.AsyncClient(base_url=daemon.http.urls[0]) as client:
            assert (await client.get("/healthz")).status_code == 200
            r = await client.get("/readyz")
            assert r.status_code == 503
            assert r.json()["error"]["details"]["checks"]["services"].startswith("not running")
            server.start()
            with trio.fail_after(15):
                while (await client.get("/readyz")).status_code != 200:
                    await trio.sleep(0.1)
        daemon.request_stop()


class BigExport(JobHandler):
    job_type = "big_export"

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        await ctx.artifacts.write_bytes("big.bin", os.urandom(4 << 20))
        return {}


async def test_graceful_stop_finishes_a_download_in_flight(config: Config) -> None:
    registry = build_registry(config)
    registry.register(BigExport(), source="tests")
    cfg = api_config(config)
    async with running_api(cfg, roles=("api", "worker"), registry=registry) as api:
        job_id = (await api.enqueue({"type": "big_export"}))["job_id"]
        await api.wait_status(job_id, "completed")
        received = 0
        async with api.client.stream(
            "GET", f"{PREFIX}/{job_id}/artifact", headers=api.headers
        ) as r:
            assert r.status_code == 200
            async for chunk in r.aiter_bytes(64 * 1024):
                if received == 0:
                    api.daemon.request_stop()  # listeners close; this request goes on
                received += len(chunk)
                await trio.sleep(0.001)
        assert received == 4 << 20
        # New connections are refused once the listeners are closed (a connection the
        # kernel queued just before the close is dropped unanswered: refused too).
        with trio.fail_after(5):
            while True:
                try:
                    async with httpx.AsyncClient(base_url=api.url) as fresh:
                        await fresh.get("/healthz")
                except (httpx.ConnectError, httpx.RemoteProtocolError):
                    break
                await trio.sleep(0.05)


async def test_auth_config_errors_stop_start_up(config: Config, tmp_path: Path) -> None:
    cfg = dataclasses.replace(config, auth=dataclasses.replace(config.auth, algorithms=("RS256",)))
    assert re.search("public_key_file", await start_error(cfg))
    cfg = dataclasses.replace(
        config, auth=dataclasses.replace(config.auth, algorithms=("HS512",), secret=SECRET[:40])
    )
    assert re.search("at least 64 bytes", await start_error(cfg))


async def test_the_api_serves_while_jobs_drain_and_readyz_says_503(config: Config) -> None:
    registry = build_registry(config)
    registry.register(Sleeper(), source="tests")
    cfg = dataclasses.replace(
        config, worker=dataclasses.replace(config.worker, shutdown_timeout=1.0)
    )
    async with running_api(api_config(cfg), roles=("api", "worker"), registry=registry) as api:
        job_id = (await api.enqueue({"type": "sleeper"}))["job_id"]
        await api.wait_status(job_id, "processing")
        api.daemon.request_stop()
        r = await api.client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["error"]["details"]["checks"]["services"].startswith("not running")
        # Still answering: callers move to another daemon while this one drains.
        assert (await api.get(f"{PREFIX}/{job_id}")).status_code == 200
