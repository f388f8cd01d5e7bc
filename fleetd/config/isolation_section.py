"""The `[isolation]` config section: how job types run (fleetd.jobs.isolation) and the
limits of their sandboxes (fleetd.runtime.sandbox), each key declared once with
`setting()`; gathered into `Config` by fleetd.config.model.

Per-type keys are lists of `"<job type>=<value>"` entries (`"*"` for every type): a
handler declares its own mode, limits and retry policy (`HandlerDefaults`), an entry
here overrides it for one deployment without touching the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetd.config.durations import parse_duration
from fleetd.config.settings import MINUTE, SECOND, setting

__all__ = ["MODES", "QUARANTINE_KINDS", "IsolationConfig", "check_entries", "parse_retry_rule"]


# The modes of fleetd.jobs.isolation (the config package imports nothing of fleetd.jobs).
MODES = ("inline", "thread", "process")
# The failure kinds that may count towards a quarantine (fleetd.jobs.quarantine).
QUARANTINE_KINDS = ("memory", "cpu", "timeout", "crash", "stall")


# A retry rule's largest delay (as fleetd.jobs.isolation.MAX_RETRY_AFTER) and retries.
MAX_RULE_DELAY = 86_400.0
MAX_RULE_RETRIES = 100


def parse_retry_rule(value: str) -> tuple[str, float | None, int | None]:
    """A retry rule, `<error kind or exception class>:<delay>[/<most retries>]` (the
    delay may be left out: `crash:/1`), as (what, delay in seconds or None, most
    retries or None); ValueError saying what is wrong."""
    what, sep, rest = (part.strip() for part in value.partition(":"))
    delay_text, slash, most_text = (part.strip() for part in rest.partition("/"))
    if not sep or not what or not (delay_text or most_text) or (slash and not most_text):
        raise ValueError(f"{value!r} is not '<error kind or exception>:<delay>[/<retries>]'")
    delay = None
    if delay_text:
        delay = parse_duration(delay_text)
        if delay > MAX_RULE_DELAY:
            raise ValueError(f"{value!r}: the delay is over a day")
    most = None
    if most_text:
        if not (most_text.isdigit() and int(most_text) <= MAX_RULE_RETRIES):
            raise ValueError(f"{value!r}: retries must be a whole number 0-{MAX_RULE_RETRIES}")
        most = int(most_text)
    return what, delay, most


def check_entries(entries: tuple[str, ...], kind: str) -> str | None:
    """Every entry is `<job type>=<value>` and its value is a `kind` ("mode", "int",
    "kinds": a comma list, "rule": a retry rule)."""
    for entry in entries:
        job_type, sep, value = (part.strip() for part in entry.partition("="))
        if not sep or not job_type or not value:
            return f"{entry!r} is not '<job type>=<value>'"
        if kind == "mode" and value not in MODES:
            return f"{job_type}: mode must be one of {', '.join(MODES)}, got {value!r}"
        if kind == "int" and not (value.isdigit() and int(value) < 2**31):
            return f"{job_type}: must be a whole number, got {value!r}"
        if kind == "rule":
            try:
                parse_retry_rule(value)
            except ValueError as exc:
                return f"{job_type}: {exc}"
    return None


@dataclass(frozen=True)
class IsolationConfig:
    modes: tuple[str, ...] = setting(
        (), "per type: inline, thread or process, e.g. 'data_export=process'",
        check=lambda v: check_entries(v, "mode"),
    )  # fmt: skip
    # 2 GiB: RLIMIT_AS counts address space, not resident memory (a child exporting a
    # million GPS rows to XLSX had 82 MB resident in 161 MB of address space;
    # bench/export_memory.py --sandboxed), and each thread reserves its stack and arena.
    memory_mb: int = setting(
        2048, "address-space limit of a process job's child in MiB; 0 = none", min=0
    )
    memory: tuple[str, ...] = setting(
        (), "per type: memory limit in MiB, e.g. 'report_generation=1024'",
        check=lambda v: check_entries(v, "int"),
    )  # fmt: skip
    cpu_seconds: int = setting(0, "CPU-time limit of one process job in seconds; 0 = none", min=0)
    cpu: tuple[str, ...] = setting(
        (), "per type: CPU-time limit in seconds, e.g. 'data_export=600'",
        check=lambda v: check_entries(v, "int"),
    )  # fmt: skip
    no_retry: tuple[str, ...] = setting(
        (), "per type: error kinds not retried, e.g. 'data_export=memory,crash'",
        check=lambda v: check_entries(v, "kinds"),
    )  # fmt: skip
    retry: tuple[str, ...] = setting(
        (), "per type: how failures of one error kind or exception class are retried, "
        "'<kind or exception>:<delay>[/<most retries>]', one entry each, e.g. "
        "'data_export=timeout:10m/1'; a type's entries replace its handler's",
        check=lambda v: check_entries(v, "rule"),
    )  # fmt: skip
    max_children: int = setting(4, "process jobs running at once in this daemon", min=1, max=1024)
    # A warm child is reused; after this many jobs it is replaced, so whatever a handler
    # leaked (memory, file handles, module state) goes with it. A new child costs ~0.5 s
    # of CPU (a fresh interpreter importing fleetd), 3-5 s of wall time on a loaded 2-core
    # box: every 100 jobs that was ~40 ms a job (bench/isolation.py), every 1,000 ~4 ms.
    max_jobs_per_child: int = setting(1000, "jobs a warm child runs before it is replaced", min=1)
    idle_timeout: float = setting(
        5 * MINUTE, "an idle warm child exits after this long", kind="duration", min=SECOND
    )
    # On a process job's timeout or cancel its child gets SIGTERM (the handler is
    # cancelled and may clean up), then SIGKILL this long after. The job's slot is free
    # at once either way; 5 s lets a handler remove a temp file or close an upload, and
    # bounds how long a deaf child (blocked in C) keeps its memory.
    kill_grace: float = setting(
        5 * SECOND, "a process job's child stopped on timeout or cancel gets SIGTERM, "
        "then SIGKILL this long after; 0 = SIGKILL at once", kind="duration", min=0,
    )  # fmt: skip
    scratch_dir: str = setting("", "per-job working directories; '' = the system's temp dir")
    # A part (one job type of one company) whose attempts keep exhausting their limits,
    # crashing their process or timing out is held (fleetd.jobs.quarantine). 5 within
    # 10 minutes: a flaky job type with the default 3 retries fails 4 attempts at most
    # per job, so one bad job alone does not hold its type's whole backlog.
    quarantine_after: int = setting(
        5, "classified failures of one job type and company within quarantine_window "
        "that quarantine it (its jobs are held until an admin releases them); 0 = never",
        min=0,
    )  # fmt: skip
    quarantine_window: float = setting(
        10 * MINUTE, "the window quarantine_after counts in", kind="duration", min=SECOND
    )
    # Which failures count: a type whose attempts time out because a downstream is slow
    # is held like one that crashes, unless `timeout` is left out here.
    quarantine_kinds: tuple[str, ...] = setting(
        QUARANTINE_KINDS, "the failure kinds quarantine_after counts: memory, cpu, timeout, "
        "crash (the process died), stall (the daemon died or hung under the job)",
        choices=QUARANTINE_KINDS, unique=True,
    )  # fmt: skip
