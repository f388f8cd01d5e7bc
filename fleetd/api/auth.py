"""Bearer-JWT authentication of the admin API, and minting tokens for `fleetd token`.

Owns:
- the keys: an HMAC secret for HS* (`[auth] secret`, or one generated on first use into
  `<state_dir>/jwt-secret`, mode 0600, shared by the daemon and the CLI on one host) and
  a PEM public key for RS*/ES* (`[auth] public_key_file`);
- `TokenVerifier`: checks a token with the algorithms pinned in `[auth] algorithms`
  only (an `alg: none` token or an HS256 token signed with the RSA public key never
  verifies: each algorithm family has its own key), `exp` required, `nbf` and `iat`
  honoured with `[auth] leeway`, `aud`/`iss` when configured, and the `admin` role
  (`role: "admin"` or `"admin"` in `roles`). A `company_id` claim binds the caller to
  that company; no claim at all makes a platform admin, and a claim that names no
  company ("", null, a number, a list, blank, over-long, control characters) is
  refused with 401 — never read as "no company" (`check_company`);
- `Principal`: who is calling, as the views and the audit log see them;
- `mint_token`: what `fleetd token` prints (HS* only: RS*/ES* tokens come from your
  identity provider).

Failures raise ApiError 401 (bad or missing token, with WWW-Authenticate) or 403 (a
valid token without the admin role).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from fleetd.api.errors import ApiError
from fleetd.config import Config

__all__ = [
    "SECRET_FILE",
    "Principal",
    "TokenVerifier",
    "authorization",
    "check_company",
    "hmac_secret",
    "mint_token",
    "unauthorized",
]

log = logging.getLogger("fleetd.api.auth")

SECRET_FILE = "jwt-secret"
# 48 random bytes, URL-safe base64: 64 characters, above every HS* minimum (HS512: 64 B).
SECRET_BYTES = 48
ADMIN_ROLE = "admin"
# Claims longer than this are refused: they end up in logs, audit entries and keys.
MAX_CLAIM_LENGTH = 128
# Verified tokens remembered until they expire: a service sends one token with many
# requests, and a verification costs ~160 µs here. Bounded; cleared when full.
CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: token subject and, for a company-bound admin, its company."""

    subject: str
    company_id: str | None

    @property
    def platform(self) -> bool:
        return self.company_id is None


def _secret_path(cfg: Config) -> Path:
    return cfg.state_dir / SECRET_FILE


def hmac_secret(cfg: Config, *, create: bool = True) -> tuple[str, Path | None, bool]:
    """(secret, file it came from or None, whether it was generated just now).

    `[auth] secret` wins; else the state directory's file, written aside and linked into
    place (link fails if the name exists) so that daemons and a CLI starting together
    agree on one secret and none reads a half-written file.
    """
    if cfg.auth.secret:
        return cfg.auth.secret, None, False
    path = _secret_path(cfg)
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip(), path, False
    if not create:
        raise FileNotFoundError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process won: use its secret
            return path.read_text().strip(), path, False
    finally:
        tmp.unlink(missing_ok=True)
    return secret, path, True


def unauthorized(message: str, error: str = "invalid_token") -> ApiError:
    """401 with the WWW-Authenticate challenge of RFC 6750 (tokens and tickets alike)."""
    return ApiError(
        401,
        "unauthorized",
        message,
        headers={"WWW-Authenticate": f'Bearer realm="fleetd", error="{error}"'},
    )


def authorization(headers: Any) -> str | None:
    """The request's one Authorization header (None if absent). Two are refused (401):
    which token speaks for the caller would be a guess — and not the same guess in a
    proxy that checked one of them."""
    values = headers.getlist("Authorization")
    if len(values) > 1:
        raise unauthorized("send one Authorization header, not several")
    return values[0] if values else None


