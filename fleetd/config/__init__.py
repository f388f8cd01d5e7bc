"""fleetd's one typed, frozen configuration: schema, loading, validation, dumping.

Owns:
- the schema: one frozen dataclass per TOML section, one `setting()` per key carrying
  its default, kind, limits and help. Parsing is driven by that metadata, so a new
  section is a new dataclass plus a field on `Config`, with no per-key code;
- `load_config()`: file discovery, TOML reading, `FLEETD_<SECTION>_<KEY>` environment
  overrides, and validation of the whole: every error of the file and the environment
  is collected and raised as one `ConfigError`, each naming its key;
- `config_to_dict()` / `dump_toml()` for `fleetd config show`.

Durations are float seconds in Python and strings such as "30s" in TOML (fleetd.config.durations).
The annotated defaults live in the repository's fleetd.toml, which a test pins to these.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, get_type_hints

import tomli_w

from fleetd.config.durations import DURATION_EXAMPLES, format_duration, parse_duration

__all__ = [
    "ENV_CONFIG_PATH",
    "SEARCH_PATHS",
    "AlertsConfig",
    "ArtifactsConfig",
    "AuthConfig",
    "Config",
    "ConfigError",
    "DaemonConfig",
    "DataConfig",
    "EmailConfig",
    "EncryptionConfig",
    "EventsConfig",
    "HttpConfig",
    "MaintenanceConfig",
    "PluginsConfig",
    "RedisConfig",
    "SchedulerConfig",
    "WorkerConfig",
    "config_to_dict",
    "dump_toml",
    "load_config",
    "resolve_state_dir",
    "setting",
]

ENV_PREFIX = "FLEETD_"
ENV_CONFIG_PATH = "FLEETD_CONFIG"  # reserved: the config file's path, not a key
ENV_TOKEN = "FLEETD_TOKEN"  # reserved: the API token `fleetd events` sends, not a key
# Tried in order when neither a path nor FLEETD_CONFIG is given: the working directory
# first (a checkout, a container's workdir), then the packaged location.
SEARCH_PATHS = (Path("fleetd.toml"), Path("/etc/fleetd/fleetd.toml"))
APP_DIR = "fleetd"
SECOND, MINUTE, HOUR, DAY = 1.0, 60.0, 3_600.0, 86_400.0

_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})
Check = Callable[[Any], str | None]


class ConfigError(Exception):
    """Invalid configuration; `errors` holds every problem found, each naming its key."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("invalid configuration:\n  " + "\n  ".join(errors))


def setting(
    default: Any,
    help: str,
    *,
    kind: str | None = None,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    choices: tuple[str, ...] | None = None,
    unique: bool = False,
    check: Check | None = None,
    key: str | None = None,
    secret: bool = False,
) -> Any:
    """A config key: a dataclass field whose metadata drives parsing and validation.

    kind: "duration" for float seconds written "30s"; else from the type (str, int, bool,
    tuple[str, ...] = "list"). min/max are inclusive (item count for lists), above is
    exclusive. choices: allowed values (of each item for lists). check: error or None.
    key: the TOML key when it differs from the field name (`from`, a Python keyword).
    secret: masked when the config is shown (`fleetd config show`).
    """
    meta = {
        "help": help,
        "kind": kind,
        "min": min,
        "max": max,
        "above": above,
        "choices": choices,
        "unique": unique,
        "check": check,
        "key": key,
        "secret": secret,
    }
    return field(default=default, metadata=meta)


def _prefixed(*prefixes: str) -> Check:
    def check(value: str) -> str | None:
        if value.startswith(prefixes):
            return None
        return f"must start with {', '.join(prefixes[:-1])} or {prefixes[-1]}, got {value!r}"

    return check


# Namespaces sit inside the Redis hash tag `fleetd:{<namespace>}:` (fleetd.backend.keys): a
# brace or colon would break the tag; 64 characters keep key names readable.
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAX_PORT = 65_535


def _check_namespace(value: str) -> str | None:
    if _NAMESPACE.fullmatch(value):
        return None
    return f"must be 1 to 64 of the characters A-Z a-z 0-9 _ . -, got {value!r}"


