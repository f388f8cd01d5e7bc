"""fleetd: the background-job daemon of FleetTracker Pro.

The public API: what plugins, embedding applications and tests may import. Everything
else is internal and may change without notice.
"""

from fleetd.config import Config, ConfigError, load_config
from fleetd.context import JobContext
from fleetd.handlers import Handler, HandlerDefaults, HandlerRegistry, PermanentError
from fleetd.model import EnqueueRequest, Job, JobStatus, Priority, ValidationError
from fleetd.queue import EnqueueResult, JobPage, Queue

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "EnqueueRequest",
    "EnqueueResult",
    "Handler",
    "HandlerDefaults",
    "HandlerRegistry",
    "Job",
    "JobContext",
    "JobPage",
    "JobStatus",
    "PermanentError",
    "Priority",
    "Queue",
    "ValidationError",
    "__version__",
    "load_config",
]
