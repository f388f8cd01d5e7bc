"""The [limits] section and its parsed form: global concurrency and start rates per job
type and per company, enforced where jobs are claimed (claim.lua; fleetd.jobs.limits
explains a held-back job).

Spelling: `types = ["data_export=2", "email=100/1m", "report=3,10/1s"]`: per type, a
concurrency (`N`), a rate (`N/<duration>`: at most N starts in any window of that
length), or both separated by a comma; `company_concurrency = 5`, `company_rate =
"100/1m"`: what every company may (jobs without a company are not counted against it);
`queues = ["bulk=10", "mail=50/1s"]`: per named queue, spelled as per type (all of the
queue's jobs, whatever their type or company).

Concurrency counts the jobs in `processing` holding a slot (the job's `held` field);
the slot comes back with every way out of processing, the reaper's included, so a daemon
that dies holds its slots only until its leases expire. A job held back stays `pending`:
it never burns an attempt.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fleetd.config.durations import parse_duration
from fleetd.config.queue_section import DEFAULT_QUEUE, check_queue_name
from fleetd.config.settings import setting

__all__ = ["Limit", "Limits", "LimitsConfig", "parse_limit", "parse_types"]


@dataclass(frozen=True, slots=True)
class Limit:
    """concurrency: most running at once (0 = no limit); starts per `per` seconds
    (starts 0 = no rate limit)."""

    concurrency: int = 0
    starts: int = 0
    per: float = 0.0

    @property
    def empty(self) -> bool:
        return self.concurrency == 0 and self.starts == 0

    def encode(self) -> list[int]:
        return [self.concurrency, self.starts, int(self.per * 1000)]

    def describe(self) -> str:
        parts = []
        if self.concurrency:
            parts.append(f"{self.concurrency} running")
        if self.starts:
            parts.append(f"{self.starts} starts per {self.per:g}s")
        return ", ".join(parts)


def parse_limit(text: str) -> Limit:
    """`N`, `N/<duration>` or `N,M/<duration>`; ValueError with the reason."""
    concurrency, starts, per = 0, 0, 0.0
    for item in (i.strip() for i in text.split(",")):
        if "/" in item:
            n, _, span = item.partition("/")
            starts, per = _positive(n), parse_duration(span.strip())
            if per <= 0 or per > 86400:
                raise ValueError(f"the interval of {item!r} must be more than 0 and at most 1d")
        else:
            concurrency = _positive(item)
    return Limit(concurrency, starts, per)


def _positive(text: str) -> int:
    try:
        n = int(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a whole number") from None
    if not 1 <= n <= 1_000_000:
        raise ValueError(f"{n} must be from 1 to 1000000")
    return n


def parse_types(items: Iterable[str], what: str = "type") -> dict[str, Limit]:
    """`type=limit` items (`what` = "queue": `queue=limit`, the name a queue name) →
    {name: Limit}; ValueError naming the bad item."""
    out: dict[str, Limit] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{item!r} must be '{what}=limit'")
        if name in out:
            raise ValueError(f"{what} {name!r} is listed twice")
        try:
            if what == "queue":
                check_queue_name(name)
            out[name] = parse_limit(spec)
        except ValueError as exc:
            raise ValueError(f"{item!r}: {exc}") from None
    return out


@dataclass(frozen=True, slots=True)
class Limits:
    types: Mapping[str, Limit] = field(default_factory=dict)
    company: Limit = Limit()
    queues: Mapping[str, Limit] = field(default_factory=dict)
    # Quotas at the door (_lib.lua check_quotas): pending jobs one company may have, and its
    # enqueues per window (`enqueue.starts` per `enqueue.per`); 0 = none.
    max_pending: int = 0
    enqueue: Limit = Limit()

    @classmethod
    def from_config(
        cls,
        types: Iterable[str],
        company_concurrency: int,
        company_rate: str,
        queues: Iterable[str] = (),
    ) -> Limits:
        rate = parse_limit(company_rate) if company_rate else Limit()
        return cls(
            parse_types(types),
            Limit(company_concurrency, rate.starts, rate.per),
            parse_types(queues, "queue"),
        )

    @property
    def empty(self) -> bool:
        return (
            self.company.empty
            and all(lim.empty for lim in self.types.values())
            and all(lim.empty for lim in self.queues.values())
        )

    def encode(self) -> str:
        """claim.lua's ARGV[8]: '' when nothing is limited (the claim skips every check)."""
        if self.empty:
            return ""
        body: dict[str, object] = {
            "t": {t: lim.encode() for t, lim in self.types.items() if not lim.empty}
        }
        if not self.company.empty:
            body["c"] = self.company.encode()
        if queues := {q: lim.encode() for q, lim in self.queues.items() if not lim.empty}:
            body["q"] = queues
        return json.dumps(body, separators=(",", ":"))

    def encode_quota(self, job_types: Iterable[str]) -> str:
        """enqueue.lua's quota argument: '' when no quota is set. The pending count of a
        company sums its parts of `job_types` (the types this process knows) and of the
        call's own rows."""
        if not self.max_pending and not self.enqueue.starts:
            return ""
        body = {"pending": self.max_pending, "rate": [self.enqueue.starts,
                int(self.enqueue.per * 1000)], "types": sorted(job_types)}  # fmt: skip
        return json.dumps(body, separators=(",", ":"))

    def for_job(
        self, job_type: str, company_id: str | None, queue: str | None = None
    ) -> list[tuple[str, Limit]]:
        """The limits a job of this type, company and queue (None: `default`) is under:
        (field, limit) with the field as counted in Redis (`t:<type>`, `c:<company>`,
        `q:<queue>`), in claim.lua's order."""
        out = []
        lim = self.types.get(job_type)
        if lim is not None and not lim.empty:
            out.append((f"t:{job_type}", lim))
        if company_id and not self.company.empty:
            out.append((f"c:{company_id}", self.company))
        lim = self.queues.get(queue or DEFAULT_QUEUE)
        if lim is not None and not lim.empty:
            out.append((f"q:{queue or DEFAULT_QUEUE}", lim))
        return out