def _check_listen(value: str) -> str | None:
    # TCP only: the embedded server (fakeredis's) has no unix-socket listener.
    if value == "":
        return None
    if _is_host_port(value):
        return None
    return f"must be 'host:port' (port 0 picks a free one) or '' (disabled), got {value!r}"


def _is_host_port(value: str) -> bool:
    host, _, port = value.rpartition(":")  # rpartition: "[::1]:0" keeps its colons
    return bool(host) and port.isdigit() and int(port) <= _MAX_PORT


@dataclass(frozen=True)
class DaemonConfig:
    state_dir: str = setting("", "state directory; '' = systemd's, XDG's or ~/.local/state")
    name: str = setting("", "prefix of the daemon id; '' = host name")
    roles: tuple[str, ...] = setting(
        ("worker", "scheduler", "api"),
        "what this daemon runs",
        choices=("worker", "scheduler", "api"),
        min=1,
        unique=True,
    )
    log_level: str = setting(
        "info", "least severe level logged", choices=("debug", "info", "warning", "error")
    )
    log_format: str = setting("text", "log line format", choices=("text", "json"))
    log_jobs: bool = setting(True, "one INFO line per finished job (start lines at debug)")
    heartbeat_interval: float = setting(
        2 * SECOND, "how often the daemon records it is alive", kind="duration", min=0.1, max=MINUTE
    )


@dataclass(frozen=True)
class RedisConfig:
    url: str = setting(
        "memory://",
        "Redis server, or memory:// for the embedded store",
        check=_prefixed(
            "memory://",
            "redis://",
            "rediss://",
            "unix://",
            "redis+sentinel://",
            "rediss+sentinel://",
            "redis+cluster://",
            "rediss+cluster://",
        ),
    )
    namespace: str = setting("main", "keys live under fleetd:{namespace}:", check=_check_namespace)
    memory_listen: str = setting(
        "127.0.0.1:0", "where the embedded store is served", check=_check_listen
    )
    connect_timeout: float = setting(5 * SECOND, "connect timeout", kind="duration", above=0)
    command_timeout: float = setting(
        10 * SECOND, "socket timeout of non-blocking commands", kind="duration", above=0
    )
    max_connections: int = setting(32, "connection pool size", min=4, max=1024)
    events_maxlen: int = setting(
        100_000, "approximate cap of the events stream", min=1000, max=100_000_000
    )
    reconnect_max_backoff: float = setting(
        10 * SECOND, "longest wait between reconnects", kind="duration", min=0.1, max=5 * MINUTE
    )


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = setting(5, "jobs run at once", min=1, max=10_000)
    poll_interval: float = setting(
        1 * SECOND, "idle wait between queue polls", kind="duration", min=0.01, max=MINUTE
    )
    job_timeout: float = setting(
        5 * MINUTE, "default time limit of a job", kind="duration", above=0
    )
    shutdown_timeout: float = setting(
        30 * SECOND, "grace for running jobs at stop", kind="duration", min=0
    )
    max_retries: int = setting(3, "default retries of a failing job", min=0, max=100)
    claim_batch: int = setting(100, "most jobs claimed per round trip", min=1, max=1000)
    lease: float = setting(
        30 * SECOND,
        "how long a claimed job is reserved (renewed)",
        kind="duration",
        min=SECOND,
        max=HOUR,
    )
    max_stalls: int = setting(3, "lease expiries before a job is failed", min=1, max=100)


@dataclass(frozen=True)
class MaintenanceConfig:
    interval: float = setting(
        1 * SECOND,
        "how often due jobs are promoted, leases reaped",
        kind="duration",
        min=0.05,
        max=MINUTE,
    )
    completed_ttl: float = setting(
        7 * DAY, "keep completed jobs; 0 = forever", kind="duration", min=0
    )
    failed_ttl: float = setting(30 * DAY, "keep failed jobs; 0 = forever", kind="duration", min=0)
    cancelled_ttl: float = setting(
        7 * DAY, "keep cancelled jobs; 0 = forever", kind="duration", min=0
    )


def _check_timezone(value: str) -> str | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"must be an IANA time zone such as UTC or Europe/Berlin, got {value!r}"
    return None