def _claim(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise unauthorized(f"claim {name!r} must be a string")
    text = str(value)
    if len(text) > MAX_CLAIM_LENGTH or not text.isprintable():
        raise unauthorized(f"claim {name!r} is too long or not printable")
    return text


def check_company(value: object) -> str:
    """A present `company_id` claim as the company it names, or why it names none.

    Absent means platform admin; present, it must name one company unambiguously: a
    string of 1 to MAX_CLAIM_LENGTH printable characters (no control characters, no
    lone surrogates), not blank and without surrounding whitespace ("acme " would be
    a different tenant that looks the same in every log). Anything else — "", null,
    a number, a list — is refused rather than read as "no company", which would make
    its bearer a platform admin (fail open). Raises ValueError with the reason.
    """
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        raise ValueError(f"must be a string naming one company, got {kind}")
    if not value.strip():
        raise ValueError("must name a company (empty or blank); omit it for a platform admin")
    if len(value) > MAX_CLAIM_LENGTH:
        raise ValueError(f"must be at most {MAX_CLAIM_LENGTH} characters")
    if not value.isprintable() or value != value.strip():
        raise ValueError("must be printable, without control characters or surrounding whitespace")
    return value


def _company(payload: dict[str, Any]) -> str | None:
    if "company_id" not in payload:
        return None
    try:
        return check_company(payload["company_id"])
    except ValueError as exc:
        raise unauthorized(f"claim 'company_id' {exc}") from None


class TokenVerifier:
    """Verifies bearer tokens against one config (keys read once, at construction)."""

    def __init__(self, cfg: Config) -> None:
        a = cfg.auth
        self.algorithms = list(a.algorithms)
        self.audience = a.audience or None
        self.issuer = a.issuer or None
        self.leeway = a.leeway
        self._hmac: str | None = None
        self._public: Any = None
        self.secret_file: Path | None = None
        self.generated = False
        self._cache: dict[str, tuple[Principal, float]] = {}
        if any(alg.startswith("HS") for alg in self.algorithms):
            self._hmac, self.secret_file, self.generated = hmac_secret(cfg)
            for alg in self.algorithms:
                # RFC 7518 §3.2: the key at least as long as the hash (HS512: 64 bytes).
                need = int(alg[2:]) // 8 if alg.startswith("HS") else 0
                if len(self._hmac.encode()) < need:
                    raise ValueError(
                        f"auth.algorithms has {alg}: auth.secret needs at least {need} bytes"
                    )
        if any(not alg.startswith("HS") for alg in self.algorithms):
            if not a.public_key_file:
                raise ValueError(
                    f"auth.algorithms has {', '.join(self.algorithms)}: "
                    "set auth.public_key_file to the PEM public key that verifies them"
                )
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            try:
                pem = Path(a.public_key_file).expanduser().read_bytes()
                self._public = load_pem_public_key(pem)
            except (OSError, ValueError) as exc:
                raise ValueError(f"auth.public_key_file: cannot load: {exc}") from None

    def _key(self, alg: str) -> Any:
        # One key per family: the HMAC secret never verifies RS*/ES*, and the public key
        # is never used as an HMAC secret (the classic algorithm-confusion attack).
        return self._hmac if alg.startswith("HS") else self._public

    def verify_until(self, authorization: str | None) -> tuple[Principal, float]:
        """(caller, the token's exp): what a WebSocket needs to close when it expires."""
        cached = self._cache.get(authorization or "")
        if cached is not None:
            if time.time() < cached[1]:
                return cached
            del self._cache[authorization or ""]
        principal, expires = self._verify(authorization)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        assert authorization is not None
        self._cache[authorization] = (principal, expires)
        return principal, expires

    def _verify(self, authorization: str | None) -> tuple[Principal, float]:
        if not authorization:
            raise unauthorized("an Authorization: Bearer <token> header is required", "")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("the Authorization header must be 'Bearer <token>'")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthorized("malformed token") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise unauthorized(f"token algorithm {alg!r} is not accepted")
        required = ["exp"]
        if self.issuer is not None:
            required.append("iss")
        if self.audience is not None:
            required.append("aud")
        options: jwt.types.Options = {
            "require": required,
            "verify_aud": self.audience is not None,
        }
        try:
            payload = jwt.decode(
                token,
                self._key(alg),
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("token expired") from None
        except jwt.ImmatureSignatureError:
            raise unauthorized("token not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise unauthorized("token audience is not accepted") from None
        except jwt.InvalidIssuerError:
            raise unauthorized("token issuer is not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise unauthorized(f"token lacks the {exc.claim!r} claim") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise unauthorized("token signature or claims are invalid") from None
        if not isinstance(payload, dict):
            raise unauthorized("token payload must be a JSON object")
        roles = payload.get("roles")
        has_role = payload.get("role") == ADMIN_ROLE or (
            isinstance(roles, list) and ADMIN_ROLE in roles
        )
        if not has_role:
            raise ApiError.forbidden("the admin role is required")
        principal = Principal(
            subject=_claim(payload, "sub") or "unknown", company_id=_company(payload)
        )
        # exp is required and checked above; remembered without the leeway.
        return principal, float(payload["exp"])


def mint_token(
    cfg: Config,
    *,
    company_id: str | None = None,
    ttl: float = 3600.0,
    subject: str = "fleetd-cli",
    now: float | None = None,
) -> tuple[str, Path | None, bool]:
    """(token, secret file or None, whether the secret was generated just now)."""
    algs = [a for a in cfg.auth.algorithms if a.startswith("HS")]
    if not algs:
        raise ValueError(
            "auth.algorithms accepts no HS* algorithm: tokens for "
            f"{', '.join(cfg.auth.algorithms)} come from your identity provider"
        )
    secret, path, generated = hmac_secret(cfg)
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": subject,
        "role": ADMIN_ROLE,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl),
    }
    if company_id is not None:
        # The rule the daemon applies: `--company ""` is an error, not a platform token.
        try:
            claims["company_id"] = check_company(company_id)
        except ValueError as exc:
            raise ValueError(f"company_id {exc}") from None
    if cfg.auth.audience:
        claims["aud"] = cfg.auth.audience
    if cfg.auth.issuer:
        claims["iss"] = cfg.auth.issuer
    return jwt.encode(claims, secret, algorithm=algs[0]), path, generated
