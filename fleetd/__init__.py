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
from fleetd.jobs.handlers import (
    DuplicateJobType,
    Handler,
    HandlerDefaults,
    HandlerRegistry,
    InvalidHandler,
    JobHandler,
    PermanentError,
)
from fleetd.jobs.model import EnqueueRequest, FieldError, Job, JobStatus, Priority, ValidationError
from fleetd.jobs.queue import EnqueueResult, JobPage, Queue
from fleetd.plugins.discovery import PluginError
from fleetd.plugins.hookspecs import ScheduleDefinition, hookimpl
from fleetd.schedules.cadence import MisfirePolicy
from fleetd.schedules.model import ScheduledJob, ScheduleSpec
from fleetd.schedules.store import ScheduleConflict, ScheduleNotFound, Schedules

__version__ = "0.1.0"

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
