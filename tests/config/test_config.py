"""fleetd.config: defaults, the repository's fleetd.toml, file discovery, environment
overrides, validation (every error at once) and dumping. Real files under tmp_path and
explicit env mappings: os.environ is never read or changed."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from fleetd.config import (
    SEARCH_PATHS,
    Config,
    ConfigError,
    config_to_dict,
    dump_toml,
    load_config,
    resolve_state_dir,
)
from fleetd.config import settings as config_module

REPO_TOML = Path(__file__).resolve().parents[2] / "fleetd.toml"

# The defaults as the brief states them, spelled as TOML: pins every key and default.
DEFAULTS: dict[str, dict[str, Any]] = {
    "daemon": {
        "state_dir": "",
        "name": "",
        "roles": ["worker", "scheduler", "api"],
        "log_level": "info",
        "log_format": "text",
        "log_jobs": True,
        "heartbeat_interval": "2s",
        "processes": 1,
    },
    "redis": {
        "url": "memory://",
        "namespace": "main",
        "memory_listen": "127.0.0.1:0",
        "connect_timeout": "5s",
        "command_timeout": "10s",
        "max_connections": 32,
        "events_maxlen": 100_000,
        "reconnect_max_backoff": "10s",
        "wait_replicas": 0,
        "wait_timeout": "1s",
    },
    "worker": {
        "concurrency": 5,
        "poll_interval": "1s",
        "job_timeout": "5m",
        "shutdown_timeout": "30s",
        "max_retries": 3,
        "claim_batch": 100,
        "lease": "30s",
        "max_stalls": 3,
        "critical_slots": 1,
        "max_result_bytes": 1048576,
        "queues": ["default"],
    },
    "limits": {
        "types": [],
        "company_concurrency": 0,
        "company_rate": "",
        "queues": [],
        "company_max_pending": 0,
        "company_enqueue_rate": "",
        "company_max_schedules": 0,
    },
    "queues": {"routes": [], "own_slot": []},
    "maintenance": {
        "interval": "1s",
        "completed_ttl": "168h",
        "failed_ttl": "720h",
        "cancelled_ttl": "168h",
    },
    "scheduler": {"create_defaults": True, "timezone": "UTC", "misfire_grace": "1m"},
    "plugins": {"disable": [], "directory": ""},
    "email": {
        "mode": "outbox",
        "outbox_dir": "",
        "host": "localhost",
        "port": 0,
        "security": "starttls",
        "ca_file": "",
        "username": "",
        "password": "",
        "timeout": "30s",
        "from": "",
    },
    "data": {
        "url": "",
        "demo": False,
        "demo_fleet": True,
        "report_max_days": 366,
        "export_batch": 5000,
        "cleanup_floor_days": 7,
        "cleanup_batch": 5000,
        "cleanup_pause": "50ms",
        "cleanup_gps_tracks": "gps_tracks.recorded_at",
        "cleanup_audit_logs": "audit_logs.created_at",
        "cleanup_driver_events": "driver_events.occurred_at",
    },
    "artifacts": {
        "dir": "",
        "retention": "720h",
        "job_max_bytes": 0,
        "min_free_bytes": 256 * 1024 * 1024,
    },
    "http": {
        "listen": ["127.0.0.1:8080"],
        "tls_cert": "",
        "tls_key": "",
        "max_body_size": 262_144,
        "max_json_depth": 32,
        "max_bulk_jobs": 1000,
        "redis_timeout": "1.5s",
        "shutdown_timeout": "5s",
        "metrics_auth": True,
        "max_in_flight": 128,
        "company_share": 0.5,
        "audit_maxlen": 100_000,
        "audit_company_maxlen": 10_000,
        "audit_anonymous_maxlen": 10_000,
        "allowed_origins": [],
    },
    "auth": {
        "algorithms": ["HS256"],
        "secret": "",
        "public_key_file": "",
        "audience": "",
        "issuer": "",
        "leeway": "30s",
    },
    "alerts": {
        "enabled": True,
        "interval": "10s",
        "window": "5m",
        "failure_rate": 20,
        "backlog": 100,
        "raise_after": "30s",
        "clear_after": "1m",
        "anomaly_factor": 10,
        "anomaly_min": 100,
        "payload_factor": 10,
        "payload_min_kib": 64,
        "webhook_url": "",
        "webhook_timeout": "5s",
        "rules": [],
    },
    "capacity": {"wait_p95_target": "5s", "window": "15m"},
    "events": {
        "buffer": 1000,
        "ping_interval": "20s",
        "ticket_ttl": "30s",
        "max_subscribers": 10_000,
        "company_share": 0.5,
        "read_count": 1000,
        "compression": False,
        "company_maxlen": 2000,
    },
    "encryption": {"keys": [], "key_file": ""},
    "spool": {
        "enabled": True,
        "max_jobs": 100_000,
        "max_bytes": 268_435_456,
        "company_share": 0.5,
        "replay_batch": 500,
        "replay_interval": "1s",
    },
    "isolation": {
        "modes": [],
        "memory_mb": 2048,
        "memory": [],
        "cpu_seconds": 0,
        "cpu": [],
        "no_retry": [],
        "retry": [],
        "max_children": 4,
        "max_jobs_per_child": 1000,
        "idle_timeout": "5m",
        "kill_grace": "5s",
        "scratch_dir": "",
        "quarantine_after": 5,
        "quarantine_window": "10m",
        "quarantine_kinds": ["memory", "cpu", "timeout", "crash", "stall"],
    },
}


def write(tmp_path: Path, text: str, name: str = "fleetd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(path: Path | None, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {})
    return info.value.errors


def one_error(tmp_path: Path, toml: str, env: dict[str, str] | None = None) -> str:
    errors = errors_of(write(tmp_path, toml), env)
    assert len(errors) == 1, errors
    return errors[0]


# --- defaults and the repository's file -----------------------------------------------


def test_defaults() -> None:
    cfg = Config.default()
    assert config_to_dict(cfg) == DEFAULTS
    assert cfg.worker.job_timeout == 300.0
    assert cfg.maintenance.failed_ttl == 30 * 86_400.0
    assert cfg.daemon.roles == ("worker", "scheduler", "api")
    assert cfg.source is None


def test_repo_fleetd_toml_equals_defaults() -> None:
    cfg = load_config(REPO_TOML, {})
    assert cfg == Config.default()
    assert cfg.source == REPO_TOML


def test_repo_fleetd_toml_lists_every_key() -> None:
    with REPO_TOML.open("rb") as f:
        data = tomllib.load(f)
    assert {s: set(keys) for s, keys in data.items()} == {
        s: set(keys) for s, keys in DEFAULTS.items()
    }


def test_every_key_has_help() -> None:
    for section in dataclasses.fields(Config):
        if dataclasses.is_dataclass(section.default_factory):
            for key in dataclasses.fields(section.default_factory):
                assert key.metadata["help"], f"{section.name}.{key.name}"


# --- file discovery ---------------------------------------------------------------------


def test_explicit_path_must_exist(tmp_path: Path) -> None:
    assert errors_of(tmp_path / "nope.toml") == [f"config file not found: {tmp_path}/nope.toml"]


def test_fleetd_config_env_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[worker]\nconcurrency = 7\n", "custom.toml")
    cfg = load_config(None, {"FLEETD_CONFIG": str(path)})
    assert (cfg.worker.concurrency, cfg.source) == (7, path)
    assert errors_of(None, {"FLEETD_CONFIG": str(tmp_path / "gone.toml")}) == [
        f"config file not found: {tmp_path}/gone.toml"
    ]


def test_working_directory_file_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "[worker]\nconcurrency = 8\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(env={})
    assert cfg.worker.concurrency == 8
    assert cfg.source == SEARCH_PATHS[0]


def test_no_file_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if SEARCH_PATHS[1].exists():
        pytest.skip(f"{SEARCH_PATHS[1]} exists on this machine")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(env={})
    assert cfg == Config.default()
    assert cfg.source is None


# --- reading values ---------------------------------------------------------------------


def test_file_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[daemon]
roles = ["worker"]
log_level = "debug"
[redis]
url = "redis://localhost:6379/1"
memory_listen = ""
[worker]
concurrency = 50
job_timeout = "1h30m"
shutdown_timeout = "0s"
[maintenance]
completed_ttl = "0s"
[plugins]
disable = ["noop"]
""",
    )
    cfg = load_config(path, {})
    assert cfg.daemon.roles == ("worker",)
    assert cfg.daemon.log_level == "debug"
    assert cfg.redis.url == "redis://localhost:6379/1"
    assert cfg.redis.memory_listen == ""
    assert (cfg.worker.concurrency, cfg.worker.job_timeout) == (50, 5400.0)
    assert cfg.worker.shutdown_timeout == 0.0
    assert cfg.maintenance.completed_ttl == 0.0
    assert cfg.plugins.disable == ("noop",)
    assert cfg.worker.max_retries == 3  # untouched keys keep their defaults