@dataclass(frozen=True)
class SchedulerConfig:
    create_defaults: bool = setting(True, "create the default schedules on first start")
    timezone: str = setting(
        "UTC", "time zone of schedules that do not name one", check=_check_timezone
    )
    misfire_grace: float = setting(
        1 * MINUTE,
        "lateness after which an occurrence counts as missed",
        kind="duration",
        min=SECOND,
        max=DAY,
    )


@dataclass(frozen=True)
class PluginsConfig:
    disable: tuple[str, ...] = setting((), "plugin or job-type names not to load")
    directory: str = setting("", "folder of plugin wheels (*.whl) to load; '' = none")


def _check_from(value: str) -> str | None:
    # Syntax only here (the e-mail plugin checks the address fully when it starts).
    if value == "" or ("@" in value and "\n" not in value and "\r" not in value):
        return None
    return f"must be an e-mail address such as 'Fleet <noreply@example.com>' or '', got {value!r}"


@dataclass(frozen=True)
class EmailConfig:
    mode: str = setting("outbox", "how e-mail is delivered", choices=("outbox", "smtp"))
    outbox_dir: str = setting("", "where outbox mode writes .eml files; '' = <state_dir>/outbox")
    host: str = setting("localhost", "SMTP server host")
    port: int = setting(0, "SMTP port; 0 = 25, 587 or 465 by security", min=0, max=_MAX_PORT)
    security: str = setting(
        "starttls", "SMTP transport security", choices=("none", "starttls", "tls")
    )
    ca_file: str = setting("", "PEM file of CAs to trust for TLS; '' = the system's")
    username: str = setting("", "SMTP login; '' = no AUTH")
    password: str = setting("", "SMTP password (prefer FLEETD_EMAIL_PASSWORD)", secret=True)
    timeout: float = setting(
        30 * SECOND, "SMTP connect and command timeout", kind="duration", above=0, max=10 * MINUTE
    )
    from_: str = setting(
        "", "sender address; '' = fleetd@<host name>", check=_check_from, key="from"
    )


def _check_data_url(value: str) -> str | None:
    if value == "" or value.startswith(("sqlite:///", "postgresql://", "postgres://")):
        return None
    return (
        "must be '' (SQLite under the state directory), sqlite:///PATH or "
        f"postgresql://user@host/db, got {value!r}"
    )


@dataclass(frozen=True)
class DataConfig:
    url: str = setting(
        "",
        "fleet database: sqlite:///PATH, postgresql://…; '' = <state_dir>/fleet.db",
        check=_check_data_url,
    )
    demo_fleet: bool = setting(True, "url '': a new database starts with a small demo fleet")
    report_max_days: int = setting(366, "longest date range of one report", min=1, max=3660)
    export_batch: int = setting(5000, "rows per batch of an export", min=100, max=100_000)
    cleanup_floor_days: int = setting(
        7, "smallest older_than_days a clean-up job may ask for", min=1, max=3650
    )
    cleanup_batch: int = setting(5000, "rows deleted per transaction", min=100, max=100_000)
    cleanup_pause: float = setting(
        0.05, "pause between clean-up batches", kind="duration", min=0, max=10 * SECOND
    )


@dataclass(frozen=True)
class ArtifactsConfig:
    dir: str = setting("", "where jobs' files are kept; '' = <state_dir>/artifacts")


def _check_http_listen(value: str) -> str | None:
    if value.startswith("unix:"):
        return None if len(value) > len("unix:") else "a unix socket needs a path (unix:/path)"
    if _is_host_port(value):
        return None
    return f"must be 'host:port' (port 0 picks a free one) or 'unix:/path', got {value!r}"


KIB, MIB = 1024, 1024 * 1024


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
    audit_maxlen: int = setting(
        100_000, "approximate cap of the audit log", min=100, max=100_000_000
    )
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
    read_count: int = setting(
        1000, "events read from Redis per XREAD of the fan-out loop", min=10, max=100_000
    )
    compression: bool = setting(
        False, "accept permessage-deflate on the events WebSocket (CPU per subscriber)"
    )


