"""`load_config()`: find, read and validate the config file and its overrides.

Owns file discovery (a path, $FLEETD_CONFIG, ./fleetd.toml, /etc/fleetd/fleetd.toml or
none), TOML reading, the `FLEETD_<SECTION>_<KEY>` environment overrides and the
validation of the whole — the core sections and those the installed plugins declare
(fleetd.config.plugin_sections) alike: every error of the file, the environment and the
plugins' declarations is collected and raised as one `ConfigError`, each naming its key.

The order of the work: the core sections first (they say which plugins are disabled
and where extra plugin wheels are), then the plugins' sections, then what nobody
claims (unknown sections and variables).

`lazy_plugins=True` (the CLI's commands that run no plugin code: `stats`, `jobs`, ...)
asks the plugins only when the file or the environment names something no core section
owns (a table, a FLEETD_ variable): a config of core sections alone is then validated
without loading any plugin (~45 ms of the command's start-up, bench/cli_startup.py),
and its Config has no plugin sections, so `Config.section()` answers their defaults,
the values a full load gives them. What is then not checked: the plugins' own
declarations, which `fleetd plugins` and every command that runs plugins report.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fleetd.config.model import Config, resolve_state_dir
from fleetd.config.notify_rules import parse_rules
from fleetd.config.plugin_sections import PluginSections, check_sections, declared_sections
from fleetd.config.sections import CORE_SECTIONS, PluginsConfig
from fleetd.config.settings import ConfigError, ConfigSection, convert, section_keys
from fleetd.config.tables import build_tables

__all__ = ["ENV_CONFIG_PATH", "ENV_PREFIX", "ENV_TOKEN", "SEARCH_PATHS", "load_config"]

ENV_PREFIX = "FLEETD_"
ENV_CONFIG_PATH = "FLEETD_CONFIG"  # reserved: the config file's path, not a key
ENV_TOKEN = "FLEETD_TOKEN"  # reserved: the API token `fleetd events` sends, not a key
# Tried in order when neither a path nor FLEETD_CONFIG is given: the working directory
# first (a checkout, a container's workdir), then the packaged location.
SEARCH_PATHS = (Path("fleetd.toml"), Path("/etc/fleetd/fleetd.toml"))


def _unknown(what: str, name: str, known: Iterable[str]) -> str:
    # A typo is the usual cause: name the nearest spelling (difflib's default 0.6 cutoff).
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"unknown {what} {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def env_var(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section}_{key}".upper()


def _build_section(
    name: str, cls: type[Any], data: Mapping[str, Any], env: Mapping[str, str], errors: list[str]
) -> Any:
    """Section `name` of the file, overlaid with the environment, as an instance of its
    dataclass `cls`; each problem is appended to `errors`."""
    if not isinstance(table := data.get(name, {}), dict):
        errors.append(f"{name}: must be a table ([{name}]), got {table!r}")
        table = {}
    keys = section_keys(cls)
    values: dict[str, Any] = {}
    for key, (kind, meta) in keys.items():
        sources = [(f"{name}.{key}", table[key], False)] if key in table else []
        if (var := env_var(name, key)) in env:  # last, so the environment wins
            sources.append((f"{name}.{key} (from {var})", env[var], True))
        for label, raw, from_env in sources:
            if kind == "tables":  # [[name.key]]: every table's problems, each named
                values[meta["field"]], problems = build_tables(label, meta, raw, from_env)
                errors.extend(problems)
                continue
            value, error = convert(kind, meta, raw, from_env)
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
    except RecursionError:  # arrays or inline tables nested thousands deep
        errors.append(f"{path}: invalid TOML: nested too deeply")
    except ValueError as exc:  # an integer of more digits than int() converts
        errors.append(f"{path}: invalid TOML: {exc}")
    return {}


def _find_file(path: str | Path | None, env: Mapping[str, str]) -> Path | None:
    explicit = path if path is not None else env.get(ENV_CONFIG_PATH) or None
    if explicit is None:
        return next((p for p in SEARCH_PATHS if p.is_file()), None)
    if not Path(explicit).is_file():
        raise ConfigError([f"config file not found: {explicit}"])
    return Path(explicit)


def _core_only(data: Mapping[str, Any], env: Mapping[str, str]) -> bool:
    """True when the file's tables and the FLEETD_ variables are all the core
    sections' (or `[[notify]]`): nothing a plugin could own."""
    tables = set(CORE_SECTIONS) | {"notify"}
    core_vars = {ENV_CONFIG_PATH, ENV_TOKEN} | {
        env_var(name, key) for name, cls in CORE_SECTIONS.items() for key in section_keys(cls)
    }
    return all(name in tables for name in data) and all(
        var in core_vars for var in env if var.startswith(ENV_PREFIX)
    )


