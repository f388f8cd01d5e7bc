"""The config sections plugins declare, found when the config is loaded.

Owns `declared_sections()`: every entry point of the group `fleetd.plugins` (the same
plugins fleetd.plugins.discovery registers later) is loaded and its
`fleetd_config_sections` hook asked which sections it owns, so that the config file is
validated as a whole — core and plugin sections, every error at once — before any
plugin runs. Loading an entry point imports the plugin's module only: plugins import
their heavy libraries (database drivers, spreadsheet writers) when a job first needs
them, so every CLI command stays quick to start.

Rules it applies:
- a plugin disabled in `[plugins] disable` is not asked to check anything: its module
  is imported only to learn its sections' names, and those sections are accepted
  without being checked (the plugin will not run, so its settings have no effect). If
  it cannot even be imported, a section named like the plugin is accepted;
- a plugin that fails to import is skipped here (its sections are then unknown): the
  registry reports the failure, naming the plugin, when it loads plugins;
- a declaration that breaks the contract (not a ConfigSection, a bad schema, a name
  taken by a core section or another plugin) is a config error naming the plugin;
- `[plugins] directory`: its wheels go on the import path first (as `fleetd run` does),
  so their plugins' sections are known too.

importlib.metadata, pluggy and the hook specifications are imported by
`declared_sections` only: with the entry-point scan they are ~45 ms of a CLI command's
start-up, which a config of core sections alone does without (fleetd.config.loader,
`lazy_plugins`; bench/cli_startup.py). These imports close no cycle
(tests/test_architecture.py checks).
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fleetd.config.sections import CORE_SECTIONS
from fleetd.config.settings import ConfigSection, section_problems

if TYPE_CHECKING:
    import pluggy

__all__ = ["PluginSections", "add_plugin_wheels", "check_sections", "declared_sections"]

HOOK = "fleetd_config_sections"


@dataclass
class PluginSections:
    """What the installed plugins declare, as load_config needs it."""

    sections: dict[str, ConfigSection] = field(default_factory=dict)  # checked, by name
    owners: dict[str, str] = field(default_factory=dict)  # section name -> plugin name
    tolerated: set[str] = field(default_factory=set)  # disabled plugins' section names
    errors: list[str] = field(default_factory=list)  # broken declarations, one line each
    unloadable: list[str] = field(default_factory=list)  # plugins that failed to import


def add_plugin_wheels(directory: str) -> None:
    """Each *.whl of [plugins] directory onto the import path, in name order: a wheel is
    a zip, so a pure-Python one imports as it is and importlib.metadata finds its entry
    points (what the one-file binary, which has no pip, uses for extra plugins)."""
    if directory:
        wheels = sorted(str(p) for p in Path(directory).expanduser().glob("*.whl"))
        sys.path[:0] = [w for w in wheels if w not in sys.path]


def check_sections(declared: Iterable[tuple[str, object]]) -> PluginSections:
    """(plugin name, declared section) pairs checked: contract, names unique."""
    out = PluginSections()
    for plugin, section in declared:
        if problems := section_problems(section):
            out.errors += [f"plugin {plugin!r}: {HOOK}: {p}" for p in problems]
            continue
        assert isinstance(section, ConfigSection)  # section_problems checked it
        name = section.name
        if name in CORE_SECTIONS:
            out.errors.append(f"plugin {plugin!r}: [{name}] is a core section of fleetd")
        elif name in out.owners:
            out.errors.append(
                f"section [{name}] is declared by both {out.owners[name]!r} and {plugin!r}"
            )
        else:
            out.sections[name] = section
            out.owners[name] = plugin
    return out


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: " + "; ".join(
        line.strip() for line in str(exc).splitlines() if line.strip()
    )


def _answers(pm: pluggy.PluginManager) -> tuple[list[tuple[str, object]], list[str]]:
    """(plugin, section) for each section the registered plugins declare, and the
    errors of implementations that raise or do not answer a list."""
    pairs: list[tuple[str, object]] = []
    errors: list[str] = []
    for impl in getattr(pm.hook, HOOK).get_hookimpls():
        try:
            answer = impl.function()
        except Exception as exc:
            errors.append(f"plugin {impl.plugin_name!r}: {HOOK} raised {_one_line(exc)}")
            continue
        if not isinstance(answer, list | tuple):
            errors.append(f"plugin {impl.plugin_name!r}: {HOOK} must return a list")
            continue
        pairs += [(impl.plugin_name, section) for section in answer]
    return pairs, errors


def declared_sections(disable: Collection[str] = (), directory: str = "") -> PluginSections:
    """The sections of every installed plugin: checked for the enabled ones, names
    only for those `disable` names (see the module's rules)."""
    import importlib.metadata

    import pluggy

    from fleetd.plugins import hookspecs

    add_plugin_wheels(directory)
    enabled = pluggy.PluginManager(hookspecs.PROJECT)
    enabled.add_hookspecs(hookspecs)
    disabled = pluggy.PluginManager(hookspecs.PROJECT)
    disabled.add_hookspecs(hookspecs)
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)}
    unloadable: list[str] = []
    for name, ep in sorted(eps.items()):
        pm = disabled if name in disable else enabled
        try:
            pm.register(ep.load(), name=name)
        except Exception:
            unloadable.append(name)
    pairs, errors = _answers(enabled)
    out = check_sections(pairs)
    out.errors += errors
    out.unloadable = [n for n in unloadable if n not in disable]
    off_pairs, _ = _answers(disabled)  # a disabled plugin's mistakes are not reported
    out.tolerated = {s.name for _, s in off_pairs if isinstance(s, ConfigSection)}
    out.tolerated |= {n for n in unloadable if n in disable}
    out.tolerated -= set(out.sections) | set(CORE_SECTIONS)
    return out