def _check_types(value: tuple[str, ...]) -> str | None:
    try:
        parse_types(value)
    except ValueError as exc:
        return str(exc)
    return None


def _check_queues(value: tuple[str, ...]) -> str | None:
    try:
        parse_types(value, "queue")
    except ValueError as exc:
        return str(exc)
    return None


def _check_rate(value: str) -> str | None:
    if value == "":
        return None
    try:
        lim = parse_limit(value)
    except ValueError as exc:
        return str(exc)
    if lim.concurrency or not lim.starts:
        return f"must be 'N/<duration>' (e.g. 100/1m), got {value!r}"
    return None


@dataclass(frozen=True)
class LimitsConfig:
    types: tuple[str, ...] = setting(
        (),
        "per job type across all daemons: 'type=N' running, 'type=N/1m' starts, or both "
        "'type=N,M/1m'",
        check=_check_types,
    )
    company_concurrency: int = setting(
        0, "jobs of one company running at once across all daemons; 0 = no limit", min=0
    )
    queues: tuple[str, ...] = setting(
        (),
        "per named queue across all daemons, whatever the jobs' types and companies: "
        "'queue=N' running, 'queue=N/1m' starts, or both 'queue=N,M/1m'",
        check=_check_queues,
    )
    company_rate: str = setting(
        "",
        "starts of one company's jobs per interval, 'N/<duration>'; '' = no limit",
        check=_check_rate,
    )

    company_max_pending: int = setting(
        0,
        "pending jobs one company may have (ready, delayed or waiting in a workflow); "
        "more enqueues get 429; 0 = no cap",
        min=0,
    )
    company_enqueue_rate: str = setting(
        "",
        "jobs one company may enqueue per interval, 'N/<duration>'; '' = no cap",
        check=_check_rate,
    )
    company_max_schedules: int = setting(
        0, "schedules one company may have; more creations get 429; 0 = no cap", min=0
    )

    def build(self) -> Limits:
        """The parsed limits; parsed once per distinct section (the API asks on every
        bypassed enqueue, every job answer and every queue listing)."""
        return _built(self)


@functools.lru_cache(maxsize=16)
def _built(cfg: LimitsConfig) -> Limits:
    limits = Limits.from_config(cfg.types, cfg.company_concurrency, cfg.company_rate, cfg.queues)
    rate = parse_limit(cfg.company_enqueue_rate) if cfg.company_enqueue_rate else Limit()
    return dataclasses.replace(
        limits, max_pending=cfg.company_max_pending, enqueue=Limit(0, rate.starts, rate.per)
    )
