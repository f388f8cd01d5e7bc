"""Each company's share of the admin API's requests in flight: `CompanyShares`.

Admission control (fleetd.api.admission) bounds the requests in flight of a daemon,
`[http] max_in_flight`, before authentication. Without more, one company's burst of
slow requests could hold every slot, and every other company's requests would answer
503 `overloaded`. Once a request is authenticated, a company-bound token's company may
hold at most `[http] company_share` of those slots (at least one); past it, that
company's request answers 429 `overloaded` with Retry-After at once — its slot comes
back before any work is done — while other companies and platform tokens still get in.
The slot is given back when the request ends (Quart's teardown, error or not).

State lives on the trio thread (no lock), like the admission counter.
"""

from __future__ import annotations

from quart import Response, g

from fleetd.api.admission import RETRY_AFTER
from fleetd.api.errors import ApiError, error_response
from fleetd.runtime.shares import Shares

__all__ = ["CompanyShares"]


class CompanyShares:
    def __init__(self, max_in_flight: int, share: float) -> None:
        self.shares = Shares(max_in_flight, share)

    def take(self, company: str | None) -> Response | None:
        """Count this request against `company` (None: a platform token, not counted);
        the 429 answer when the company holds its share already."""
        if company is None:
            return None
        if not self.shares.take(company):
            most = self.shares.most
            message = (
                f"company {company!r} has {most} requests in flight on this daemon "
                f"already ([http] company_share); retry after {RETRY_AFTER}s"
            )
            details = {"company_id": company, "max_in_flight": most, "retry_after": RETRY_AFTER}
            headers = {"Retry-After": str(RETRY_AFTER)}
            return error_response(ApiError(429, "overloaded", message, details, headers))
        g.share_of = company
        return None

    def give(self) -> None:
        """The request ends: its company's slot comes back."""
        company = g.pop("share_of", None)
        if company is not None:
            self.shares.give(company)
