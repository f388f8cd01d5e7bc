"""`Config`: the whole configuration of one process, typed and frozen.

Owns:
- `Config`: one field per core section (fleetd.config.sections) and the sections the
  loaded plugins declared (`plugin_sections`, by name), plus where it was read from.
  A plugin reads its own section typed, `config.section(EmailConfig)`; a Config built
  without that section (the plugin disabled, or a Config made in code) answers the
  section's defaults. `with_section()` is `dataclasses.replace` for a plugin section.
- `Config.default()`: every key at its default, the installed plugins' sections
  included (their entry points are loaded, which imports no heavy library);
- `resolve_state_dir()`: where `[daemon] state_dir = ""` points.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fleetd.config.api_sections import AuthConfig, EventsConfig, HttpConfig
from fleetd.config.capacity_section import CapacityConfig
from fleetd.config.isolation_section import IsolationConfig
from fleetd.config.limit_sections import LimitsConfig
from fleetd.config.notify_rules import NotifyRule
from fleetd.config.plugin_sections import declared_sections
from fleetd.config.queue_section import QueuesConfig
from fleetd.config.sections import (
    CORE_SECTIONS,
    AlertsConfig,
    ArtifactsConfig,
    DaemonConfig,
    EncryptionConfig,
    MaintenanceConfig,
    PluginsConfig,
    RedisConfig,
    SchedulerConfig,
    WorkerConfig,
)
from fleetd.config.spool_section import SpoolConfig

__all__ = ["APP_DIR", "Config", "SectionMap", "resolve_state_dir"]

APP_DIR = "fleetd"
S = TypeVar("S")


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


class SectionMap(Mapping[str, Any]):
    """The plugin sections of a Config by name: read-only, and (unlike a
    MappingProxyType) picklable and copyable with the Config."""

    def __init__(self, sections: Mapping[str, Any]) -> None:
        self._sections = dict(sections)

    def __getitem__(self, name: str) -> Any:
        return self._sections[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sections)

    def __len__(self) -> int:
        return len(self._sections)

    def __repr__(self) -> str:
        return repr(self._sections)


@dataclass(frozen=True)
class Config:
    """The whole configuration. `source` is the file it was read from, if any."""

    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    queues: QueuesConfig = field(default_factory=QueuesConfig)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    artifacts: ArtifactsConfig = field(default_factory=ArtifactsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    capacity: CapacityConfig = field(default_factory=CapacityConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    encryption: EncryptionConfig = field(default_factory=EncryptionConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    isolation: IsolationConfig = field(default_factory=IsolationConfig)
    notify: tuple[NotifyRule, ...] = ()  # the [[notify]] rules (fleetd.config.notify_rules)
    # The loaded plugins' sections by name (hook fleetd_config_sections), read-only.
    # Compared, not hashed: a mapping has no hash.
    plugin_sections: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # Not settings, so not compared: equal settings are equal wherever they came from.
    source: Path | None = field(default=None, compare=False)
    # Where daemon.state_dir = "" points, resolved from the environment the config was
    # loaded with (a test's mapping), not from os.environ at each access.
    state_dir_fallback: Path = field(
        default_factory=lambda: resolve_state_dir(""), repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for name in self.plugin_sections:
            if name in CORE_SECTIONS:
                raise ValueError(f"[{name}] is a core section, not a plugin's")
        # A read-only copy: the Config stays frozen all the way down.
        object.__setattr__(self, "plugin_sections", SectionMap(self.plugin_sections))

    @classmethod
    def default(cls) -> Config:
        """Every key at its default, the installed plugins' sections included: no file,
        no environment overrides, no plugin disabled."""
        declared = declared_sections()
        return cls(plugin_sections={n: s.schema() for n, s in declared.sections.items()})

    @property
    def state_dir(self) -> Path:
        """The resolved state directory (follows a dataclasses.replace of daemon)."""
        if self.daemon.state_dir:
            return resolve_state_dir(self.daemon.state_dir)
        return self.state_dir_fallback

    def section(self, schema: type[S]) -> S:
        """The plugin section whose dataclass is `schema`, e.g.
        `config.section(EmailConfig)`; its defaults when this Config has none."""
        for value in self.plugin_sections.values():
            if type(value) is schema:
                found: S = value
                return found
        return schema()

    def with_section(self, value: object) -> Config:
        """A copy with the plugin section of `value`'s type replaced by `value`, e.g.
        `cfg.with_section(dataclasses.replace(cfg.section(EmailConfig), port=2525))`."""
        for name, old in self.plugin_sections.items():
            if type(old) is type(value):
                sections = {**self.plugin_sections, name: value}
                return dataclasses.replace(self, plugin_sections=sections)
        raise KeyError(f"this Config has no plugin section of type {type(value).__name__}")

    def all_sections(self) -> dict[str, Any]:
        """Every section by name: the core ones in fleetd.toml's order, then the
        plugins'."""
        core = {name: getattr(self, name) for name in CORE_SECTIONS}
        return core | dict(self.plugin_sections)
