"""The errors of the handler contract, apart from the handlers and the registry so that
anything may raise or catch them without importing either.

- `PermanentError`: raised by a handler (or by the worker on its behalf, e.g. when its
  artifacts cannot be merged into its result): fail the job now, no retries.
- `InvalidHandler`: an object offered as a handler breaks the contract.
- `DuplicateJobType`: two sources claim one job type (a start-up error).
"""

from __future__ import annotations

__all__ = ["DuplicateJobType", "InvalidHandler", "PermanentError"]


class PermanentError(Exception):
    """Raised by a handler: this job can never succeed; fail it now, no retries."""


class InvalidHandler(Exception):
    """An object offered as a handler breaks the contract (the message says how)."""


class DuplicateJobType(Exception):
    """Two sources claim one job type: a start-up error naming both."""