def _unclaimed(
    data: Mapping[str, Any], env: Mapping[str, str], declared: PluginSections
) -> tuple[list[str], list[str]]:
    """(errors of unknown environment variables, errors of unknown sections)."""
    schemas = CORE_SECTIONS | {n: s.schema for n, s in declared.sections.items()}
    known_vars = {ENV_CONFIG_PATH, ENV_TOKEN} | {
        env_var(name, key) for name, cls in schemas.items() for key in section_keys(cls)
    }
    # A disabled plugin's section is not checked, its variables neither.
    tolerated = tuple(env_var(name, "") for name in declared.tolerated)
    env_errors = [
        _unknown("environment variable", var, known_vars)
        for var in sorted(env)
        if var.startswith(ENV_PREFIX) and var not in known_vars and not var.startswith(tolerated)
    ]
    # A plugin that failed to import may own the section: say so (the registry, which
    # loads plugins next, would name the failure, but these errors stop start-up first).
    hint = (
        f" (plugin(s) {', '.join(map(repr, declared.unloadable))} failed to load: "
        "`fleetd plugins` says why)"
        if declared.unloadable
        else ""
    )
    section_errors = []
    for name, value in data.items():
        if name in schemas or name in declared.tolerated or name == "notify":  # [[notify]]
            continue
        if isinstance(value, dict):
            section_errors.append(_unknown("section", name, schemas) + hint)
        else:
            section_errors.append(f"unknown key {name!r} (keys belong in a [section])")
    return env_errors, section_errors


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    sections: Iterable[ConfigSection] | None = None,
    lazy_plugins: bool = False,
) -> Config:
    """Read the config file (`path`, $FLEETD_CONFIG, ./fleetd.toml, /etc/fleetd/fleetd.toml
    or none), overlay FLEETD_<SECTION>_<KEY> from `env` (default os.environ), validate.

    `sections`: the plugin sections to check; None (the default) asks the installed
    plugins that `[plugins] disable` does not name (hook `fleetd_config_sections`).
    `lazy_plugins`: ask them only if the file or `env` names a non-core section (see
    the module docstring). Raises ConfigError listing every problem of the file and the
    environment at once.
    """
    env = os.environ if env is None else env
    source = _find_file(path, env)
    errors: list[str] = []
    data = _read_toml(source, errors) if source else {}
    core = {
        name: _build_section(name, cls, data, env, errors) for name, cls in CORE_SECTIONS.items()
    }
    plugins: PluginsConfig = core["plugins"]
    if sections is None and lazy_plugins and _core_only(data, env):
        declared = PluginSections()
    elif sections is None:
        declared = declared_sections(plugins.disable, plugins.directory)
    else:
        declared = check_sections(("(given)", s) for s in sections)
    extra = {
        name: _build_section(name, section.schema, data, env, errors)
        for name, section in declared.sections.items()
    }
    notify = parse_rules(data.get("notify"), errors)
    env_errors, section_errors = _unclaimed(data, env, declared)
    errors = env_errors + errors + section_errors + declared.errors
    if errors:
        raise ConfigError(errors)
    return Config(
        **core,
        plugin_sections=extra,
        notify=notify,
        source=source,
        state_dir_fallback=resolve_state_dir("", env),
    )