def _check_data_key(value: str) -> str | None:
    # fleetd.jobs.sealing parses keys the same way when it loads them (imported here, not at
    # the top: config is read by every command, the cipher library only by some).
    from fleetd.jobs.sealing import SealError, parse_key

    try:
        parse_key(value, "each key")
    except SealError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class EncryptionConfig:
    keys: tuple[str, ...] = setting(
        (),
        "AES-256-GCM data keys 'key_id:base64'; the first encrypts, all decrypt",
        unique=True,
        secret=True,
        check=lambda items: next(filter(None, map(_check_data_key, items)), None),
    )
    key_file: str = setting(
        "", "file of 'key_id:base64' lines used when keys is empty; '' = generated"
    )


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


def _check_webhook(value: str) -> str | None:
    if value == "" or value.startswith(("http://", "https://")):
        return None
    return f"must be an http:// or https:// URL or '' (no webhook), got {value!r}"


@dataclass(frozen=True)
class AlertsConfig:
    enabled: bool = setting(True, "evaluate the spec's alerts in this daemon")
    interval: float = setting(
        10 * SECOND, "how often alerts are evaluated", kind="duration", min=0.05, max=10 * MINUTE
    )
    window: float = setting(
        5 * MINUTE, "failure rate and missed runs look back this far", kind="duration", min=1
    )
    failure_rate: int = setting(
        20, "alert above this % of jobs failed in the window", min=0, max=100
    )
    backlog: int = setting(100, "alert above this many jobs waiting", min=1)
    raise_after: float = setting(
        30 * SECOND, "a condition holds this long before it is raised", kind="duration", min=0
    )
    clear_after: float = setting(
        60 * SECOND, "a clear condition holds this long before it is resolved",
        kind="duration", min=0,
    )  # fmt: skip
    webhook_url: str = setting(
        "", "POST alert.raised/resolved JSON here; '' = none", check=_check_webhook, secret=True
    )
    webhook_timeout: float = setting(
        5 * SECOND, "time limit of one webhook POST", kind="duration", above=0, max=MINUTE
    )


def resolve_state_dir(configured: str, env: Mapping[str, str] | None = None) -> Path:
    """`configured` if set, else $STATE_DIRECTORY, $XDG_STATE_HOME/fleetd or
    ~/.local/state/fleetd, read from `env` (default os.environ)."""
    env = os.environ if env is None else env
    if configured:
        return Path(configured).expanduser()
    # systemd's StateDirectory= with several directories gives a colon-separated list.
    if systemd := env.get("STATE_DIRECTORY", "").split(":")[0]:
        return Path(systemd)
    # The XDG base-directory spec: a relative path is invalid and must be ignored.
    if (xdg := env.get("XDG_STATE_HOME", "")) and Path(xdg).is_absolute():
        return Path(xdg) / APP_DIR
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "state" / APP_DIR


