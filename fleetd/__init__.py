"""fleetd: the background-job daemon of FleetTracker Pro.

The public API: what plugins, embedding applications and tests may import. Everything
else is internal and may change without notice. Plugin authors need `hookimpl`,
`JobHandler` (or the `Handler` shape), `HandlerDefaults`, `JobContext`,
`PermanentError`, `RetryAfter`, `ValidationError`/`FieldError`, `ConfigSection` and `setting` for
their config section, and `fleetd.testing` for their tests;
see docs/PLUGINS.md.

The names load on first use (PEP 562 `__getattr__`): `import fleetd` alone costs ~1 ms,
not the ~390 ms of importing every module behind the public API (pydantic, redis,
jsonschema, trio, ...), which every `fleetd` command paid before its own work
(`fleetd --version` and `--help` need none of it; bench/cli_startup.py measures).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fleetd.version import __version__

if TYPE_CHECKING:
    from fleetd.backend.scripts import ClaimedJob
    from fleetd.config import Config, ConfigError, ConfigSection, load_config, setting
    from fleetd.config.notify_rules import NotifyRule
    from fleetd.jobs.artifacts import Artifact, ArtifactStore
    from fleetd.jobs.context import JobContext
    from fleetd.jobs.contract import Handler, HandlerDefaults, JobHandler
    from fleetd.jobs.errors import (
        DuplicateJobType,
        InvalidHandler,
        NotReplicated,
        PermanentError,
        QuotaExceeded,
    )
    from fleetd.jobs.handlers import HandlerRegistry
    from fleetd.jobs.isolation import RetryAfter
    from fleetd.jobs.local_context import IsolationError
    from fleetd.jobs.model import (
        EnqueueRequest,
        FieldError,
        Job,
        JobStatus,
        Priority,
        ValidationError,
    )
    from fleetd.jobs.queue import JobPage, Queue
    from fleetd.jobs.receipts import EnqueueResult
    from fleetd.notify.webhook import SIGNATURE_HEADER
    from fleetd.plugins.discovery import PluginError
    from fleetd.plugins.hookspecs import ScheduleDefinition, hookimpl
    from fleetd.schedules.cadence import MisfirePolicy
    from fleetd.schedules.model import ScheduledJob, ScheduleSpec
    from fleetd.schedules.store import ScheduleConflict, ScheduleNotFound, Schedules
    from fleetd.spool.outage import SPOOLED

# Public name -> the module that defines it (what the imports above say, for run time).
_EXPORTS = {
    "ClaimedJob": "fleetd.backend.scripts",
    "Config": "fleetd.config",
    "ConfigError": "fleetd.config",
    "ConfigSection": "fleetd.config",
    "load_config": "fleetd.config",
    "setting": "fleetd.config",
    "Artifact": "fleetd.jobs.artifacts",
    "ArtifactStore": "fleetd.jobs.artifacts",
    "JobContext": "fleetd.jobs.context",
    "Handler": "fleetd.jobs.contract",
    "HandlerDefaults": "fleetd.jobs.contract",
    "JobHandler": "fleetd.jobs.contract",
    "DuplicateJobType": "fleetd.jobs.errors",
    "InvalidHandler": "fleetd.jobs.errors",
    "PermanentError": "fleetd.jobs.errors",
    "QuotaExceeded": "fleetd.jobs.errors",
    "NotReplicated": "fleetd.jobs.errors",
    "HandlerRegistry": "fleetd.jobs.handlers",
    "RetryAfter": "fleetd.jobs.isolation",
    "IsolationError": "fleetd.jobs.local_context",
    "EnqueueRequest": "fleetd.jobs.model",
    "FieldError": "fleetd.jobs.model",
    "Job": "fleetd.jobs.model",
    "JobStatus": "fleetd.jobs.model",
    "Priority": "fleetd.jobs.model",
    "ValidationError": "fleetd.jobs.model",
    "JobPage": "fleetd.jobs.queue",
    "Queue": "fleetd.jobs.queue",
    "EnqueueResult": "fleetd.jobs.receipts",
    "PluginError": "fleetd.plugins.discovery",
    "InlineResult": "fleetd.runtime.inline",
    "ScheduleDefinition": "fleetd.plugins.hookspecs",
    "hookimpl": "fleetd.plugins.hookspecs",
    "MisfirePolicy": "fleetd.schedules.cadence",
    "ScheduledJob": "fleetd.schedules.model",
    "ScheduleSpec": "fleetd.schedules.model",
    "ScheduleConflict": "fleetd.schedules.store",
    "ScheduleNotFound": "fleetd.schedules.store",
    "Schedules": "fleetd.schedules.store",
    "TemplateOps": "fleetd.templates.store",
    "TemplateRun": "fleetd.templates.store",
    "TemplateSpec": "fleetd.templates.model",
    "WorkflowAnswer": "fleetd.workflows.answer",
    "WorkflowSubmitted": "fleetd.workflows.answer",
    "WorkflowNode": "fleetd.workflows.spec",
    "WorkflowRequest": "fleetd.workflows.spec",
    "WorkflowOps": "fleetd.workflows.store",
    "SPOOLED": "fleetd.spool.outage",
    "SIGNATURE_HEADER": "fleetd.notify.webhook",
    "NotifyRule": "fleetd.config.notify_rules",
}

__all__ = [
    "SIGNATURE_HEADER",
    "SPOOLED",
    "Artifact",
    "ArtifactStore",
    "ClaimedJob",
    "Config",
    "ConfigError",
    "ConfigSection",
    "DuplicateJobType",
    "EnqueueRequest",
    "EnqueueResult",
    "FieldError",
    "Handler",
    "HandlerDefaults",
    "HandlerRegistry",
    "InlineResult",
    "InvalidHandler",
    "IsolationError",
    "Job",
    "JobContext",
    "JobHandler",
    "JobPage",
    "JobStatus",
    "MisfirePolicy",
    "NotReplicated",
    "NotifyRule",
    "PermanentError",
    "PluginError",
    "Priority",
    "Queue",
    "QuotaExceeded",
    "RetryAfter",
    "ScheduleConflict",
    "ScheduleDefinition",
    "ScheduleNotFound",
    "ScheduleSpec",
    "ScheduledJob",
    "Schedules",
    "TemplateOps",
    "TemplateRun",
    "TemplateSpec",
    "ValidationError",
    "WorkflowAnswer",
    "WorkflowNode",
    "WorkflowOps",
    "WorkflowRequest",
    "WorkflowSubmitted",
    "__version__",
    "hookimpl",
    "load_config",
    "setting",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fleetd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is an ordinary global
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
