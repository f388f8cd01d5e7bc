"""Isolation of a job type's handler, its resource limits and its error-specific retry
policy, as declared by the handler and overridden by `[isolation]` (sans-IO).

Owns:
- the isolation modes: `inline` (the handler runs on the daemon's trio thread: today's
  behaviour, for cheap async handlers), `thread` (in a worker thread with its own trio
  loop: a blocking call no longer freezes the daemon, but a stuck thread cannot be
  killed, only abandoned) and `process` (in a warm child process, killed on timeout
  and cancel, under memory and CPU limits: fleetd.runtime.sandbox);
- the error kinds a failed attempt is classified as: `resource_exhausted: memory`,
  `resource_exhausted: cpu`, `timeout`, `crash` (the child process died), `error`
  (any other exception). The kind opens the job's error text (`"timeout: …"`), so the
  job, its events and /metrics show it without a field of its own;
- `RetryAfter`: a handler's "retry after N seconds" (an SMTP 421, an upstream's
  Retry-After);
- `Policy`: one job type's resolved mode, limits, the error kinds it does not retry
  (default: memory exhaustion) and its retry rules — per error kind or exception
  class, a delay of its own and a cap on the job's retries (`RetryRule`; `decide`
  applies them) — and `resolve()`, which builds it from the handler's
  `HandlerDefaults` and the config's per-type entries (`"<type>=<value>"`).
"""

from __future__ import annotations

import dataclasses
import math
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fleetd.config.isolation_section import parse_retry_rule

__all__ = [
    "CPU",
    "CRASH",
    "ERROR",
    "KINDS",
    "MEMORY",
    "MODES",
    "TIMEOUT",
    "Overrides",
    "Policy",
    "RetryAfter",
    "RetryRule",
    "classify_exit",
    "error_kind",
    "parse_entries",
    "resolve",
    "rules_of",
]

MODES = ("inline", "thread", "process")
MEMORY = "resource_exhausted: memory"
CPU = "resource_exhausted: cpu"
TIMEOUT = "timeout"
CRASH = "crash"
ERROR = "error"
KINDS = (MEMORY, CPU, TIMEOUT, CRASH, ERROR)
# How kinds are spelled in config and handler declarations ("memory" for MEMORY).
SHORT = {"memory": MEMORY, "cpu": CPU, "timeout": TIMEOUT, "crash": CRASH, "error": ERROR}
# Not retried unless a handler or the config says otherwise: an attempt that filled its
# memory limit will fill it again (Celery and BullMQ retry it blindly).
DEFAULT_NO_RETRY = frozenset({MEMORY})
# A RetryAfter's delay is capped at one day: a job hash waiting longer is a mistake.
MAX_RETRY_AFTER = 86_400.0


class RetryAfter(Exception):
    """Raised by a handler: this attempt failed, try again after `seconds` (an SMTP 421,
    an upstream's Retry-After) instead of the retry policy's delay. Counts as a retry
    like any failure: with no retries left the job fails."""

    def __init__(self, seconds: float, message: str = "") -> None:
        if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"RetryAfter needs seconds >= 0, got {seconds!r}")
        self.seconds = min(float(seconds), MAX_RETRY_AFTER)
        super().__init__(message or f"retry after {self.seconds:g} s")


@dataclass(frozen=True, slots=True)
class RetryRule:
    """How the failures of one error kind or exception class are retried: after
    `delay_ms` (None: the retry policy's backoff), while the job has had fewer than
    `max_retries` retries (None: its own max_retries is the only cap)."""

    delay_ms: int | None = None
    max_retries: int | None = None


def rules_of(values: Iterable[str]) -> tuple[tuple[str, RetryRule], ...]:
    """Retry rules (`"timeout:10m/1"`, `"SMTPServerDisconnected:30s"`, `"crash:/1"`) as
    (kind or exception class name, rule); ValueError for one that does not parse."""
    rules = []
    for value in values:
        what, delay, most = parse_retry_rule(value)
        ms = None if delay is None else int(delay * 1000)
        rules.append((SHORT.get(what, what), RetryRule(ms, most)))
    return tuple(rules)


