"""Quarantines: a part of the ready queue (one job type of one company) held because its
attempts keep exhausting their limits, crashing their process, timing out or stalling
their daemon (a lease reaped by reap.lua, which counts it as kind `STALL` itself).

Owns the counted kinds (`COUNTED`), the settings (`Strikes`, from `[isolation]
quarantine_after` / `quarantine_window`), the typed calls of the two scripts and the
readings built on the `quarantines` hash:

- `count_failures`: the worker pool's outcome writer (fleetd.runtime.outcomes) sends
  each written batch's classified failures to quarantine_count.lua, which keeps a
  sliding log per part and quarantines the part at the `after`th failure within the
  window — atomically, so the count is exact however many daemons fail its jobs;
- claim.lua skips a quarantined part (one EXISTS per claim, its names read only when
  there are some): its new and pending jobs stay `pending`, `GET /jobs/{id}` says
  `quarantined: …` (fleetd.jobs.limits.read_waiting), the `quarantined` alert names
  the type and company (fleetd.runtime.alert_companies);
- `list_quarantines` / `release`: what admins see and do (HTTP `/api/v1/admin/
  quarantines`, `fleetd quarantine list|release`, audited as `quarantine.release`);
  a release wakes idle fetchers and the held jobs run.

A queue with a slot of its own (fleetd.backend.spaces) has its own `quarantines` hash,
counted and read by the scripts of its space: there a part is held for that queue's
jobs alone. Admins see and release a part (a type and a company) whatever the space:
`list_quarantines` shows one record per part, merged over the spaces that hold it
(`Quarantine.merge`), and `release` releases it in every space.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import SyncClient
from fleetd.backend.scripts import WAKE_TOKEN_CAP, Scripts
from fleetd.backend.spaces import Spaces
from fleetd.config.isolation_section import IsolationConfig
from fleetd.jobs.answer import format_ts
from fleetd.jobs.isolation import CPU, CRASH, MEMORY, TIMEOUT, error_kind
from fleetd.jobs.parts import part_name

__all__ = [
    "COUNTED",
    "STALL",
    "Quarantine",
    "Strikes",
    "count_failures",
    "counted_kind",
    "list_quarantines",
    "read_quarantine",
    "release",
]

# The error kinds that count towards a quarantine, by their short names (as the config
# spells them). A plain exception does not: a handler's own error is a bug or a bad
# input, not a job that harms its host.
COUNTED = {MEMORY: "memory", CPU: "cpu", TIMEOUT: "timeout", CRASH: "crash"}
# The kind reap.lua counts for a job whose lease expired while it ran (its daemon died
# or hung): no outcome is written for it, so the reaper does the counting.
STALL = "stall"

# One failure as quarantine_count.lua takes it: job id, attempt, type, company, kind.
Failure = tuple[str, int, str, str | None, str]


@dataclass(frozen=True)
class Strikes:
    """Quarantine a part at `after` counted failures within `window_ms`; the short kinds
    that count (`[isolation] quarantine_kinds`)."""

    after: int
    window_ms: int
    kinds: frozenset[str] = frozenset((*COUNTED.values(), STALL))

    @classmethod
    def of(cls, isolation: IsolationConfig | None) -> Strikes | None:
        """From `[isolation]`; None when quarantines are off (quarantine_after = 0, or
        no kind counts)."""
        iso = isolation or IsolationConfig()
        if iso.quarantine_after <= 0 or not iso.quarantine_kinds:
            return None
        kinds = frozenset(iso.quarantine_kinds)
        return cls(iso.quarantine_after, int(iso.quarantine_window * 1000), kinds)

    def counted(self, error: str) -> str | None:
        """The short kind of a failure (its error text) that counts here, else None."""
        kind = counted_kind(error)
        return kind if kind in self.kinds else None


@dataclass(frozen=True)
class Quarantine:
    job_type: str
    company_id: str | None
    since_ms: int
    failures: int
    kinds: dict[str, int]
    window_ms: int
    last_job_id: str

    @classmethod
    def decode(cls, text: str | bytes) -> Quarantine:
        """From the JSON record the scripts keep in the `quarantines` hash."""
        r = json.loads(text)
        kinds = r.get("kinds") or {}
        return cls(
            job_type=str(r["job_type"]),
            company_id=str(r.get("company_id") or "") or None,
            since_ms=int(r["since"]),
            failures=int(r["failures"]),
            kinds={str(k): int(v) for k, v in kinds.items()} if isinstance(kinds, dict) else {},
            window_ms=int(r["window_ms"]),
            last_job_id=str(r.get("last_job_id") or ""),
        )

    @classmethod
    def merge(cls, held: Sequence[Quarantine]) -> Quarantine:
        """One part's quarantines in several key spaces as one: held since the first,
        their failures and kinds added up, the widest window, the last job of the
        latest."""
        first = min(held, key=lambda q: q.since_ms)
        latest = max(held, key=lambda q: q.since_ms)
        kinds: dict[str, int] = {}
        for q in held:
            for kind, n in q.kinds.items():
                kinds[kind] = kinds.get(kind, 0) + n
        return cls(
            job_type=first.job_type,
            company_id=first.company_id,
            since_ms=first.since_ms,
            failures=sum(q.failures for q in held),
            kinds=kinds,
            window_ms=max(q.window_ms for q in held),
            last_job_id=latest.last_job_id,
        )

    def to_dict(self) -> dict[str, Any]:
        """The answer's item (fleetd.api.bodies.QuarantineItem): HTTP and CLI `--json`."""
        return {
            "job_type": self.job_type,
            "company_id": self.company_id,
            "since": format_ts(self.since_ms),
            "failures": self.failures,
            "kinds": dict(sorted(self.kinds.items())),
            "window_seconds": self.window_ms / 1000,
            "last_job_id": self.last_job_id,
        }

    def reason(self) -> str:
        """The `waiting` text of a job this quarantine holds."""
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.kinds.items()))
        return (
            f"quarantined: job type {self.job_type!r} of company {self.company_id or ''!r} "
            f"after {self.failures} failures ({kinds}) within {self.window_ms / 1000:g}s; "
            "an admin releases it"
        )


