"""Helpers of the admin API tests: a real daemon in-process, an HTTP client, tokens.

Owns:
- ``running_api(cfg, ...)``: `Daemon.run` in a nursery (role api, optionally worker
  and scheduler), listening on a free loopback port, and an ``Api`` handle with an
  httpx client on that port; the daemon is stopped gracefully on exit;
- ``token(...)`` / ``auth(...)``: HS256 tokens signed with ``SECRET`` (the secret
  ``api_config`` configures), with any claims a test wants to break;
- ``api_config(cfg)``: the test config with that secret.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import trio

from fleetd.config import Config
from fleetd.jobs.context import JobContext
from fleetd.jobs.handlers import HandlerRegistry, JobHandler
from fleetd.runtime.daemon import Daemon

SECRET = "test-secret-" + "x" * 60
PREFIX = "/api/v1/admin/jobs"


class Sleeper(JobHandler):
    """Runs until cancelled (30 s): a job that stays processing."""

    job_type = "sleeper"

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        await trio.sleep(30)
        return {}


def api_config(cfg: Config, **http: Any) -> Config:
    """`cfg` with the test secret (and [http] changes, e.g. metrics_auth=False)."""
    return dataclasses.replace(
        cfg,
        auth=dataclasses.replace(cfg.auth, secret=SECRET),
        http=dataclasses.replace(cfg.http, **http),
    )


def token(
    company_id: str | None = None,
    *,
    subject: str = "tester",
    role: str | None = "admin",
    ttl: float = 300,
    secret: str = SECRET,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"sub": subject, "iat": now, "exp": now + int(ttl)}
    if role is not None:
        payload["role"] = role
    if company_id is not None:
        payload["company_id"] = company_id
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret, algorithm=algorithm)


def auth(company_id: str | None = None, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(company_id, **kwargs)}"}


@dataclass
class Api:
    daemon: Daemon
    client: httpx.AsyncClient
    headers: dict[str, str]

    @property
    def url(self) -> str:
        assert self.daemon.http is not None
        return self.daemon.http.urls[0]

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        kw.setdefault("headers", self.headers)
        return await self.client.get(path, **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        kw.setdefault("headers", self.headers)
        return await self.client.post(path, **kw)

    async def put(self, path: str, **kw: Any) -> httpx.Response:
        kw.setdefault("headers", self.headers)
        return await self.client.put(path, **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        kw.setdefault("headers", self.headers)
        return await self.client.delete(path, **kw)

    async def enqueue(self, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        r = await self.post(f"{PREFIX}/enqueue", json=body, **kw)
        assert r.status_code in (200, 201), r.text
        result: dict[str, Any] = r.json()
        return result

    async def wait_status(self, job_id: str, status: str, limit: float = 10) -> dict[str, Any]:
        with trio.fail_after(limit):
            while True:
                r = await self.get(f"{PREFIX}/{job_id}")
                body: dict[str, Any] = r.json()
                if body.get("status") == status:
                    return body
                await trio.sleep(0.02)


@asynccontextmanager
async def running_api(
    cfg: Config,
    *,
    roles: Sequence[str] = ("api",),
    registry: HandlerRegistry | None = None,
    company_id: str | None = None,
) -> AsyncIterator[Api]:
    cfg = dataclasses.replace(cfg, daemon=dataclasses.replace(cfg.daemon, roles=tuple(roles)))
    daemon = Daemon(cfg, registry=registry)
    # A test's failure inside stops the daemon as usual, then is raised: leaving the
    # nursery with it would cancel a worker daemon, which then hung waiting on its jobs.
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        assert daemon.http is not None
        base = daemon.http.urls[0]
        try:
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                yield Api(daemon, client, auth(company_id))
        except Exception as exc:
            failure = exc
        daemon.request_stop()
    if failure is not None:
        raise failure
