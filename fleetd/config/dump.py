"""The config as TOML spells it, for `fleetd config show` and round trips.

Owns `config_to_dict()` (every setting of every section, core and plugin, by section:
durations as "30s", lists as lists), `redacted()` (secret keys and passwords inside
URLs masked) and `dump_toml()` (the `[[notify]]` rules too, `notify_rule()`), whose
unredacted output load_config reads back to an equal Config.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import tomli_w

from fleetd.config.durations import format_duration
from fleetd.config.model import Config
from fleetd.config.notify_rules import NotifyRule
from fleetd.config.settings import section_keys
from fleetd.config.tables import tables_to_toml

__all__ = ["config_to_dict", "dump_toml", "redacted"]


def _as_toml(kind: str, value: Any) -> Any:
    if kind == "duration":
        return format_duration(value)
    if kind == "tables":
        return tables_to_toml(value)
    return list(value) if kind == "list" else value


def config_to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """Every setting by section as TOML spells it: durations as "30s", lists as lists."""
    return {
        name: {
            key: _as_toml(kind, getattr(section, meta["field"]))
            for key, (kind, meta) in section_keys(type(section)).items()
        }
        for name, section in cfg.all_sections().items()
    }


def _mask_url(url: str) -> str:
    """`redis://user:secret@host` → `redis://user:***@host`."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}:***@{host}" if colon else url


def redacted(cfg: Config, values: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """config_to_dict(cfg)'s output with secrets masked: secret keys as "***" when set,
    and passwords inside URLs."""
    out = {name: dict(section) for name, section in values.items()}
    for name, section in cfg.all_sections().items():
        for key, (_kind, meta) in section_keys(type(section)).items():
            value = out[name].get(key)
            if meta.get("secret") and value:
                out[name][key] = "***"
            elif isinstance(value, str) and "://" in value:
                out[name][key] = _mask_url(value)
    return out


def dump_toml(cfg: Config, *, redact: bool = False) -> str:
    """The settings as a TOML document that load_config reads back to an equal Config
    (with `redact`, secrets are masked and the document is for reading only)."""
    values: dict[str, Any] = config_to_dict(cfg)
    if redact:
        values = redacted(cfg, values)
    if cfg.notify:
        values["notify"] = [notify_rule(rule, redact=redact) for rule in cfg.notify]
    return tomli_w.dumps(values)


def notify_rule(rule: NotifyRule, *, redact: bool = False) -> dict[str, Any]:
    """One `[[notify]]` table as the file spells it (keys at their default left out)."""
    out: dict[str, Any] = {}
    for key, value in dataclasses.asdict(rule).items():
        if value in ("", ()) or (key == "retries_at_least" and "job.retried" not in rule.on):
            continue
        out[key] = list(value) if isinstance(value, tuple) else value
    if redact and "webhook_secret" in out:
        out["webhook_secret"] = "***"
    if redact and "webhook_url" in out:
        out["webhook_url"] = _mask_url(out["webhook_url"])
    return out