def counted_kind(error: str) -> str | None:
    """The short kind of a failure that counts towards a quarantine, else None."""
    return COUNTED.get(error_kind(error))


def count_failures(
    client: SyncClient, scripts: Scripts, strikes: Strikes, failures: Sequence[Failure]
) -> list[Quarantine]:
    """Count written failures (quarantine_count.lua); the quarantines they started."""
    if not failures:
        return []
    k = scripts.keys
    args: list[Any] = [strikes.after, strikes.window_ms, len(failures)]
    for job_id, attempt, job_type, company, kind in failures:
        args.extend((job_id, attempt, job_type, company or "", kind))
    got = scripts.call(client, "quarantine_count", [k.quarantines, k.events], args)
    return [Quarantine.decode(text) for text in got or ()]


def release(
    client: SyncClient, scripts: Scripts | Spaces, job_type: str, company_id: str | None
) -> Quarantine | None:
    """Release a part (quarantine_release.lua) in one space, or in every space of
    `Spaces`: the released quarantine (merged over the spaces that held it), or None."""
    every = (
        [scripts] if isinstance(scripts, Scripts) else [s.scripts for s in scripts.known(client)]
    )
    released = []
    for sc in every:
        k = sc.keys
        # A token per fetcher that may be idle: the held jobs may be many.
        got = sc.call(
            client, "quarantine_release", [k.quarantines, k.events, k.wake],
            [job_type, company_id or "", WAKE_TOKEN_CAP, WAKE_TOKEN_CAP],
        )  # fmt: skip
        if got:
            released.append(Quarantine.decode(got))
    return Quarantine.merge(released) if released else None


def list_quarantines(
    client: SyncClient,
    keys: Keys | Sequence[Keys] | Spaces,
    company_id: str | None = None,
    *,
    every: bool = True,
) -> list[Quarantine]:
    """The quarantined parts, oldest first; `every=False`: only `company_id`'s. Over
    several spaces (their keys, or `Spaces`: every one), one record per part
    (`Quarantine.merge`), in one round trip."""
    if isinstance(keys, Keys):
        spaces = [keys]
    elif isinstance(keys, Spaces):
        spaces = keys.all_keys(client)
    else:
        spaces = list(keys)
    pipe = client.pipeline(transaction=False)
    for k in spaces:
        pipe.hgetall(k.quarantines)
    by_part: dict[str, list[Quarantine]] = {}
    for records in pipe.execute():
        for part, text in records.items():
            by_part.setdefault(str(part), []).append(Quarantine.decode(text))
    found = [q[0] if len(q) == 1 else Quarantine.merge(q) for q in by_part.values()]
    if not every:
        found = [q for q in found if q.company_id == company_id]
    return sorted(found, key=lambda q: (q.since_ms, q.job_type, q.company_id or ""))


def read_quarantine(
    client: SyncClient, keys: Keys, job_type: str, company_id: str | None
) -> Quarantine | None:
    """The quarantine of a part in one space (the one holding the job asked about)."""
    got = client.hget(keys.quarantines, part_name(job_type, company_id))
    return Quarantine.decode(got) if got else None
