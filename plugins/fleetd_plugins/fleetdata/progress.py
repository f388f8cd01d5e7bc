"""Progress of long jobs (exports, clean-up): `ctx.progress` at a bounded rate.

Each update is a Redis call and a `job.progress` event; one per batch of a
million-row export would be 200 events in seconds, so updates closer than `EVERY`
seconds are dropped (the last one, 100 %, always goes out). When the daemon lost the
job (its lease was taken over), the handler stops at once: another daemon runs it.
"""

from __future__ import annotations

import trio

from fleetd import JobContext

__all__ = ["JobLost", "Progress"]

# At most two progress events per second per job: enough for a live progress bar.
EVERY = 0.5


class JobLost(Exception):
    """This daemon no longer holds the job; another one runs it now."""


class Progress:
    def __init__(self, ctx: JobContext, total: int | None) -> None:
        self.ctx = ctx
        self.total = total
        self._last = -EVERY

    async def update(self, done: int, message: str, *, final: bool = False) -> None:
        now = trio.current_time()
        if not final and now - self._last < EVERY:
            return
        self._last = now
        pct = 100.0 if final else (100.0 * done / self.total if self.total else 0.0)
        if not await self.ctx.progress(min(pct, 99.9) if not final else pct, message):
            raise JobLost(f"job {self.ctx.job.id} was taken over by another daemon; stopping")
