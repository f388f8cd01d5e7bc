"""Authentication and company isolation of the admin API, against a real daemon.

The battery of the issue: no token, malformed, `alg: none`, HS256 signed with the RSA
public key, expired, nbf in the future, wrong aud or iss, a non-admin role, another
company's job (404), path tricks — each refused with the right status. Also: default
deny (every route has an explicit auth decision), and `fleetd token`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import trio
import trio.lowlevel
from api_client import PREFIX, SECRET, Api, api_config, auth, running_api, token
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from quart import websocket
from quart.testing import WebsocketResponseError

from fleetd.api.app import create_app
from fleetd.api.context import auth_decision
from fleetd.api.server import build_state
from fleetd.cli.commands import main
from fleetd.config import Config
from fleetd.engine import Engine

# Every route and its auth decision; a new route must be added here on purpose.
EXPECTED_DECISIONS = {
    "/healthz": "public",
    "/readyz": "public",
    "/api/v1/openapi.json": "public",
    "/metrics": "metrics",
    # The dashboard's static files (fleetd.api.web): the data comes from the API.
    "/admin": "public",
    "/admin/": "public",
    "/admin/<asset>": "public",
}
# WebSocket routes, by path: the events feed takes a bearer token or a single-use ticket.
EXPECTED_WS_DECISIONS = {"/api/v1/admin/jobs/events": "ticket"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


NONE_HEADER = b64(b'{"alg":"none","typ":"JWT"}')


def forge(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    """A token signed by hand with HMAC-SHA256 over `key` (PyJWT refuses a PEM key)."""
    signing = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    sig = hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64(sig)}"


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "mallory", "role": "admin", "iat": now, "exp": now + 300, **extra}


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def status_of(api: Api, headers: dict[str, str], path: str = f"{PREFIX}/stats") -> int:
    return (await api.get(path, headers=headers)).status_code


async def test_token_battery_hs256(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        assert await status_of(api, auth()) == 200
        r = await api.get(f"{PREFIX}/stats", headers={})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
        now = int(time.time())
        refused = {
            "malformed": {"Authorization": "Bearer not.a.token"},
            "garbage": {"Authorization": "Bearer %%%"},
            "basic scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
            "empty bearer": {"Authorization": "Bearer"},
            "alg none": bearer(jwt.encode(claims(), "", algorithm="none")),
            "alg none by hand": bearer(
                NONE_HEADER + "." + b64(json.dumps(claims()).encode()) + "."
            ),
            "wrong secret": auth(secret="another-secret-" + "y" * 60),
            "HS512 not pinned": auth(algorithm="HS512"),
            "expired": auth(exp=now - 120),
            "no exp": bearer(jwt.encode({"sub": "x", "role": "admin"}, SECRET, "HS256")),
            "nbf in the future": auth(nbf=now + 600),
            "iat in the future": auth(iat=now + 600),
            "tampered": {"Authorization": f"Bearer {token()[:-3]}abc"},
        }
        for what, headers in refused.items():
            r = await api.get(f"{PREFIX}/stats", headers=headers)
            assert r.status_code == 401, what
            assert r.json()["error"]["code"] == "unauthorized", what
        # Within the leeway (30 s) an expired token still passes; clocks drift.
        assert await status_of(api, auth(exp=now - 5)) == 200
        # A valid token without the admin role is refused with 403.
        assert await status_of(api, auth(role="driver")) == 403
        assert await status_of(api, auth(role=None)) == 403
        assert await status_of(api, auth(role=None, roles=["viewer", "admin"])) == 200


async def test_audience_and_issuer_when_configured(config: Config) -> None:
    cfg = api_config(config)
    cfg = dataclasses.replace(
        cfg, auth=dataclasses.replace(cfg.auth, audience="fleetd", issuer="https://auth.test/")
    )
    async with running_api(cfg) as api:
        good = {"aud": "fleetd", "iss": "https://auth.test/"}
        assert await status_of(api, auth(**good)) == 200
        for bad in (
            {"aud": "other", "iss": "https://auth.test/"},
            {"aud": "fleetd", "iss": "https://evil.test/"},
            {"iss": "https://auth.test/"},
            {"aud": "fleetd"},
        ):
            assert await status_of(api, auth(**bad)) == 401, bad


async def test_rs256_and_es256_with_public_keys_and_algorithm_confusion(
    config: Config, tmp_path: Path
) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "rsa.pem").write_bytes(public_pem)
    cfg = api_config(config)
    cfg = dataclasses.replace(
        cfg,
        auth=dataclasses.replace(
            cfg.auth, algorithms=("HS256", "RS256"), public_key_file=str(tmp_path / "rsa.pem")
        ),
    )
    async with running_api(cfg) as api:
        assert await status_of(api, bearer(jwt.encode(claims(), rsa_key, "RS256"))) == 200
        assert await status_of(api, auth()) == 200
        # The classic confusion: HS256 "signed" with the RSA public key as the secret.
        confused = forge({"alg": "HS256", "typ": "JWT"}, claims(), public_pem)
        assert await status_of(api, bearer(confused)) == 401
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert await status_of(api, bearer(jwt.encode(claims(), other, "RS256"))) == 401

    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(
        ec_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    cfg = dataclasses.replace(
        cfg,
        auth=dataclasses.replace(
            cfg.auth, algorithms=("ES256",), public_key_file=str(tmp_path / "ec.pem")
        ),
    )
    async with running_api(cfg) as api:
        assert await status_of(api, bearer(jwt.encode(claims(), ec_key, "ES256"))) == 200
        assert await status_of(api, auth()) == 401  # HS256 is not pinned any more
        assert await status_of(api, bearer(forge({"alg": "HS256"}, claims(), public_pem))) == 401


async def test_path_tricks_never_reach_a_view(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        tricks = [
            "//api/v1/admin/jobs/stats",
            "/api/v1/admin/jobs//stats",
            "/api/v1/admin/jobs/stats/",
            "/API/v1/admin/jobs/stats",
            "/api/v1/admin/Jobs/stats",
            "/api/v1/admin/jobs/STATS",
            "/api/v1/admin/jobs/stats;x",
            "/api/v1/admin/jobs/%2Fstats",
        ]
        for path in tricks:
            # Anonymous: refused (401 where the path looks like a job id, else 404);
            # with a token: 404, never the stats.
            r = await api.get(path, headers={})
            assert r.status_code in (401, 404), (path, r.text)
            for headers in (auth(), auth("acme")):
                r = await api.get(path, headers=headers)
                assert r.status_code == 404, (path, headers, r.text)
                assert r.json()["error"]["code"] == "not_found"
        r = await api.client.request("PATCH", f"{PREFIX}/stats", headers=auth())
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
        assert "GET" in r.headers["allow"]


async def test_company_bound_admin_sees_only_its_company(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        acme, globex = auth("acme"), auth("globex")
        mine = await api.enqueue({"type": "noop"}, headers=acme)
        theirs = await api.enqueue({"type": "noop"}, headers=globex)
        job = (await api.get(f"{PREFIX}/{mine['job_id']}", headers=acme)).json()["job"]
        assert job["company_id"] == "acme"  # stamped from the token
        other = f"{PREFIX}/{theirs['job_id']}"
        for r in (
            await api.get(other, headers=acme),
            await api.delete(other, headers=acme),
            await api.post(f"{other}/reset", headers=acme),
            await api.get(f"{other}/artifact", headers=acme),
        ):
            assert r.status_code == 404 and r.json()["error"]["message"].startswith("no job")
        listed = (await api.get(f"{PREFIX}/status/pending", headers=acme)).json()["jobs"]
        assert [j["id"] for j in listed] == [mine["job_id"]]
        # A platform admin (no company_id) sees both; their enqueue may name a company.
        everyone = (await api.get(f"{PREFIX}/status/pending", headers=auth())).json()["jobs"]
        assert len(everyone) == 2
        r = await api.post(
            f"{PREFIX}/enqueue", json={"type": "noop", "company_id": "globex"}, headers=acme
        )
        assert r.status_code == 403
        assert (await api.get(f"{PREFIX}/stats", headers=acme)).status_code == 403
        r = await api.post(f"{PREFIX}/cleanup", params={"older_than": "1d"}, headers=acme)
        assert r.status_code == 403
        # Idempotency keys are per company: the same key makes one job per company.
        a = await api.enqueue({"type": "noop"}, headers={**acme, "Idempotency-Key": "k"})
        g = await api.enqueue({"type": "noop"}, headers={**globex, "Idempotency-Key": "k"})
        assert a["job_id"] != g["job_id"] and "duplicate" not in g


# company_id claims that name no company: each is refused (401), never read as "no
# company" (which would make the bearer a platform admin: fail open).
BAD_COMPANY_CLAIMS: dict[str, Any] = {
    "empty": "",
    "null": None,
    "blank": "   ",
    "tab": "\t",
    "number": 42,
    "zero": 0,
    "float": 1.5,
    "boolean": True,
    "list": ["acme"],
    "empty list": [],
    "object": {"id": "acme"},
    "over-long": "a" * 129,
    "newline": "acme\nglobex",
    "NUL": "acme\x00",
    "escape": "\x1b[31macme",
    "lone surrogate": "acme\ud800",
    "surrounding whitespace": " acme ",
}


async def test_company_claim_absent_is_platform_present_must_name_a_company(
    config: Config,
) -> None:
    async with running_api(api_config(config)) as api:
        pending = f"{PREFIX}/status/pending"
        theirs = await api.enqueue({"type": "noop", "company_id": "globex"})
        for what, value in BAD_COMPANY_CLAIMS.items():
            # json.dumps keeps a lone surrogate as the escape "\ud800", as a real
            # identity provider's token would carry it.
            tok = jwt.encode(claims(company_id=value), SECRET, "HS256")
            for path in (f"{PREFIX}/stats", pending, f"{PREFIX}/{theirs['job_id']}"):
                r = await api.get(path, headers=bearer(tok))
                assert r.status_code == 401, (what, path, r.text)
                error = r.json()["error"]
                assert error["code"] == "unauthorized", what
                assert "company_id" in error["message"], (what, error)
                assert r.headers["www-authenticate"].startswith("Bearer"), what
        # Absent: a platform admin, who sees every company.
        platform = bearer(jwt.encode(claims(), SECRET, "HS256"))
        assert await status_of(api, platform) == 200
        listed = (await api.get(pending, headers=platform)).json()["jobs"]
        assert [j["id"] for j in listed] == [theirs["job_id"]]
        # Present and valid (long, non-ASCII, inner spaces): that company only.
        for company in ("acme", "société générale", "c" * 128):
            bound = bearer(jwt.encode(claims(company_id=company), SECRET, "HS256"))
            assert await status_of(api, bound) == 403, company
            r = await api.get(pending, headers=bound)
            assert r.status_code == 200 and r.json()["jobs"] == [], company


def test_fleetd_token_refuses_a_company_that_names_none(config: Config) -> None:
    from fleetd.api.auth import mint_token

    cfg = api_config(config)
    for value in ("", "  ", "a" * 129, "x\ny"):
        with pytest.raises(ValueError, match="company_id"):
            mint_token(cfg, company_id=value)
    tok, _, _ = mint_token(cfg, company_id="acme")
    assert jwt.decode(tok, SECRET, algorithms=["HS256"])["company_id"] == "acme"


async def test_every_route_has_an_auth_decision(config: Config) -> None:
    async with running_api(api_config(config)) as api:
        assert api.daemon.http is not None
        app = api.daemon.http.app
        rules = list(app.url_map.iter_rules())
        assert len(rules) >= 20
        for rule in rules:
            decision = auth_decision(app.view_functions[rule.endpoint])
            if rule.websocket:
                assert decision == EXPECTED_WS_DECISIONS.get(rule.rule, "admin"), rule.rule
                # An anonymous handshake is refused before anything is accepted.
                key = base64.b64encode(os.urandom(16)).decode()
                upgrade = {"Connection": "Upgrade", "Upgrade": "websocket",
                           "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": key}  # fmt: skip
                r = await api.client.get(rule.rule, headers=upgrade)
                assert r.status_code == 401, rule.rule
                continue
            assert decision in ("public", "admin", "metrics"), rule.rule
            expected = EXPECTED_DECISIONS.get(rule.rule, "admin")
            assert decision == expected, rule.rule
            # And for real: every admin route refuses an anonymous caller.
            if decision == "admin":
                path = rule.rule.replace("<status>", "pending").replace("<job_id>", "job_X")
                path = path.replace("<schedule_id>", "sch_X")
                for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                    r = await api.client.request(method, path)
                    assert r.status_code == 401, (method, path)


async def test_a_route_without_a_decision_is_refused(config: Config) -> None:
    engine = Engine.build(api_config(config), daemon=True)
    try:
        st = build_state(engine, lambda: True, link=engine.link)
        app = create_app(st)

        @app.get("/undecided")
        async def undecided() -> str:
            return "leaked"

        @app.websocket("/undecided-ws")
        async def undecided_ws() -> None:
            await websocket.send("leaked")

        client = app.test_client()
        r = await client.get("/undecided", headers=auth())
        assert r.status_code == 403
        assert (await r.get_json())["error"]["code"] == "forbidden"
        refused = pytest.RaisesExc(
            WebsocketResponseError, check=lambda e: e.response.status_code == 403
        )
        with pytest.RaisesGroup(refused, flatten_subgroups=True, allow_unwrapped=True):
            async with client.websocket("/undecided-ws", headers=auth()) as ws:
                await ws.receive()
    finally:
        engine.close()


def test_fleetd_token_generates_a_secret_once_and_mints_tokens(
    config: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import fleetd_env

    for key, value in fleetd_env(config).items():
        monkeypatch.setenv(key, value)
    assert main(["token", "--company", "acme", "--ttl", "2h", "--subject", "ops"]) == 0
    out, err = capsys.readouterr()
    secret_file = config.state_dir / "jwt-secret"
    assert "generated" in err and str(secret_file) in err
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    tok = out.strip().splitlines()[-1]
    payload = jwt.decode(tok, secret_file.read_text().strip(), algorithms=["HS256"])
    assert payload["company_id"] == "acme" and payload["sub"] == "ops"
    assert payload["role"] == "admin" and payload["exp"] - payload["iat"] == 7200
    assert main(["token"]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # the secret exists now: nothing to say
    assert "company_id" not in jwt.decode(
        out.strip(), secret_file.read_text().strip(), algorithms=["HS256"]
    )
    assert main(["token", "--ttl", "soon"]) == 2
    assert main(["token", "--company", ""]) == 2  # not a platform token
    assert "company_id" in capsys.readouterr().err
    monkeypatch.setenv("FLEETD_AUTH_ALGORITHMS", "RS256")
    assert main(["token"]) == 2
    assert "identity provider" in capsys.readouterr().err


async def test_the_daemon_accepts_tokens_of_fleetd_token(config: Config) -> None:
    cfg = dataclasses.replace(config, auth=dataclasses.replace(config.auth, secret=""))
    from fleetd.api.auth import mint_token

    async with running_api(cfg) as api:
        assert (config.state_dir / "jwt-secret").exists()  # generated by the daemon
        tok, _, generated = mint_token(cfg, company_id=None)
        assert not generated
        assert await status_of(api, bearer(tok)) == 200
        await trio.lowlevel.checkpoint()
