"""The core sections of fleetd's config: one frozen dataclass per TOML table.

Owns the schema of every section fleetd itself reads — [daemon], [redis], [worker],
[maintenance], [scheduler], [plugins], [artifacts], [alerts], [encryption], and (from
fleetd.config.api_sections) [http], [auth], [events], and [spool] (spool_section) —
each key declared once with `setting()` (default, limits, help), plus the checks of
values that limits cannot express (URL schemes, listen addresses, time zones, key
formats). Plugins declare their own sections the same way (`fleetd.ConfigSection`);
`Config` (fleetd.config.model) gathers both.

The annotated defaults live in the repository's fleetd.toml, which a test pins to these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleetd.config.alert_rules import AlertRuleConfig, rule_problems
from fleetd.config.api_sections import AuthConfig, EventsConfig, HttpConfig
from fleetd.config.capacity_section import CapacityConfig
from fleetd.config.datakeys import SealError, parse_key
from fleetd.config.isolation_section import IsolationConfig
from fleetd.config.limit_sections import LimitsConfig
from fleetd.config.queue_section import QueuesConfig, check_served
from fleetd.config.redis_url import check_redis_url
from fleetd.config.settings import (
    DAY,
    HOUR,
    MINUTE,
    SECOND,
    is_host_port,
    setting,
)
from fleetd.config.spool_section import SpoolConfig

__all__ = [
    "CORE_SECTIONS",
    "AlertsConfig",
    "ArtifactsConfig",
    "DaemonConfig",
    "EncryptionConfig",
    "LimitsConfig",
    "MaintenanceConfig",
    "PluginsConfig",
    "RedisConfig",
    "SchedulerConfig",
    "WorkerConfig",
]


# Namespaces sit inside the Redis hash tag `fleetd:{<namespace>}:` (fleetd.backend.keys): a
# brace or colon would break the tag; 64 characters keep key names readable.
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _check_namespace(value: str) -> str | None:
    if _NAMESPACE.fullmatch(value):
        return None
    return f"must be 1 to 64 of the characters A-Z a-z 0-9 _ . -, got {value!r}"


def _check_listen(value: str) -> str | None:
    # TCP only: the embedded server (fakeredis's) has no unix-socket listener.
    if value == "":
        return None
    if is_host_port(value):
        return None
    return f"must be 'host:port' (port 0 picks a free one) or '' (disabled), got {value!r}"


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
    # "auto" is resolved at start-up (fleetd.runtime.supervisor.resolve_processes); 256
    # processes of ~80 MB each already fill a large host.
    processes: int | str = setting(
        1, 'daemon processes `fleetd run` supervises; "auto" = one per core', kind="count",
        min=1, max=256,
    )  # fmt: skip


@dataclass(frozen=True)
class RedisConfig:
    url: str = setting(
        "memory://",
        "Redis server, or memory:// for the embedded store",
        check=check_redis_url,
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
    wait_replicas: int = setting(
        0, "replicas that must have an enqueue before it is answered (WAIT); 0 = none",
        min=0, max=16,
    )  # fmt: skip
    wait_timeout: float = setting(
        1 * SECOND, "longest WAIT for those replicas", kind="duration", min=0.01, max=MINUTE
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
    critical_slots: int = setting(1, "bypassed critical jobs run at once", min=0, max=1000)
    max_result_bytes: int = setting(
        1024 * 1024, "largest result a handler may return, as JSON bytes; more fails the job",
        min=1024, max=64 * 1024 * 1024,
    )  # fmt: skip
    queues: tuple[str, ...] = setting(
        ("default",),
        "named queues served, in strict order ('mail', 'default') or by weight "
        "('bulk:1', 'default:3')",
        check=check_served,
    )


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


@dataclass(frozen=True)
class ArtifactsConfig:
    dir: str = setting("", "where jobs' files are kept; '' = <state_dir>/artifacts")
    retention: float = setting(
        30 * DAY, "delete a job's files this long after they were written; 0 = never",
        kind="duration", min=0,
    )  # fmt: skip
    job_max_bytes: int = setting(
        0, "most bytes one job attempt's artifacts may hold; more fails the job; 0 = no cap",
        min=0, max=1 << 50,
    )  # fmt: skip
    min_free_bytes: int = setting(
        256 * 1024 * 1024,
        "bytes an artifact write must leave free on its file system (else the job fails "
        "and is retried); 0 = none",
        min=0, max=1 << 50,
    )  # fmt: skip


def _check_data_key(value: str) -> str | None:
    # The sealer (fleetd.jobs.sealing) parses the keys it loads with the same function.
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
    # enqueue_anomaly: a company's enqueues in the last minute against its own mean per
    # minute over the hour before (fleetd.runtime.alert_companies); the floor keeps a
    # company going from 2 to 30 jobs a minute from raising it.
    anomaly_factor: int = setting(
        10, "alert when a company enqueues this many times its recent per-minute mean; "
        "0 = never", min=0,
    )  # fmt: skip
    anomaly_min: int = setting(100, "...and at least this many jobs in the minute", min=1)
    # payload_anomaly: a company's mean payload size in the last minute against its own
    # mean over the hour before (fleetd.runtime.alert_companies); the floor keeps a
    # company going from 200 B to 5 KiB payloads from raising it.
    payload_factor: int = setting(
        10, "alert when a company's mean payload size is this many times its recent "
        "mean; 0 = never", min=0,
    )  # fmt: skip
    payload_min_kib: int = setting(
        64, "...and its mean payload in the minute is at least this many KiB", min=1
    )
    webhook_url: str = setting(
        "", "POST alert.raised/resolved JSON here; '' = none", check=_check_webhook, secret=True
    )
    webhook_timeout: float = setting(
        5 * SECOND, "time limit of one webhook POST", kind="duration", above=0, max=MINUTE
    )
    rules: tuple[AlertRuleConfig, ...] = setting(
        (), "user-defined rules ([[alerts.rules]])", kind="tables", schema=AlertRuleConfig,
        problems=rule_problems,
    )  # fmt: skip


# The core sections in the order of fleetd.toml and of `fleetd config show`; plugin
# sections follow them.
CORE_SECTIONS: dict[str, type] = {
    "daemon": DaemonConfig,
    "redis": RedisConfig,
    "worker": WorkerConfig,
    "limits": LimitsConfig,
    "queues": QueuesConfig,
    "maintenance": MaintenanceConfig,
    "scheduler": SchedulerConfig,
    "plugins": PluginsConfig,
    "artifacts": ArtifactsConfig,
    "http": HttpConfig,
    "auth": AuthConfig,
    "alerts": AlertsConfig,
    "capacity": CapacityConfig,
    "events": EventsConfig,
    "encryption": EncryptionConfig,
    "spool": SpoolConfig,
    "isolation": IsolationConfig,
}