@dataclass(frozen=True, slots=True)
class Policy:
    """One job type's isolation. memory_mb / cpu_seconds: 0 = no limit (process only)."""

    mode: str = "inline"
    memory_mb: int = 0
    cpu_seconds: int = 0
    # Error kinds (KINDS) and exception class names whose failures are not retried.
    no_retry: frozenset[str] = DEFAULT_NO_RETRY
    # Environment variables the child keeps besides the harmless base set.
    env: tuple[str, ...] = ()
    # (error kind or exception class name, its rule): rules_of.
    rules: tuple[tuple[str, RetryRule], ...] = ()

    def retryable(self, kind: str, exc_name: str = "") -> bool:
        return kind not in self.no_retry and (not exc_name or exc_name not in self.no_retry)

    def decide(self, kind: str, exc_name: str, retry_count: int) -> tuple[bool, int | None]:
        """Whether a failed attempt of this kind (or exception class, which wins) is
        retried, a job with `retry_count` retries so far, and after how many ms (None:
        the retry policy's backoff)."""
        if not self.retryable(kind, exc_name):
            return False, None
        found = {what: rule for what, rule in self.rules}
        rule = found.get(exc_name) if exc_name else None
        rule = rule or found.get(kind)
        if rule is None:
            return True, None
        if rule.max_retries is not None and retry_count >= rule.max_retries:
            return False, None
        return True, rule.delay_ms

    @property
    def limits(self) -> tuple[int, tuple[str, ...]]:
        """What a warm child is started with: types with equal ones share its pool (the
        CPU limit is set per job, so it does not split pools)."""
        return (self.memory_mb, self.env)


def kinds_of(names: Iterable[str]) -> frozenset[str]:
    """Config or handler spellings ("memory", "crash", "SMTPServerDisconnected") → kinds
    and exception class names."""
    return frozenset(SHORT.get(n.strip(), n.strip()) for n in names if n.strip())


def parse_entries(entries: Iterable[str]) -> dict[str, str]:
    """`["report_generation=process", "*=inline"]` → {type: value}; ValueError names the
    first entry that is not `<type>=<value>`."""
    out: dict[str, str] = {}
    for entry in entries:
        job_type, sep, value = entry.partition("=")
        if not sep or not job_type.strip() or not value.strip():
            raise ValueError(f"{entry!r} is not '<job type>=<value>'")
        out[job_type.strip()] = value.strip()
    return out


@dataclass(frozen=True, slots=True)
class Overrides:
    """The config's per-type entries, parsed ([isolation] in fleetd.config)."""

    modes: Mapping[str, str]
    memory_mb: Mapping[str, str]
    cpu_seconds: Mapping[str, str]
    no_retry: Mapping[str, str]
    default_memory_mb: int = 0
    default_cpu_seconds: int = 0
    # Retry rules by type: several entries each (one per kind or exception class).
    retry: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, section: Any) -> Overrides:
        """From the config's [isolation] (fleetd.config.isolation_section, checked)."""
        s = section
        retry: dict[str, tuple[str, ...]] = {}
        for entry in s.retry:
            job_type, _, value = (part.strip() for part in entry.partition("="))
            retry[job_type] = (*retry.get(job_type, ()), value)
        return cls(parse_entries(s.modes), parse_entries(s.memory), parse_entries(s.cpu),
                   parse_entries(s.no_retry), s.memory_mb, s.cpu_seconds, retry)  # fmt: skip


def resolve(job_type: str, declared: Policy, cfg: Overrides) -> Policy:
    """The policy `job_type` runs with: the config's entry for the type, else its "*"
    entry, else the handler's declaration; limits likewise, then the config's default."""

    def pick(table: Mapping[str, str]) -> str | None:
        return table.get(job_type, table.get("*"))

    mode = pick(cfg.modes) or declared.mode
    memory = pick(cfg.memory_mb)
    cpu = pick(cfg.cpu_seconds)
    no_retry = pick(cfg.no_retry)
    rules = cfg.retry.get(job_type, cfg.retry.get("*"))
    return Policy(
        mode=mode,
        memory_mb=int(memory) if memory else declared.memory_mb or cfg.default_memory_mb,
        cpu_seconds=int(cpu) if cpu else declared.cpu_seconds or cfg.default_cpu_seconds,
        no_retry=declared.no_retry if no_retry is None else kinds_of(no_retry.split(",")),
        env=declared.env,
        rules=declared.rules if rules is None else rules_of(rules),
    )


def error_kind(error: str) -> str:
    """The kind a job's error text opens with (ERROR when none of the others)."""
    for kind in (MEMORY, CPU, TIMEOUT, CRASH):
        if error.startswith(kind + ":"):
            return kind
    return ERROR


def classify_exit(exitcode: int | None, memory_mb: int) -> tuple[str, str]:
    """(kind, error text) for a child process that died running a job. SIGXCPU is
    RLIMIT_CPU's soft limit; a SIGKILL fleetd did not send (fleetd's own kills are
    timeouts and cancels, classified before this) is the kernel's OOM killer."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        if -exitcode == signal.SIGXCPU:
            return CPU, f"{CPU}: the job's process used up its CPU-time limit ({name})"
        if -exitcode == signal.SIGKILL:
            limit = f" (limit {memory_mb} MiB)" if memory_mb else ""
            return MEMORY, f"{MEMORY}: the job's process was killed by the OOM killer{limit}"
        return CRASH, f"{CRASH}: the job's process was killed by {name}"
    return CRASH, f"{CRASH}: the job's process exited with code {exitcode}"
