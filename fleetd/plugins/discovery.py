"""Plugin discovery and the handler registry built from it.

Owns, for every process that knows job types (the daemon and the CLI alike, through
`fleetd.engine.build_registry`):
- discovery: the core plugin (`noop`) plus every entry point of the group
  `fleetd.plugins`, built-ins (`fleetd_plugins`, shipped inside the fleetd distribution)
  and third-party packages alike, loaded with pluggy one by one so that a failure
  names its plugin;
- `[plugins] disable`: a name there blocks the plugin of that (entry-point) name, or
  skips the job type of that name, whichever it is;
- start-up errors, each one line naming the culprit (`PluginError`, `DuplicateJobType`):
  a plugin that fails to import, breaks the hook contract, returns something that is
  not a handler, claims a job type another plugin claims, or ships a bad schedule;
- `JobHooks` (fleetd.plugins.lifecycle): the lifecycle hooks, resolved once and kept on
  the registry; None when no plugin implements one;
- the `PluginManager` (fleetd.plugins.manager) holding what was loaded;
- `default_schedules(pm)`: the checked default schedules (for the scheduler);
- `describe(pm)`: what `fleetd plugins` prints.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fleetd.config import Config, WorkerConfig
from fleetd.jobs.artifact_limits import ArtifactLimits
from fleetd.jobs.artifacts import artifacts_root
from fleetd.jobs.contract import Handler, allows_sync_fallback
from fleetd.jobs.errors import InvalidHandler
from fleetd.jobs.handlers import HandlerRegistry
from fleetd.jobs.model import ValidationError, parse_priority
from fleetd.plugins.hookspecs import ENTRY_POINT_GROUP, hookimpl
from fleetd.plugins.lifecycle import JobHooks
from fleetd.plugins.manager import PluginInfo, PluginManager
from fleetd.plugins.noop import NoopHandler
from fleetd.version import __version__

__all__ = [
    "ENTRY_POINT_GROUP",
    "JobHooks",
    "PluginError",
    "PluginInfo",
    "PluginManager",
    "attach_output",
    "build_registry",
    "default_schedules",
    "describe",
    "describe_type",
]

log = logging.getLogger("fleetd.plugins")


CORE_PLUGIN = "noop"
_SCHEDULE_KEYS = frozenset({"name", "job_type", "data", "schedule", "priority", "timezone"})


class PluginError(Exception):
    """A plugin cannot be loaded or breaks the contract; the message names it."""


class _CorePlugin:
    """fleetd's own job types, registered like any plugin (blockable as `noop`)."""

    @hookimpl
    def fleetd_handlers(self) -> list[Handler]:
        return [NoopHandler()]


# -- discovery -------------------------------------------------------------------------


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """The group's entry points by name; one name offered by two packages is an error
    (pluggy would silently take whichever it met first)."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        other = found.get(ep.name)
        if other is not None and other.value != ep.value:
            raise PluginError(
                f"plugin name {ep.name!r} is registered twice: {other.value} "
                f"({_dist_name(other)}) and {ep.value} ({_dist_name(ep)}); uninstall one"
            )
        found[ep.name] = ep
    return dict(sorted(found.items()))


def _one_line(exc: BaseException) -> str:
    """Start-up errors are printed as one line; some exceptions span several."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _dist_name(ep: importlib.metadata.EntryPoint) -> str:
    return ep.dist.metadata["Name"] if ep.dist is not None else "?"


def _check_plugin(pm: PluginManager, name: str, plugin: object) -> None:
    """Mistakes pluggy lets pass: a hook function without the marker is ignored, and a
    wrapper would break the per-plugin calls fleetd makes."""
    for attr in dir(plugin):
        if not attr.startswith("fleetd_") or not hasattr(pm.hook, attr):
            continue
        if pm.parse_hookimpl_opts(plugin, attr) is None and callable(getattr(plugin, attr)):
            raise PluginError(f"plugin {name!r}: {attr} is not marked with @fleetd.hookimpl")
    for caller in pm.get_hookcallers(plugin) or []:
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and (impl.wrapper or impl.hookwrapper):
                raise PluginError(f"plugin {name!r}: {caller.name} cannot be a wrapper")


