"""Single-use tickets for the events WebSocket (browsers cannot set an Authorization
header on a WebSocket handshake, and a JWT in a URL ends up in proxy logs).

Owns `issue()` — `POST /api/v1/admin/jobs/events/ticket` mints a random ticket for the
caller's token — and `redeem()` — the handshake's `?ticket=`. A ticket is stored in
Redis (`Keys.ws_ticket`) with a TTL of `[events] ticket_ttl` (never past the token's own
exp) and redeemed with GETDEL, so it works once, on any daemon behind a load balancer.
It carries the token's subject, company and exp: the socket it opens closes when the
token it came from expires.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass

from fleetd.api.auth import Principal, unauthorized
from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.jobs.model import format_ts

__all__ = ["Ticket", "issue", "redeem"]

# 32 random bytes: 43 URL-safe characters, unguessable within any TTL.
TICKET_BYTES = 32
_SHAPE = re.compile(r"[A-Za-z0-9_-]{20,128}")


@dataclass(frozen=True, slots=True)
class Ticket:
    value: str
    expires_ms: int

    def body(self) -> dict[str, str | None]:
        return {"ticket": self.value, "expires_at": format_ts(self.expires_ms)}


def issue(client: SyncClient, keys: Keys, who: Principal, token_exp: float, ttl: float) -> Ticket:
    """A new ticket for `who`, valid `ttl` seconds or until the token expires."""
    now = time.time()
    life_ms = int(min(ttl, token_exp - now) * 1000)
    if life_ms <= 0:
        raise unauthorized("token expired")
    value = secrets.token_urlsafe(TICKET_BYTES)
    record = {"sub": who.subject, "company_id": who.company_id, "exp": token_exp}
    client.set(keys.ws_ticket(value), json.dumps(record), px=life_ms)
    return Ticket(value, int(now * 1000) + life_ms)


def redeem(client: SyncClient, keys: Keys, value: str) -> tuple[Principal, float]:
    """(who, token exp) of a ticket, which no one can redeem again; 401 if it is unknown,
    used, expired, or its token has expired since."""
    if not _SHAPE.fullmatch(value):
        raise unauthorized("malformed ticket")
    raw = client.getdel(keys.ws_ticket(value))
    if raw is None:
        raise unauthorized("ticket is unknown, expired or already used")
    record = json.loads(raw)
    exp = float(record["exp"])
    if exp <= time.time():
        raise unauthorized("token expired")
    return Principal(subject=str(record["sub"]), company_id=record.get("company_id")), exp
