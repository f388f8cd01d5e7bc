"""`JobHooks`: the plugins' job-lifecycle hooks (`fleetd_job_started`, `_finished`,
`_failed`), resolved once at start-up and called by the worker on the trio thread.

Apart from discovery so that the handler registry, which carries them to the worker,
can name their type without depending on discovery (which builds the registry).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pluggy

__all__ = ["LIFECYCLE_HOOKS", "JobHooks"]

log = logging.getLogger("fleetd.plugins")

LIFECYCLE_HOOKS = ("fleetd_job_started", "fleetd_job_finished", "fleetd_job_failed")


_Impl = tuple[str, Callable[..., object], tuple[str, ...]]


class JobHooks:
    """The lifecycle hook implementations, resolved once at start-up.

    Each implementation is called on its own: one that raises is logged with its
    plugin's name, and the others still run.
    """

    def __init__(self, impls: dict[str, list[_Impl]]) -> None:
        self._started = impls.get("fleetd_job_started", [])
        self._finished = impls.get("fleetd_job_finished", [])
        self._failed = impls.get("fleetd_job_failed", [])
        self.wants_started = bool(self._started)
        self.wants_finished = bool(self._finished)
        self.wants_failed = bool(self._failed)

    @classmethod
    def build(cls, pm: pluggy.PluginManager) -> JobHooks | None:
        impls: dict[str, list[_Impl]] = {}
        for name in LIFECYCLE_HOOKS:
            # pluggy calls the last registered (or tryfirst) implementation first.
            found = reversed(getattr(pm.hook, name).get_hookimpls())
            impls[name] = [(i.plugin_name, i.function, tuple(i.argnames)) for i in found]
        return cls(impls) if any(impls.values()) else None

    @staticmethod
    def _call(hook: str, impls: list[_Impl], kwargs: dict[str, Any]) -> None:
        for plugin, function, argnames in impls:
            try:
                function(*[kwargs[a] for a in argnames])
            except Exception:
                log.exception("plugin %r: %s raised (ignored)", plugin, hook)

    def started(self, job: Any) -> None:
        if self._started:
            self._call("fleetd_job_started", self._started, {"job": job})

    def finished(self, job: Any, result: dict[str, Any]) -> None:
        if self._finished:
            self._call("fleetd_job_finished", self._finished, {"job": job, "result": result})

    def failed(self, job: Any, error: str, will_retry: bool) -> None:
        if self._failed:
            kwargs = {"job": job, "error": error, "will_retry": will_retry}
            self._call("fleetd_job_failed", self._failed, kwargs)