def _load_entry_points(pm: PluginManager) -> None:
    for name, ep in _entry_points().items():
        if pm.is_blocked(name):
            pm.blocked_plugins.append(name)
            continue
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
            pm.check_pending()
        except Exception as exc:
            raise PluginError(
                f"plugin {name!r} ({ep.value}, from {_dist_name(ep)}) failed to load: "
                f"{type(exc).__name__}: {_one_line(exc)}"
            ) from None
        plugin = pm.get_plugin(name)
        _check_plugin(pm, name, plugin)
        dist = ep.dist
        pm.infos[name] = PluginInfo(
            name=name,
            module=ep.module,
            distribution=dist.metadata["Name"] if dist is not None else "",
            version=dist.version if dist is not None else "",
            source=f"entry point {ENTRY_POINT_GROUP}: {name} = {ep.value}",
        )


def _hook_results(pm: PluginManager, hook: str) -> Iterator[tuple[str, list[Any]]]:
    """(plugin name, its answer) for each implementation, in registration order; an
    implementation that raises or answers something other than a list is named."""
    kwargs = {"config": pm.config}
    for impl in getattr(pm.hook, hook).get_hookimpls():
        try:
            answer = impl.function(*[kwargs[a] for a in impl.argnames])
        except Exception as exc:
            raise PluginError(
                f"plugin {impl.plugin_name!r}: {hook} raised {type(exc).__name__}: {_one_line(exc)}"
            ) from None
        if answer is None:
            continue
        if not isinstance(answer, list | tuple):
            raise PluginError(
                f"plugin {impl.plugin_name!r}: {hook} must return a list, "
                f"got {type(answer).__name__}"
            )
        yield impl.plugin_name, list(answer)


def build_plugin_manager(cfg: Config) -> PluginManager:
    """Register the core plugin and every entry point not blocked by [plugins] disable."""
    pm = PluginManager(cfg)
    for name in cfg.plugins.disable:
        pm.set_blocked(name)
    if pm.is_blocked(CORE_PLUGIN):
        pm.blocked_plugins.append(CORE_PLUGIN)
    else:
        pm.register(_CorePlugin(), name=CORE_PLUGIN)
        pm.infos[CORE_PLUGIN] = PluginInfo(
            CORE_PLUGIN, "fleetd.plugins.noop", "fleetd", __version__, "core"
        )
    _load_entry_points(pm)
    for name, info in pm.infos.items():
        plugin = pm.get_plugin(name)
        info.hooks = sorted(c.name for c in pm.get_hookcallers(plugin) or [])
    return pm


def attach_output(registry: HandlerRegistry, cfg: Config) -> None:
    """Where handlers' files go and how much they and their results may hold, from the
    config (`[artifacts]`, `[worker] max_result_bytes`): build_registry's, and
    fleetd.testing.Harness's, so a plugin's tests meet the worker's limits."""
    registry.artifacts_dir = artifacts_root(cfg)
    a = cfg.artifacts
    registry.artifact_limits = ArtifactLimits(a.job_max_bytes, a.min_free_bytes)
    registry.max_result_bytes = cfg.worker.max_result_bytes


def build_registry(cfg: Config) -> HandlerRegistry:
    """The job types this process knows, from the core plugin and every installed
    plugin not disabled; raises PluginError or DuplicateJobType naming the culprit."""
    pm = build_plugin_manager(cfg)
    registry = HandlerRegistry(disabled=cfg.plugins.disable)
    for plugin, handlers in _hook_results(pm, "fleetd_handlers"):
        for handler in handlers:
            try:
                registry.register(handler, source=plugin)
            except InvalidHandler as exc:
                raise PluginError(f"plugin {plugin!r}: {exc}") from None
            if handler.job_type in registry:
                pm.infos[plugin].job_types.append(handler.job_type)
    registry.hooks = JobHooks.build(pm)
    attach_output(registry, cfg)
    registry.plugins = pm
    pm.schedules = _check_schedules(pm, registry)
    pm.param_sources = _check_sources(pm)
    known = set(pm.infos) | set(pm.blocked_plugins) | set(registry.types())
    known |= {job_type for job_type, _ in registry.skipped}
    for name in cfg.plugins.disable:
        if name not in known:
            log.warning("[plugins] disable: %r names no installed plugin or job type", name)
    return registry


# -- default schedules -----------------------------------------------------------------


