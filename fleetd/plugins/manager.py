"""`PluginManager`: pluggy's manager for project "fleetd", plus what this process loaded
(`PluginInfo` per plugin, blocked plugins, the checked default schedules and their
owners). Filled by fleetd.plugins.discovery; the handler registry keeps it for
listings (`fleetd plugins`, GET types) and the scheduler's default schedules.

It does not hold the registry (discovery passes the registry where it is needed), so
the registry can name this type without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pluggy

from fleetd.config import Config
from fleetd.plugins import hookspecs

__all__ = ["PluginInfo", "PluginManager"]


@dataclass
class PluginInfo:
    """One loaded plugin, as `fleetd plugins` shows it."""

    name: str
    module: str
    distribution: str
    version: str
    source: str  # "core", or "entry point <group>: <name> = <value>"
    hooks: list[str] = field(default_factory=list)
    job_types: list[str] = field(default_factory=list)


class PluginManager(pluggy.PluginManager):
    """pluggy's manager for project "fleetd", plus what this process loaded."""

    def __init__(self, config: Config) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.config = config
        self.infos: dict[str, PluginInfo] = {}
        self.blocked_plugins: list[str] = []
        self.schedules: list[dict[str, Any]] = []
        self.schedule_owners: dict[str, str] = {}  # schedule name -> plugin name
        # Named parameter lists for schedules' for_each (fleetd_param_sources).
        self.param_sources: dict[str, Any] = {}
