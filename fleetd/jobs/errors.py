"""The errors of the handler contract, apart from the handlers and the registry so that
anything may raise or catch them without importing either.

- `PermanentError`: raised by a handler (or by the worker on its behalf, e.g. when its
  artifacts cannot be merged into its result): fail the job now, no retries.
- `InvalidHandler`: an object offered as a handler breaks the contract.
- `DuplicateJobType`: two sources claim one job type (a start-up error).
- `NotReplicated`: jobs stored on the primary but not confirmed by `[redis]
  wait_replicas` replicas within `wait_timeout` (a failover could lose them).
- `QuotaExceeded`: an enqueue refused by a company's quota ([limits]); nothing stored.
"""

from __future__ import annotations

__all__ = [
    "DuplicateJobType", "InvalidHandler", "NotReplicated", "PermanentError", "QuotaExceeded",
]  # fmt: skip


class PermanentError(Exception):
    """Raised by a handler: this job can never succeed; fail it now, no retries."""


class InvalidHandler(Exception):
    """An object offered as a handler breaks the contract (the message says how)."""


class DuplicateJobType(Exception):
    """Two sources claim one job type: a start-up error naming both."""


class QuotaExceeded(Exception):
    """A company's quota ([limits] company_max_pending, company_enqueue_rate,
    company_max_schedules) refused an enqueue (none of its jobs in that call were stored)
    or a schedule's creation. `retry_after` in seconds."""

    def __init__(self, company_id: str, quota: str, limit: int, retry_after: float) -> None:
        what = {
            "pending": f"at most {limit} jobs waiting",
            "rate": f"at most {limit} jobs enqueued per window",
            "schedules": f"at most {limit} schedules",
        }.get(quota, quota)
        then = "delete one first" if quota == "schedules" else "retry later"
        super().__init__(f"company {company_id!r} is over its quota ({what}); {then}")
        self.company_id = company_id
        self.quota = quota
        self.limit = limit
        self.retry_after = retry_after
        # Every company refused by the call (the message names the first), and each
        # one's (company, quota, limit, retry_after): see `of`.
        self.companies = [company_id]
        self.refusals = [(company_id, quota, limit, retry_after)]

    def of(self, company_id: str) -> QuotaExceeded:
        """The refusal of `company_id` alone. One call may refuse several companies (the
        API batches concurrent requests of many) and its error names the first: an
        answer to one company must name no other. KeyError if it was not refused."""
        for company, quota, limit, retry_after in self.refusals:
            if company == company_id:
                return QuotaExceeded(company, quota, limit, retry_after)
        raise KeyError(company_id)


class NotReplicated(Exception):
    """An enqueue written to the primary that fewer than `[redis] wait_replicas` replicas
    confirmed within `wait_timeout`: the jobs exist, but a failover now could lose them.
    Retrying with the same idempotency key is safe."""

    def __init__(self, acked: int, wanted: int) -> None:
        super().__init__(
            f"stored on the primary, but only {acked} of {wanted} replica(s) confirmed it in "
            "time; retry with the same idempotency key"
        )
        self.acked = acked
        self.wanted = wanted