def _schedule(
    pm: PluginManager, registry: HandlerRegistry, plugin: str, raw: object
) -> dict[str, Any] | None:
    """One checked schedule definition, or None when its job type is disabled."""
    if not isinstance(raw, dict):
        raise PluginError(f"plugin {plugin!r}: a default schedule must be a dict, got {raw!r}")
    name = raw.get("name")
    what = f"plugin {plugin!r}: default schedule {name!r}"
    if not isinstance(name, str) or not name.strip():
        raise PluginError(f"{what}: 'name' must be a non-empty string")
    if unknown := sorted(raw.keys() - _SCHEDULE_KEYS):
        raise PluginError(f"{what}: unknown key(s) {', '.join(unknown)}")
    for key in ("job_type", "schedule"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise PluginError(f"{what}: {key!r} must be a non-empty string")
    job_type = raw["job_type"]
    handler = registry.get(job_type)
    if handler is None:
        # Disabled by job type, or possibly the job type of a disabled plugin (whose
        # job types are unknown, since it was never loaded): drop it, say so.
        if any(job_type == t for t, _ in registry.skipped) or pm.blocked_plugins:
            log.info("%s: job type %r is not loaded; schedule dropped", what, job_type)
            return None
        raise PluginError(f"{what}: unknown job type {job_type!r}")
    data = raw.get("data", {})
    if not isinstance(data, dict):
        raise PluginError(f"{what}: 'data' must be a dict")
    try:
        data = registry.validate(handler, dict(data))
        priority = parse_priority(raw.get("priority", 5))
    except ValidationError as exc:
        raise PluginError(f"{what}: {exc}") from None
    tz = raw.get("timezone", "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise PluginError(f"{what}: unknown timezone {tz!r}") from None
    return {
        "name": name,
        "job_type": job_type,
        "data": data,
        "schedule": raw["schedule"],
        "priority": priority,
        "timezone": tz,
    }


def _check_schedules(pm: PluginManager, registry: HandlerRegistry) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    owners = pm.schedule_owners
    for plugin, items in _hook_results(pm, "fleetd_default_schedules"):
        for raw in items:
            checked = _schedule(pm, registry, plugin, raw)
            if checked is None:
                continue
            name = checked["name"]
            if name in owners:
                raise PluginError(
                    f"default schedule {name!r} is defined by both {owners[name]!r} and {plugin!r}"
                )
            owners[name] = plugin
            out.append(checked)
    return out


def _check_sources(pm: PluginManager) -> dict[str, Any]:
    """The plugins' named parameter lists: (name, function) pairs, names unique."""
    sources: dict[str, Any] = {}
    for plugin, items in _hook_results(pm, "fleetd_param_sources"):
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                    and callable(item[1])):  # fmt: skip
                raise PluginError(
                    f"plugin {plugin!r}: fleetd_param_sources must return (name, function) pairs"
                )
            if item[0] in sources:
                raise PluginError(f"plugin {plugin!r}: parameter list {item[0]!r} is taken")
            sources[item[0]] = item[1]
    return sources


def default_schedules(pm: PluginManager) -> list[dict[str, Any]]:
    """The default schedules of the loaded plugins, checked at start-up: dicts with
    exactly name, job_type, data, schedule, priority (int) and timezone."""
    return [dict(s, data=dict(s["data"])) for s in pm.schedules]


# -- listing ---------------------------------------------------------------------------


def describe_type(registry: HandlerRegistry, job_type: str, worker: WorkerConfig) -> dict[str, Any]:
    """One job type as listings show it: description, schema and effective defaults
    (the handler's, else the `[worker]` ones)."""
    handler = registry.require(job_type)
    d = handler.defaults
    return {
        "type": job_type,
        "description": str(getattr(handler, "description", "") or ""),
        "defaults": {
            "priority": d.priority or 5,
            "max_retries": worker.max_retries if d.max_retries is None else d.max_retries,
            "timeout": d.timeout or worker.job_timeout,
            "sync_fallback": allows_sync_fallback(handler),
        },
        "schema": registry.schema(job_type),
    }


def describe(registry: HandlerRegistry) -> dict[str, Any]:
    """The body of `fleetd plugins --json`: plugins, their job types (schema and
    effective defaults), and what [plugins] disable turned off."""
    pm = registry.plugins
    assert pm is not None, "describe() needs a registry from build_registry()"
    w = pm.config.worker
    plugins = []
    for info in pm.infos.values():
        job_types = [describe_type(registry, t, w) for t in info.job_types]
        plugins.append(
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "module": info.module,
                "source": info.source,
                "hooks": info.hooks,
                "job_types": job_types,
                "schedules": [n for n, p in pm.schedule_owners.items() if p == info.name],
            }
        )
    disabled = [{"name": n, "kind": "plugin"} for n in pm.blocked_plugins]
    disabled += [{"name": t, "kind": "job_type", "plugin": p} for t, p in registry.skipped]
    return {"plugins": plugins, "disabled": disabled}
