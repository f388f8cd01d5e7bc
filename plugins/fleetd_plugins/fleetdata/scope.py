"""Company scoping: every query of a job with a company_id sees only that company.

`Scope.of(job company_id)` checks the id (ids are UUIDs in the fleet database; a job
whose company_id is not one can never match, so it fails at once as a PermanentError
instead of being retried) and renders the filter: `scope.where("t")` is
` AND t.company_id = :company_id`, or "" for a job without a company (a platform-wide
job such as the default schedules: it spans every company). Pure logic.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fleetd import PermanentError

__all__ = ["Scope"]


@dataclass(frozen=True, slots=True)
class Scope:
    company_id: str | None

    @classmethod
    def of(cls, company_id: str | None) -> Scope:
        if company_id is None:
            return cls(None)
        try:
            return cls(str(uuid.UUID(company_id)))
        except ValueError:
            raise PermanentError(
                f"company_id {company_id!r} is not a UUID: no fleet data belongs to it"
            ) from None

    def where(self, alias: str) -> str:
        """A filter to append after a WHERE clause (empty without a company)."""
        return "" if self.company_id is None else f" AND {alias}.company_id = :company_id"

    def params(self, **more: Any) -> dict[str, Any]:
        return {"company_id": self.company_id, **more}

    def label(self) -> str:
        return self.company_id or "all-companies"
