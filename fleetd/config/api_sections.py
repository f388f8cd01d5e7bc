"""The config sections of the admin HTTP API: [http], [auth] and [events].

Owns the schema of the API's listeners and request limits, of token verification (JWT
algorithms, secret or public key, claims) and of the events WebSocket fan-out, each key
declared once with `setting()`; gathered into `Config` by fleetd.config.model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleetd.config.settings import MINUTE, SECOND, is_host_port, setting

__all__ = ["JWT_ALGORITHMS", "MIN_SECRET_LENGTH", "AuthConfig", "EventsConfig", "HttpConfig"]


def _check_http_listen(value: str) -> str | None:
    if value.startswith("unix:"):
        return None if len(value) > len("unix:") else "a unix socket needs a path (unix:/path)"
    if is_host_port(value):
        return None
    return f"must be 'host:port' (port 0 picks a free one) or 'unix:/path', got {value!r}"


KIB, MIB = 1024, 1024 * 1024
# Below one stream node (Redis' stream-node-max-entries, 100) an approximate MAXLEN
# trims nothing until the node fills, so a smaller company cap would not be one.
MIN_COMPANY_MAXLEN = 100


def _check_company_maxlen(value: int) -> str | None:
    if value == 0 or value >= MIN_COMPANY_MAXLEN:
        return None
    return f"must be 0 (no company streams) or at least {MIN_COMPANY_MAXLEN}"


@dataclass(frozen=True)
class HttpConfig:
    listen: tuple[str, ...] = setting(
        ("127.0.0.1:8080",),
        "addresses the admin API serves: host:port or unix:/path",
        min=1,
        unique=True,
        check=lambda items: next(filter(None, map(_check_http_listen, items)), None),
    )
    tls_cert: str = setting("", "PEM certificate (chain) file; '' = plain HTTP")
    tls_key: str = setting("", "PEM private key file of tls_cert")
    max_body_size: int = setting(256 * KIB, "largest request body in bytes", min=KIB, max=64 * MIB)
    max_json_depth: int = setting(32, "deepest nesting of a JSON request body", min=4, max=256)
    max_bulk_jobs: int = setting(1000, "most jobs in one bulk enqueue", min=1, max=100_000)
    redis_timeout: float = setting(
        1.5 * SECOND,
        "longest a request waits for Redis before answering 503",
        kind="duration",
        min=0.1,
        max=MINUTE,
    )
    shutdown_timeout: float = setting(
        5 * SECOND, "grace for requests in flight at stop", kind="duration", min=0, max=5 * MINUTE
    )
    metrics_auth: bool = setting(True, "GET /metrics needs an admin token")
    max_in_flight: int = setting(
        128, "requests served at once; more answer 503 overloaded", min=1, max=100_000
    )
    company_share: float = setting(
        0.5, "most of max_in_flight one company's tokens may hold; more answer 429 (1 = all)",
        kind="float", min=0.01, max=1.0,
    )  # fmt: skip
    audit_maxlen: int = setting(
        100_000, "approximate cap of the audit log", min=100, max=100_000_000
    )
    audit_company_maxlen: int = setting(
        10_000, "approximate cap of each company's own audit stream", min=100, max=100_000_000
    )
    audit_anonymous_maxlen: int = setting(
        10_000, "approximate cap of the audit stream of refused calls without a valid token",
        min=100, max=100_000_000,
    )  # fmt: skip
    allowed_origins: tuple[str, ...] = setting(
        (),
        "browser origins besides the API's own that may open the events WebSocket",
        unique=True,
        check=lambda items: next(filter(None, map(_check_origin, items)), None),
    )


def _check_origin(value: str) -> str | None:
    if value == "*" or re.fullmatch(r"https?://[^/\s]+", value):
        return None
    return f"must be '*' or an origin such as 'https://ops.example.com', got {value!r}"


@dataclass(frozen=True)
class EventsConfig:
    buffer: int = setting(
        1000, "events a subscriber may fall behind before it is closed (1013)", min=10,
        max=1_000_000,
    )  # fmt: skip
    ping_interval: float = setting(
        20 * SECOND, "WebSocket keepalive ping interval", kind="duration", min=0.1, max=10 * MINUTE
    )
    ticket_ttl: float = setting(
        30 * SECOND, "lifetime of a single-use WebSocket ticket", kind="duration", min=1,
        max=10 * MINUTE,
    )  # fmt: skip
    max_subscribers: int = setting(
        10_000, "most WebSocket subscribers of one daemon", min=1, max=1_000_000
    )
    company_share: float = setting(
        0.5, "most of max_subscribers one company's tokens may hold (1 = all)",
        kind="float", min=0.01, max=1.0,
    )  # fmt: skip
    read_count: int = setting(
        1000, "events read from Redis per XREAD of the fan-out loop", min=10, max=100_000
    )
    compression: bool = setting(
        False, "accept permessage-deflate on the events WebSocket (CPU per subscriber)"
    )
    # Twice `buffer`: a subscriber closed for falling `buffer` of its company's events
    # behind still finds them all when it resumes. ~300 B an entry: ~600 KB per company
    # whose feed is watched (a subscriber within the hour: fleetd/backend/lua/_lib.lua).
    company_maxlen: int = setting(
        2000, "approximate cap of each company's own replay stream (0 = none kept)",
        min=0, max=10_000_000, check=_check_company_maxlen,
    )  # fmt: skip


# RFC 7518 §3.2: an HMAC key at least as long as the hash; 32 characters cover HS256.
MIN_SECRET_LENGTH = 32
JWT_ALGORITHMS = (
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
)  # fmt: skip


def _check_secret(value: str) -> str | None:
    if value == "" or len(value) >= MIN_SECRET_LENGTH:
        return None
    return f"must be at least {MIN_SECRET_LENGTH} characters (or '' to generate one)"


@dataclass(frozen=True)
class AuthConfig:
    algorithms: tuple[str, ...] = setting(
        ("HS256",), "JWT algorithms accepted", choices=JWT_ALGORITHMS, min=1, unique=True
    )
    secret: str = setting(
        "",
        "HMAC secret of HS* tokens; '' = generated into <state_dir>/jwt-secret",
        secret=True,
        check=_check_secret,
    )
    public_key_file: str = setting("", "PEM public key that verifies RS*/ES* tokens")
    audience: str = setting("", "required `aud` claim; '' = not checked")
    issuer: str = setting("", "required `iss` claim; '' = not checked")
    leeway: float = setting(
        30 * SECOND, "clock skew allowed on exp, nbf, iat", kind="duration", min=0, max=5 * MINUTE
    )
