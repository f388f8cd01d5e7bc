"""`noop`: the built-in diagnostic job type, always available unless disabled.

Returns `{"echo": data}` (redacted for a job enqueued with `"encrypt": true`: a result
is stored in plaintext, so the echo must not undo the sealing). Optional `sleep_ms`
sleeps that long (cancellably, so timeouts, cancels and graceful stops can be watched);
optional `fail_attempts` fails the first N attempts (to watch retries). Operators
smoke-test a deployment with it; the tests and benchmarks use it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from fleetd.jobs.contract import HandlerDefaults
from fleetd.jobs.model import ValidationError

if TYPE_CHECKING:
    from fleetd.jobs.context import JobContext

__all__ = ["NoopHandler"]

# An hour: longer sleeps are a typo, not a smoke test.
MAX_SLEEP_MS = 3_600_000


def _non_negative_int(data: dict[str, Any], name: str, limit: int) -> None:
    value = data.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise ValidationError(f"data.{name}", f"must be an integer from 0 to {limit}")


class NoopHandler:
    job_type = "noop"
    defaults = HandlerDefaults()

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        _non_negative_int(data, "sleep_ms", MAX_SLEEP_MS)
        _non_negative_int(data, "fail_attempts", 1000)
        return data

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        fail_attempts = data.get("fail_attempts", 0)
        sleep_ms = data.get("sleep_ms", 0)
        if sleep_ms:
            await trio.sleep(sleep_ms / 1000)
        if ctx.job.attempts <= fail_attempts:
            raise RuntimeError(
                f"noop: failing attempt {ctx.job.attempts} of {fail_attempts} on request"
            )
        # ctx.job.data is `data` itself for a plain job and its redacted form for a
        # sealed one.
        return {"echo": ctx.job.data}