@dataclass(frozen=True)
class Config:
    """The whole configuration. `source` is the file it was read from, if any."""

    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    email: EmailConfig = field(default_factory=EmailConfig)
    data: DataConfig = field(default_factory=DataConfig)
    artifacts: ArtifactsConfig = field(default_factory=ArtifactsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    encryption: EncryptionConfig = field(default_factory=EncryptionConfig)
    # Not settings, so not compared: equal settings are equal wherever they came from.
    source: Path | None = field(default=None, compare=False)
    # Where daemon.state_dir = "" points, resolved from the environment the config was
    # loaded with (a test's mapping), not from os.environ at each access.
    state_dir_fallback: Path = field(
        default_factory=lambda: resolve_state_dir(""), repr=False, compare=False
    )

    @classmethod
    def default(cls) -> Config:
        """Every key at its default: no file, no environment overrides."""
        return cls()

    @property
    def state_dir(self) -> Path:
        """The resolved state directory (follows a dataclasses.replace of daemon)."""
        if self.daemon.state_dir:
            return resolve_state_dir(self.daemon.state_dir)
        return self.state_dir_fallback


# --- schema, conversion, validation --------------------------------------------------

Keys = dict[str, tuple[str, Mapping[str, Any]]]  # key -> (kind, metadata)
_KINDS: dict[object, str] = {str: "str", int: "int", bool: "bool", tuple[str, ...]: "list"}
_TOML_TYPES: dict[str, type] = {"str": str, "duration": str, "bool": bool, "int": int}
_NOUNS = {
    "int": "an integer",
    "duration": "a duration",
    "bool": "true or false",
    "list": "a list of strings",
    "str": "a string",
}


@cache
def _schema() -> dict[str, tuple[type[Any], Keys]]:
    """section -> (its dataclass, its keys), read from the fields of Config."""
    schema: dict[str, tuple[type[Any], Keys]] = {}
    for section, cls in get_type_hints(Config).items():
        if isinstance(cls, type) and dataclasses.is_dataclass(cls):
            hints = get_type_hints(cls)
            keys: Keys = {
                (f.metadata.get("key") or f.name): (
                    f.metadata.get("kind") or _KINDS[hints[f.name]],
                    {**f.metadata, "field": f.name},
                )
                for f in dataclasses.fields(cls)
            }
            schema[section] = (cls, keys)
    return schema


def _describe(kind: str, meta: Mapping[str, Any]) -> str:
    """What a valid value looks like, e.g. "an integer from 1 to 10000"."""
    if meta["choices"]:
        return ("a list of " if kind == "list" else "one of ") + ", ".join(meta["choices"])
    low, high, above, noun = meta["min"], meta["max"], meta["above"], _NOUNS[kind]
    show: Callable[[float], str] = format_duration if kind == "duration" else str
    if kind not in ("int", "duration"):
        return noun
    if low is not None and high is not None:
        return f"{noun} from {show(low)} to {show(high)}"
    if above is not None:
        return f"{noun} greater than {show(above)}"
    return f"{noun} of at least {show(low)}" if low is not None else noun


def _parse(kind: str, raw: Any, from_env: bool) -> Any:
    """The typed value of a TOML value or an environment string; ValueError if it does
    not parse or, from TOML, has the wrong type (TOML's types are checked, not coerced)."""
    if from_env:
        if kind == "bool" and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        if kind == "list":
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        raw = int(raw) if kind == "int" else raw  # int() itself tolerates blanks
    elif kind == "list":
        if not (isinstance(raw, list) and all(isinstance(i, str) for i in raw)):
            raise ValueError
        return tuple(raw)
    if not isinstance(raw, _TOML_TYPES[kind]) or (kind == "int" and isinstance(raw, bool)):
        raise ValueError
    return parse_duration(str(raw)) if kind == "duration" else raw


def _violation(kind: str, meta: Mapping[str, Any], value: Any, raw: object) -> str | None:
    """Why a well-typed value is not allowed, or None."""
    low, high, above = meta["min"], meta["max"], meta["above"]
    if kind == "list":
        if low is not None and len(value) < low:
            return f"must list at least {int(low)} item(s)"
        if bad := [i for i in value if meta["choices"] and i not in meta["choices"]]:
            return f"unknown item {bad[0]!r} (choose from {', '.join(meta['choices'])})"
        if meta["unique"] and (dupes := sorted({i for i in value if value.count(i) > 1})):
            return f"duplicate item(s) {', '.join(dupes)}"
    elif (
        (low is not None and value < low)
        or (high is not None and value > high)
        or (above is not None and value <= above)
        or (meta["choices"] and value not in meta["choices"])
    ):
        return f"must be {_describe(kind, meta)}, got {raw!r}"
    check: Check | None = meta["check"]
    return check(value) if check else None


def _convert(kind: str, meta: Mapping[str, Any], raw: Any, from_env: bool) -> tuple[Any, str]:
    """(value, "") or (None, error) for a raw TOML value or environment string."""
    try:
        value = _parse(kind, raw, from_env)
    except ValueError as exc:
        if kind != "duration":
            return None, f"must be {_describe(kind, meta)}, got {raw!r}"
        # parse_duration's message quotes the input; a bare error means "not a string".
        return None, str(exc) or f"must be a duration string ({DURATION_EXAMPLES}), got {raw!r}"
    return (None, problem) if (problem := _violation(kind, meta, value, raw)) else (value, "")


def _unknown(what: str, name: str, known: Iterable[str]) -> str:
    # A typo is the usual cause: name the nearest spelling (difflib's default 0.6 cutoff).
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"unknown {what} {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _env_var(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section}_{key}".upper()


def _build_section(
    name: str, table: Mapping[str, Any], env: Mapping[str, str], errors: list[str]
) -> Any:
    cls, keys = _schema()[name]
    values: dict[str, Any] = {}
    for key, (kind, meta) in keys.items():
        sources = [(f"{name}.{key}", table[key], False)] if key in table else []
        if (var := _env_var(name, key)) in env:  # last, so the environment wins
            sources.append((f"{name}.{key} (from {var})", env[var], True))
        for label, raw, from_env in sources:
            value, error = _convert(kind, meta, raw, from_env)
            if error:
                errors.append(f"{label}: {error}")
            else:
                values[meta["field"]] = value
    known = [f"{name}.{key}" for key in keys]
    errors.extend(_unknown("key", f"{name}.{k}", known) for k in table if k not in keys)
    return cls(**values)


def _read_toml(path: Path, errors: list[str]) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line N, column M)"
        errors.append(f"{path}: invalid TOML: {exc}")
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{path}: cannot read: {exc}")
    return {}


