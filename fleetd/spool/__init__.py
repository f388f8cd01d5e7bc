"""The durable local spool of enqueues made while Redis is away (docs/OPERATIONS.md,
"What happens during a Redis outage").

`file` (the SQLite file, its caps, setting aside a corrupted one), `replay` (one
replay pass, exactly once), `outage` (the CLI's and client's enqueue-or-spool),
`service` (the daemon's spool: diverting the API's enqueues, the replayer).
"""

from fleetd.spool.file import SPOOL_FILE, JobSpool, SpooledJob, SpoolError, SpoolFull
from fleetd.spool.outage import SPOOLED, enqueue_or_spool, spooled_results
from fleetd.spool.replay import ReplayPass, replay_all, replay_pass

__all__ = [
    "SPOOLED",
    "SPOOL_FILE",
    "JobSpool",
    "ReplayPass",
    "SpoolError",
    "SpoolFull",
    "SpooledJob",
    "enqueue_or_spool",
    "replay_all",
    "replay_pass",
    "spooled_results",
]
