"""How much disk a job's artifacts may take: `[artifacts] job_max_bytes` and
`min_free_bytes`.

Owns `ArtifactLimits` (the two settings, picklable: a sandboxed attempt gets them with
its call), `Allowance` (one attempt's count of the bytes its artifacts hold, shared by
the writers of that attempt, which run in worker threads) and the two refusals:

- `ArtifactTooLarge` (a PermanentError): the attempt's artifacts would pass
  `job_max_bytes`. The same input would pass it again, so the job fails at once.
- `ArtifactDiskFull` (an OSError, errno ENOSPC): writing would leave less than
  `min_free_bytes` free on the artifacts' file system. Space comes back (retention,
  cleanup, the operator), so the job is retried as after any other failure.

The free space is read (statvfs) at an artifact's first write and again after each
`FREE_CHECK_BYTES` written, so a writer can pass the reserve by less than that much;
the reserve keeps the daemon's own files (spool, audit spool) and anything else on
that file system writable when one job — or one company's jobs — would fill it.
"""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from fleetd.jobs.errors import PermanentError

__all__ = [
    "FREE_CHECK_BYTES",
    "Allowance",
    "ArtifactDiskFull",
    "ArtifactLimits",
    "ArtifactTooLarge",
    "free_bytes",
]

# Bytes a writer writes between two reads of the free space (one statvfs, ~1 µs).
FREE_CHECK_BYTES = 1 << 20


class ArtifactTooLarge(PermanentError):
    """The attempt's artifacts would hold more than `[artifacts] job_max_bytes`."""


class ArtifactDiskFull(OSError):
    """Writing would leave less than `[artifacts] min_free_bytes` free."""


@dataclass(frozen=True, slots=True)
class ArtifactLimits:
    """`[artifacts] job_max_bytes` and `min_free_bytes`; 0 = no limit."""

    job_max_bytes: int = 0
    min_free_bytes: int = 0


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding `path`."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class Allowance:
    """The bytes one attempt's artifacts hold: those recorded, plus those being written.
    `take` before writing a chunk, `give_back` for a file discarded or replaced."""

    def __init__(self, limits: ArtifactLimits) -> None:
        self.limits = limits
        self.held = 0
        self._lock = threading.Lock()

    def take(self, name: str, n: int) -> None:
        with self._lock:
            cap = self.limits.job_max_bytes
            if cap and self.held + n > cap:
                raise ArtifactTooLarge(
                    f"artifact {name!r}: the job's artifacts would hold more than "
                    f"[artifacts] job_max_bytes ({cap:,} bytes)"
                )
            self.held += n

    def give_back(self, n: int) -> None:
        with self._lock:
            self.held -= n

    def check_free(self, name: str, folder: Path, n: int) -> None:
        """Refuse `n` more bytes in `folder` if they would leave less than the reserve."""
        reserve = self.limits.min_free_bytes
        if reserve and free_bytes(folder) - n < reserve:
            raise ArtifactDiskFull(
                errno.ENOSPC,
                f"artifact {name!r}: writing it would leave less than [artifacts] "
                f"min_free_bytes ({reserve:,} bytes) free on the artifacts' file system",
            )
