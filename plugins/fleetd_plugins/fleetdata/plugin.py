"""The `fleetdata` plugin: fleetd's job types that work on FleetTracker's fleet data.

`report_generation`, `data_export`, `maintenance_reminder` and `data_cleanup` (the spec's
job types 2–5), all on one fleet database chosen by `[data] url` (source.py): SQLite by
default, PostgreSQL in production. Registered through the entry-point group
`fleetd.plugins` as `fleetdata`, like any third-party plugin, importing only fleetd's
public API; disable it (or one of its job types) in `[plugins] disable`.

Hooks: `fleetd_config_sections` declares `[data]` (config.py), the section this plugin
owns; `fleetd_handlers(config)` checks that the libraries of the `builtins` extra are
installed, builds the data source from the config (opening nothing: the first job
connects, creates missing tables and, for the embedded default, a demo fleet) and
returns the four handlers sharing it; `fleetd_default_schedules` returns the spec's
three recurring jobs; `fleetd_param_sources` names the list `companies` (every
company of the fleet database) for schedules fanning a template out. `fleetd
demo-data` (demo_cli.py) fills any configured database with a demo fleet.

Every command loads this module to read `[data]`, so it imports the handlers, the data
source and trio inside the hooks that need them (~50 ms of a CLI command's start-up,
bench/cli_startup.py).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from typing import TYPE_CHECKING, Any

from fleetd import Config, ConfigSection, ScheduleDefinition, hookimpl

from .config import SECTION, DataConfig

if TYPE_CHECKING:
    from fleetd import JobHandler

    from .source import FleetData

log = logging.getLogger("fleetd.fleetdata")

__all__ = [
    "DEFAULT_SCHEDULES",
    "check_libraries",
    "fleetd_config_sections",
    "fleetd_default_schedules",
    "fleetd_handlers",
    "fleetd_param_sources",
    "list_companies",
    "no_data_url",
    "open_source",
    "uses_demo",
]

# The libraries of the extra `fleetd[builtins]` this plugin imports when a job needs
# them (PostgreSQL, XLSX); checked at start-up so a missing one is not a job failure
# hours later. lxml is in the extra too, but openpyxl only runs faster with it.
LIBRARIES = ("psycopg", "openpyxl")
EXTRA = "builtins"

# The spec's default scheduled jobs: this plugin owns their job types, so it ships them
# (fleetd's scheduler creates each once per namespace). Platform-wide: no company.
DEFAULT_SCHEDULES: list[ScheduleDefinition] = [
    {
        "name": "Daily Data Cleanup",
        "job_type": "data_cleanup",
        "schedule": "@daily",
        "data": {"cleanup_type": "gps_tracks", "older_than_days": 90},
        "priority": 1,
    },
    {
        "name": "Weekly Maintenance Check",
        "job_type": "maintenance_reminder",
        "schedule": "@weekly",
        "data": {"maintenance_type": "routine_check"},
        "priority": 5,
    },
    {
        "name": "Monthly Fleet Report",
        "job_type": "report_generation",
        "schedule": "@monthly",
        "data": {"report_type": "fleet_summary"},
        "priority": 5,
    },
]


def uses_demo(config: Config) -> bool:
    """No `[data] url`, and the demo database is wanted: `memory://` (a trial run) or
    `[data] demo = true`."""
    data = config.section(DataConfig)
    return not data.url and (config.redis.url.startswith("memory://") or data.demo)


def no_data_url(config: Config) -> str | None:
    """Why the fleet-data job types refuse to run (None: they run). A real Redis means
    real jobs: made-up figures from a demo fleet would pass for the platform's."""
    if config.section(DataConfig).url or uses_demo(config):
        return None
    return (
        "no fleet database: set [data] url (or FLEETD_DATA_URL) to the platform's "
        "database, or [data] demo = true to run on the demo fleet"
    )


def open_source(config: Config) -> FleetData:
    """The fleet database of `[data] url`; without one, the embedded demo database
    (SQLite under the state directory) when `uses_demo`, else a source that refuses
    every job. Opens nothing yet."""
    from .source import FleetData, default_url  # start-up time (module docstring)

    data = config.section(DataConfig)
    if data.url:
        return FleetData(data.url)
    return FleetData(
        default_url(config.state_dir),
        embedded_default=True,
        demo_fleet=data.demo_fleet,
        refusal=no_data_url(config),
    )


def check_libraries() -> None:
    """PluginError naming the missing libraries and the extra that installs them.
    find_spec only looks: nothing is imported (psycopg alone takes ~0.1 s)."""
    if missing := [name for name in LIBRARIES if importlib.util.find_spec(name) is None]:
        from fleetd import PluginError

        raise PluginError(
            f"the fleetdata plugin needs {', '.join(missing)}, not installed: install "
            f"'fleetd[{EXTRA}]', or turn the plugin off with [plugins] disable = [\"fleetdata\"]"
        )


@hookimpl
def fleetd_config_sections() -> list[ConfigSection]:
    return [SECTION]


@hookimpl
def fleetd_handlers(config: Config) -> list[JobHandler]:
    from .cleanup import DataCleanupHandler  # start-up time (module docstring)
    from .exports import DataExportHandler
    from .reminders import MaintenanceReminderHandler
    from .reports import ReportGenerationHandler

    check_libraries()
    source = open_source(config)
    # Announced where a process has set up logging (the daemon); a CLI command, which
    # builds the handlers too, would print it on every call.
    if source.refusal is not None and logging.getLogger().handlers:
        log.warning("the fleet-data job types will fail: %s", source.refusal)
    return [
        ReportGenerationHandler(source, config),
        DataExportHandler(source, config),
        MaintenanceReminderHandler(source),
        DataCleanupHandler(source, config),
    ]


@hookimpl
def fleetd_default_schedules(config: Config) -> list[ScheduleDefinition]:
    return [ScheduleDefinition(**d) for d in DEFAULT_SCHEDULES]  # copies


@hookimpl
def fleetd_param_sources(config: Config) -> list[tuple[str, Any]]:
    """`companies`: every company of the fleet database, one parameter object each
    (`{"company_id", "company_name"}`), for a schedule's `for_each` — the Monthly Fleet
    Report as one report per company."""
    return [("companies", functools.partial(list_companies, config))]


def list_companies(config: Config) -> list[dict[str, Any]]:
    """The companies of `[data] url`, by name (one query; blocking)."""
    source = open_source(config)
    source.prepare_sync()
    db = source.connect()
    try:
        rows = db.all("SELECT id, name FROM companies ORDER BY name, id")
    finally:
        db.close()
    return [{"company_id": str(r["id"]), "company_name": r["name"]} for r in rows]
