"""fleetd: the background-job daemon of FleetTracker Pro.

The public API: what plugins, embedding applications and tests may import. Everything
else is internal and may change without notice. Plugin authors need `hookimpl`,
`JobHandler` (or the `Handler` shape), `HandlerDefaults`, `JobContext`,
`PermanentError`, `ValidationError`/`FieldError`, `ConfigSection` and `setting` for
their config section, and `fleetd.testing` for their tests;
see docs/PLUGINS.md.
"""

from fleetd.backend.scripts import ClaimedJob
from fleetd.config import Config, ConfigError, ConfigSection, load_config, setting
from fleetd.jobs.artifacts import Artifact, ArtifactStore
from fleetd.jobs.context import JobContext
from fleetd.jobs.contract import Handler, HandlerDefaults, JobHandler
from fleetd.jobs.errors import DuplicateJobType, InvalidHandler, PermanentError
from fleetd.jobs.handlers import HandlerRegistry
from fleetd.jobs.model import EnqueueRequest, FieldError, Job, JobStatus, Priority, ValidationError
from fleetd.jobs.queue import JobPage, Queue
from fleetd.jobs.receipts import EnqueueResult
from fleetd.plugins.discovery import PluginError
from fleetd.plugins.hookspecs import ScheduleDefinition, hookimpl
from fleetd.schedules.cadence import MisfirePolicy
from fleetd.schedules.model import ScheduledJob, ScheduleSpec
from fleetd.schedules.store import ScheduleConflict, ScheduleNotFound, Schedules
from fleetd.version import __version__

__all__ = [
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
    "InvalidHandler",
    "Job",
    "JobContext",
    "JobHandler",
    "JobPage",
    "JobStatus",
    "MisfirePolicy",
    "PermanentError",
    "PluginError",
    "Priority",
    "Queue",
    "ScheduleConflict",
    "ScheduleDefinition",
    "ScheduleNotFound",
    "ScheduleSpec",
    "ScheduledJob",
    "Schedules",
    "ValidationError",
    "__version__",
    "hookimpl",
    "load_config",
    "setting",
]