def test_frozen() -> None:
    cfg = Config.default()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.worker.concurrency = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.redis = cfg.redis  # type: ignore[misc]
    assert isinstance(cfg.daemon.roles, tuple)
    assert isinstance(cfg.plugins.disable, tuple)


# --- environment overrides -------------------------------------------------------------


def test_env_overrides_each_kind(tmp_path: Path) -> None:
    path = write(tmp_path, '[worker]\nconcurrency = 3\njob_timeout = "1m"\n')
    cfg = load_config(
        path,
        {
            "FLEETD_WORKER_CONCURRENCY": "9",  # int, over the file's 3
            "FLEETD_WORKER_JOB_TIMEOUT": "10m",  # duration, over the file's 1m
            "FLEETD_REDIS_URL": "rediss://cache:6380/0",  # str
            "FLEETD_DAEMON_ROLES": "worker, api",  # list, comma separated
            "FLEETD_PLUGINS_DISABLE": "",  # empty list
            "HOME": "/home/x",  # other variables are not fleetd's business
        },
    )
    assert cfg.worker.concurrency == 9
    assert cfg.worker.job_timeout == 600.0
    assert cfg.redis.url == "rediss://cache:6380/0"
    assert cfg.daemon.roles == ("worker", "api")
    assert cfg.plugins.disable == ()


