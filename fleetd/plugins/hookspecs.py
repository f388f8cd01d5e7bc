"""Every hook a fleetd plugin can implement, in one place (pluggy project "fleetd").

A plugin is a module (or object) registered under the entry-point group
`fleetd.plugins`; it implements hooks with the `fleetd.hookimpl` marker:

    from fleetd import hookimpl

    @hookimpl
    def fleetd_handlers(config):
        return [MyHandler()]

Hooks are synchronous and declarative: they *return* things (handler objects, schedule
definitions) and fleetd awaits the handlers. An implementation may accept fewer
arguments than its spec names (pluggy passes only those it asks for). None of these
hooks is `firstresult` or `historic`: every plugin's answer counts, and all plugins are
registered before any hook is called.

Themes: configuration (`fleetd_config_sections`), called whenever the config is loaded
— by every command, before anything else, so it must only declare; registration
(`fleetd_handlers`, `fleetd_default_schedules`), called at start-up by every process
that builds the registry (daemon and CLI alike); and the job
lifecycle (`fleetd_job_started`, `fleetd_job_finished`, `fleetd_job_failed`), called by
the worker on the trio thread. Lifecycle hooks must be quick and must not block (no
network or disk I/O: hand such work to a job of its own); one that raises is logged
with its plugin's name and never breaks the worker or other plugins' hooks. They do not
support pluggy wrappers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import pluggy

if TYPE_CHECKING:
    from fleetd.backend.scripts import ClaimedJob
    from fleetd.config import Config, ConfigSection
    from fleetd.jobs.contract import Handler

__all__ = ["ENTRY_POINT_GROUP", "PROJECT", "ScheduleDefinition", "hookimpl", "hookspec"]

PROJECT = "fleetd"
# Where installed packages (the built-in plugins included) register their plugins.
ENTRY_POINT_GROUP = "fleetd.plugins"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class ScheduleDefinition(TypedDict):
    """A default schedule a plugin ships (the spec's ScheduledJob, minus bookkeeping).

    name: unique across all plugins, the schedule's identity (re-deploying upserts it,
    never duplicates it); job_type: a job type some loaded plugin handles; data: the
    job's data, checked against that type's schema at start-up; schedule: "@daily",
    "30m", a cron expression… (parsed by the scheduler); priority: 1-20 or a name
    (default 5); timezone: an IANA name such as "Europe/Berlin" (default "UTC").
    """

    name: str
    job_type: str
    schedule: str
    data: NotRequired[dict[str, Any]]
    priority: NotRequired[int | str]
    timezone: NotRequired[str]


# -- configuration ---------------------------------------------------------------------


@hookspec
def fleetd_config_sections() -> list[ConfigSection]:
    """Return the config sections this plugin owns (e.g. `[email]`).

    Called when the config is loaded, before `fleetd_handlers`, by every command: it must
    only declare (no I/O, no heavy imports). Each section's keys are checked with the
    core sections', every error reported at once; they are overridden from the
    environment as FLEETD_<SECTION>_<KEY> and shown by `fleetd config show`. The plugin
    reads its values from the loaded config: `config.section(MyConfig)`. The section of
    a plugin disabled in `[plugins] disable` is accepted without being checked.

    :return: a list of `fleetd.ConfigSection(name, schema)`: `name` is the TOML table
        (not a core section's, not another plugin's), `schema` a frozen dataclass whose
        fields are all `fleetd.setting(default, help, ...)`, as fleetd's own sections.
    """
    raise NotImplementedError  # pragma: no cover - a spec, never called


# -- registration ----------------------------------------------------------------------


@hookspec
def fleetd_handlers(config: Config) -> list[Handler]:
    """Return the handlers this plugin provides (objects, not classes).

    :param config: the process's configuration (read a plugin's settings from it).
    :return: a list of handler objects (see `fleetd.JobHandler`); each job type may be
        claimed by one plugin only: a second claim stops start-up naming both plugins.
    """
    raise NotImplementedError  # pragma: no cover - a spec, never called


@hookspec
def fleetd_default_schedules(config: Config) -> list[ScheduleDefinition]:
    """Return the recurring jobs this plugin wants by default (spec: daily clean-up,
    weekly maintenance check, monthly fleet report).

    :param config: the process's configuration.
    :return: a list of `ScheduleDefinition` dicts. fleetd checks them at start-up
        (unique names, a known job type, data valid for it) and the scheduler upserts
        them by name. A schedule whose job type is disabled is dropped.
    """
    raise NotImplementedError  # pragma: no cover - a spec, never called


@hookspec
def fleetd_param_sources(config: Config) -> list[tuple[str, Any]]:
    """Return named parameter lists a schedule's `for_each` may name (a schedule that
    runs a template once per element: docs/WORKFLOWS.md), e.g. every company.

    :param config: the process's configuration.
    :return: a list of (name, function) pairs: the function takes no argument and
        returns a list of parameter objects (dicts); it is called when such a schedule
        fires, in the scheduler's Redis hop, so it should be quick. Names are unique
        across plugins.
    """
    raise NotImplementedError  # pragma: no cover - a spec, never called


# -- job lifecycle ---------------------------------------------------------------------


@hookspec
def fleetd_job_started(job: ClaimedJob) -> None:
    """A job's handler is about to run (every attempt).

    :param job: the claimed job: id, type, data, attempts, company_id, user_id, tags.
    """


@hookspec
def fleetd_job_finished(job: ClaimedJob, result: dict[str, Any]) -> None:
    """A job completed, after its completion was recorded in Redis.

    :param job: the claimed job.
    :param result: the job's result as stored (artifacts included).
    """


@hookspec
def fleetd_job_failed(job: ClaimedJob, error: str, will_retry: bool) -> None:
    """An attempt failed (an exception, a time-out or a PermanentError), after the
    failure was recorded in Redis. Cancelled jobs and jobs handed back at shutdown do
    not count.

    :param job: the claimed job (`job.attempts` is the attempt that failed).
    :param error: the error text stored on the job, e.g. "TimeoutError: ...".
    :param will_retry: True when the job was scheduled for another attempt; False when
        it is now `failed` for good.
    """
