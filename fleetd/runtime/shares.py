"""One company's share of a bounded resource of this daemon: `Shares`.

The admin API's requests in flight (fleetd.api.shares) and the events WebSocket's
sessions (fleetd.runtime.events.EventHub) each let a company-bound token's company hold
at most `share` of their bound (at least one), so that no company fills what every
company needs. State lives on the trio thread (no lock).
"""

from __future__ import annotations

from collections import Counter

__all__ = ["Shares"]


class Shares:
    def __init__(self, total: int, share: float) -> None:
        self.most = max(1, int(total * share))
        self._held: Counter[str] = Counter()

    def take(self, company: str) -> bool:
        """Count one more for `company`; False (nothing counted) when it holds its share."""
        if self._held[company] >= self.most:
            return False
        self._held[company] += 1
        return True

    def give(self, company: str) -> None:
        self._held[company] -= 1
        if self._held[company] <= 0:
            del self._held[company]