@pytest.mark.parametrize(
    ("raw", "value"),
    [("true", True), ("YES", True), (" 1 ", True), ("false", False), ("No", False), ("0", False)],
)
def test_env_bool(raw: str, value: bool) -> None:
    # No section has a bool key yet; the parser the schema would use is tested directly.
    assert config_module.parse_value("bool", raw, True) is value


def test_env_bool_rejects_other_words() -> None:
    with pytest.raises(ValueError):
        config_module.parse_value("bool", "maybe", True)


def test_env_errors_name_the_variable(tmp_path: Path) -> None:
    errors = errors_of(
        None,
        {
            "FLEETD_WORKER_CONCURRENCY": "many",
            "FLEETD_WORKER_LEASE": "30",
            "FLEETD_DAEMON_ROLES": "worker,cook",
            "FLEETD_CONFIG_PATH": "x",
            "FLEETD_WORKER_CONCURENCY": "5",
        },
    )
    assert sorted(errors) == sorted(
        [
            "unknown environment variable 'FLEETD_CONFIG_PATH' (did you mean 'FLEETD_CONFIG'?)",
            "unknown environment variable 'FLEETD_WORKER_CONCURENCY' "
            "(did you mean 'FLEETD_WORKER_CONCURRENCY'?)",
            "worker.concurrency (from FLEETD_WORKER_CONCURRENCY): "
            "must be an integer from 1 to 10000, got 'many'",
            "worker.lease (from FLEETD_WORKER_LEASE): invalid duration '30': missing unit after "
            "30 (use e.g. 500ms, 10s, 30m, 1h, 1d, 1w)",
            "daemon.roles (from FLEETD_DAEMON_ROLES): unknown item 'cook' "
            "(choose from worker, scheduler, api)",
        ]
    )


def test_env_overrides_a_bad_file_value_but_the_file_is_still_reported(tmp_path: Path) -> None:
    error = one_error(tmp_path, "[worker]\nconcurrency = 0\n", {"FLEETD_WORKER_CONCURRENCY": "4"})
    assert error == "worker.concurrency: must be an integer from 1 to 10000, got 0"


# --- validation -------------------------------------------------------------------------