def _find_file(path: str | Path | None, env: Mapping[str, str]) -> Path | None:
    explicit = path if path is not None else env.get(ENV_CONFIG_PATH) or None
    if explicit is None:
        return next((p for p in SEARCH_PATHS if p.is_file()), None)
    if not Path(explicit).is_file():
        raise ConfigError([f"config file not found: {explicit}"])
    return Path(explicit)


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the config file (`path`, $FLEETD_CONFIG, ./fleetd.toml, /etc/fleetd/fleetd.toml
    or none), overlay FLEETD_<SECTION>_<KEY> from `env` (default os.environ), validate.

    Raises ConfigError listing every problem of the file and the environment at once.
    """
    env = os.environ if env is None else env
    source = _find_file(path, env)
    errors: list[str] = []
    data = _read_toml(source, errors) if source else {}
    schema = _schema()
    known_vars = {ENV_CONFIG_PATH, ENV_TOKEN} | {
        _env_var(name, key) for name, (_, keys) in schema.items() for key in keys
    }
    errors.extend(
        _unknown("environment variable", var, known_vars)
        for var in sorted(env)
        if var.startswith(ENV_PREFIX) and var not in known_vars
    )
    built: dict[str, Any] = {}
    for name in schema:
        if not isinstance(table := data.get(name, {}), dict):
            errors.append(f"{name}: must be a table ([{name}]), got {table!r}")
            table = {}
        built[name] = _build_section(name, table, env, errors)
    for name, value in data.items():
        if name not in schema:
            errors.append(
                _unknown("section", name, schema)
                if isinstance(value, dict)
                else f"unknown key {name!r} (keys belong in a [section])"
            )
    if errors:
        raise ConfigError(errors)
    return Config(**built, source=source, state_dir_fallback=resolve_state_dir("", env))


def config_to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """Every setting by section as TOML spells it: durations as "30s", lists as lists."""
    out: dict[str, dict[str, Any]] = {}
    for name, (_, keys) in _schema().items():
        section = getattr(cfg, name)
        out[name] = {
            key: (
                format_duration(getattr(section, meta["field"]))
                if kind == "duration"
                else list(getattr(section, meta["field"]))
                if kind == "list"
                else getattr(section, meta["field"])
            )
            for key, (kind, meta) in keys.items()
        }
    return out


def _mask_url(url: str) -> str:
    """`redis://user:secret@host` → `redis://user:***@host`."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}:***@{host}" if colon else url


def redacted(values: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """config_to_dict's output with secrets masked: secret keys as "***" when set, and
    passwords inside URLs."""
    out = {name: dict(section) for name, section in values.items()}
    for name, (_, keys) in _schema().items():
        for key, (_kind, meta) in keys.items():
            value = out[name].get(key)
            if meta.get("secret") and value:
                out[name][key] = "***"
            elif isinstance(value, str) and "://" in value:
                out[name][key] = _mask_url(value)
    return out


def dump_toml(cfg: Config, *, redact: bool = False) -> str:
    """The settings as a TOML document that load_config reads back to an equal Config
    (with `redact`, secrets are masked and the document is for reading only)."""
    values = config_to_dict(cfg)
    return tomli_w.dumps(redacted(values) if redact else values)