def test_brief_error_messages(tmp_path: Path) -> None:
    errors = errors_of(
        write(
            tmp_path,
            """
[worker]
concurrency = 0
job_timeout = "five minutes"
concurency = 5
[wrker]
concurrency = 5
""",
        )
    )
    assert errors == [
        "worker.concurrency: must be an integer from 1 to 10000, got 0",
        "worker.job_timeout: invalid duration 'five minutes' (use e.g. 500ms, 10s, 30m, 1h, "
        "1d, 1w)",
        "unknown key 'worker.concurency' (did you mean 'worker.concurrency'?)",
        "unknown section 'wrker' (did you mean 'worker'?)",
    ]


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[daemon]
log_level = "loud"
[redis]
max_connections = 2
namespace = "a:b"
[worker]
lease = "2h"
""",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, {"FLEETD_WORKER_POLL_INTERVAL": "0s", "FLEETD_NOPE": "1"})
    assert len(info.value.errors) == 6
    for key in (
        "daemon.log_level",
        "redis.max_connections",
        "redis.namespace",
        "worker.lease",
        "FLEETD_WORKER_POLL_INTERVAL",
        "FLEETD_NOPE",
    ):
        assert key in str(info.value)


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[worker]\nconcurrency = 5\nlease = \n")
    errors = errors_of(path)
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}: invalid TOML: ")
    assert "line 3" in errors[0]


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        (
            '[worker]\nconcurrency = "5"',
            "worker.concurrency: must be an integer from 1 to 10000, got '5'",
        ),
        (
            "[worker]\nconcurrency = 5.0",
            "worker.concurrency: must be an integer from 1 to 10000, got 5.0",
        ),
        (
            "[worker]\nconcurrency = true",
            "worker.concurrency: must be an integer from 1 to 10000, got True",
        ),
        (
            "[worker]\njob_timeout = 300",
            "worker.job_timeout: must be a duration string (500ms, 10s, 30m, 1h, 1d, 1w), got 300",
        ),
        (
            '[daemon]\nroles = "worker"',
            "daemon.roles: must be a list of worker, scheduler, api, got 'worker'",
        ),
        ("[plugins]\ndisable = [1]", "plugins.disable: must be a list of strings, got [1]"),
        ("[daemon]\nname = 7", "daemon.name: must be a string, got 7"),
        (
            "[daemon]\nlog_level = 1",
            "daemon.log_level: must be one of debug, info, warning, error, got 1",
        ),
        ("worker = 5", "worker: must be a table ([worker]), got 5"),
        ("concurrency = 5", "unknown key 'concurrency' (keys belong in a [section])"),
    ],
)
def test_wrong_toml_types_are_not_coerced(tmp_path: Path, toml: str, error: str) -> None:
    assert one_error(tmp_path, toml) == error


@pytest.mark.parametrize(
    ("key", "good", "bad", "expected"),
    [
        ("worker.concurrency", ["1", "10000"], ["0", "10001"], "an integer from 1 to 10000"),
        ("worker.max_retries", ["0", "100"], ["-1", "101"], "an integer from 0 to 100"),
        ("redis.max_connections", ["4", "1024"], ["3", "1025"], "an integer from 4 to 1024"),
        (
            "redis.events_maxlen",
            ["1000", "100000000"],
            ["999", "100000001"],
            "an integer from 1000 to 100000000",
        ),
        (
            "daemon.heartbeat_interval",
            ['"100ms"', '"1m"'],
            ['"99ms"', '"1m1ms"'],
            "a duration from 100ms to 1m",
        ),
        (
            "worker.poll_interval",
            ['"10ms"', '"60s"'],
            ['"9ms"', '"61s"'],
            "a duration from 10ms to 1m",
        ),
        ("worker.lease", ['"1s"', '"1h"'], ['"999ms"', '"3601s"'], "a duration from 1s to 1h"),
        (
            "redis.reconnect_max_backoff",
            ['"100ms"', '"5m"'],
            ['"50ms"', '"6m"'],
            "a duration from 100ms to 5m",
        ),
        (
            "maintenance.interval",
            ['"50ms"', '"1m"'],
            ['"49ms"', '"2m"'],
            "a duration from 50ms to 1m",
        ),
        ("redis.connect_timeout", ['"1ms"'], ['"0s"'], "a duration greater than 0s"),
        ("worker.job_timeout", ['"1ms"', '"30d"'], ['"0ms"'], "a duration greater than 0s"),
        ("daemon.log_format", ['"json"'], ['"xml"'], "one of text, json"),
        (
            "http.audit_company_maxlen",
            ["100", "100000000"],
            ["99", "100000001"],
            "an integer from 100 to 100000000",
        ),
        (
            "http.audit_anonymous_maxlen",
            ["100", "100000000"],
            ["0", "100000001"],
            "an integer from 100 to 100000000",
        ),
    ],
)
def test_limits(tmp_path: Path, key: str, good: list[str], bad: list[str], expected: str) -> None:
    section, name = key.split(".")
    for value in good:
        load_config(write(tmp_path, f"[{section}]\n{name} = {value}"), {})
    for value in bad:
        raw = value.strip('"') if value.startswith('"') else int(value)
        assert one_error(tmp_path, f"[{section}]\n{name} = {value}") == (
            f"{key}: must be {expected}, got {raw!r}"
        )


def test_company_maxlen_is_off_or_at_least_one_stream_node(tmp_path: Path) -> None:
    for good in (0, 100, 10_000_000):
        cfg = load_config(write(tmp_path, f"[events]\ncompany_maxlen = {good}"), {})
        assert cfg.events.company_maxlen == good
    assert one_error(tmp_path, "[events]\ncompany_maxlen = 99").startswith(
        "events.company_maxlen: must be 0 (no company streams) or at least 100"
    )
    assert one_error(tmp_path, "[events]\ncompany_maxlen = -1").startswith(
        "events.company_maxlen: must be an integer from 0 to 10000000"
    )


@pytest.mark.parametrize(
    ("roles", "error"),
    [
        ("[]", "must list at least 1 item(s)"),
        ('["worker", "api", "worker"]', "duplicate item(s) worker"),
        ('["worker", "cron"]', "unknown item 'cron' (choose from worker, scheduler, api)"),
    ],
)
def test_roles(tmp_path: Path, roles: str, error: str) -> None:
    assert one_error(tmp_path, f"[daemon]\nroles = {roles}") == f"daemon.roles: {error}"


@pytest.mark.parametrize(
    "url",
    [
        "memory://",
        "redis://h:6379/0",
        "rediss://h",
        "unix:///r.sock",
        "redis+sentinel://s1:26379,s2:26379/mymaster/0",
        "redis+cluster://n1:6379,n2:6379",
    ],
)
def test_redis_url_schemes(tmp_path: Path, url: str) -> None:
    assert load_config(write(tmp_path, f'[redis]\nurl = "{url}"'), {}).redis.url == url


def test_redis_url_rejects_other_schemes(tmp_path: Path) -> None:
    assert one_error(tmp_path, '[redis]\nurl = "http://h"') == (
        "redis.url: must start with memory://, redis://, rediss://, unix://, redis+sentinel://, "
        "rediss+sentinel://, redis+cluster:// or rediss+cluster://, got 'http://h'"
    )


@pytest.mark.parametrize("good", ["main", "A-z_0.9", "x" * 64])
def test_namespace_accepts(tmp_path: Path, good: str) -> None:
    assert load_config(None, {"FLEETD_REDIS_NAMESPACE": good}).redis.namespace == good


@pytest.mark.parametrize("bad", ["", "a:b", "a{b}", "a b", "x" * 65, "caf\u00e9"])
def test_namespace_rejects(bad: str) -> None:
    [error] = errors_of(None, {"FLEETD_REDIS_NAMESPACE": bad})
    assert error.startswith("redis.namespace (from FLEETD_REDIS_NAMESPACE): must be 1 to 64")


@pytest.mark.parametrize("good", ["", "127.0.0.1:0", "localhost:6390", "[::1]:0"])
def test_memory_listen_accepts(good: str) -> None:
    assert load_config(None, {"FLEETD_REDIS_MEMORY_LISTEN": good}).redis.memory_listen == good


@pytest.mark.parametrize(
    "bad", ["localhost", ":0", "host:", "host:http", "host:65536", "unix:", "unix:/run/fleetd.sock"]
)
def test_memory_listen_rejects(bad: str) -> None:
    [error] = errors_of(None, {"FLEETD_REDIS_MEMORY_LISTEN": bad})
    assert "must be 'host:port' (port 0 picks a free one) or '' (disabled)" in error


def test_config_error_message_lists_all(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[worker]\nconcurrency = 0\nmax_stalls = 0\n"), {})
    assert str(info.value).splitlines() == [
        "invalid configuration:",
        "  worker.concurrency: must be an integer from 1 to 10000, got 0",
        "  worker.max_stalls: must be an integer from 1 to 100, got 0",
    ]


# --- state directory ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"STATE_DIRECTORY": "/var/lib/fleetd", "XDG_STATE_HOME": "/x"}, "/var/lib/fleetd"),
        ({"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}, "/var/lib/a"),
        ({"XDG_STATE_HOME": "/home/u/.state", "HOME": "/home/u"}, "/home/u/.state/fleetd"),
        ({"XDG_STATE_HOME": "relative", "HOME": "/home/u"}, "/home/u/.local/state/fleetd"),
        ({"STATE_DIRECTORY": "", "HOME": "/home/u"}, "/home/u/.local/state/fleetd"),
    ],
)
def test_state_dir_resolution(env: dict[str, str], expected: str) -> None:
    assert resolve_state_dir("", env) == Path(expected)
    assert load_config(None, env).state_dir == Path(expected)


def test_state_dir_configured_wins(tmp_path: Path) -> None:
    env = {"STATE_DIRECTORY": "/var/lib/fleetd", "FLEETD_DAEMON_STATE_DIR": str(tmp_path)}
    assert load_config(None, env).state_dir == tmp_path


def test_state_dir_follows_replace(tmp_path: Path) -> None:
    cfg = load_config(None, {"STATE_DIRECTORY": "/var/lib/fleetd"})
    moved = dataclasses.replace(
        cfg, daemon=dataclasses.replace(cfg.daemon, state_dir=str(tmp_path))
    )
    assert moved.state_dir == tmp_path
    assert cfg.state_dir == Path("/var/lib/fleetd")


# --- dumping ------------------------------------------------------------------------------


def test_dump_round_trips(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        {
            "FLEETD_WORKER_JOB_TIMEOUT": "1h30m15.5s",
            "FLEETD_WORKER_POLL_INTERVAL": "250ms",
            "FLEETD_DAEMON_ROLES": "api",
            "FLEETD_PLUGINS_DISABLE": "noop,email",
        },
    )
    assert config_to_dict(cfg)["worker"]["job_timeout"] == "1h30m15.5s"
    assert config_to_dict(cfg)["worker"]["poll_interval"] == "250ms"
    assert config_to_dict(cfg)["plugins"]["disable"] == ["noop", "email"]
    again = load_config(write(tmp_path, dump_toml(cfg)), {})
    assert again == cfg


def test_dump_default_parses_to_the_defaults() -> None:
    assert tomllib.loads(dump_toml(Config.default())) == DEFAULTS


def test_shown_config_masks_secrets() -> None:
    cfg = load_config(
        None,
        {"FLEETD_EMAIL_PASSWORD": "hunter2", "FLEETD_REDIS_URL": "redis://app:s3cret@db:6379/0"},
    )
    shown = dump_toml(cfg, redact=True)
    assert "hunter2" not in shown and "s3cret" not in shown
    assert 'password = "***"' in shown
    assert 'url = "redis://app:***@db:6379/0"' in shown
    # Unredacted, the document still round-trips.
    assert "hunter2" in dump_toml(cfg)


def test_events_and_encryption_keys_checked(tmp_path: Path) -> None:
    good = "k1:" + "A" * 43 + "="
    cfg = load_config(write(tmp_path, f'[encryption]\nkeys = ["{good}"]\n'), {})
    assert cfg.encryption.keys == (good,)
    assert "32 bytes" in one_error(tmp_path, '[encryption]\nkeys = ["k1:AAAA"]\n')
    assert "key_id:base64" in one_error(tmp_path, '[encryption]\nkeys = ["nokey"]\n')
    assert "base64" in one_error(tmp_path, '[encryption]\nkeys = ["k1:%%%"]\n')
    assert "origin" in one_error(tmp_path, '[http]\nallowed_origins = ["ftp://x"]\n')
    cfg = load_config(
        write(tmp_path, '[http]\nallowed_origins = ["https://ops.example.com"]\n'), {}
    )
    assert cfg.http.allowed_origins == ("https://ops.example.com",)
    assert "buffer" in one_error(tmp_path, "[events]\nbuffer = 1\n")
