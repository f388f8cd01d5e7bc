"""One typed method per Lua transition script; argument order defined here only.

Each method mirrors its script's header (fleetd/backend/lua/<name>.lua): it builds KEYS
from `Keys` and ARGV in the documented order, calls the script through the sync client it
is given, and decodes the reply. Job rows and claimed jobs go through
fleetd.backend.codec (named fields), never by position. Methods are synchronous: callers
run them inside one RedisLink hop (several in one hop when they batch).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from fleetd.backend.codec import ClaimedJob, ClaimResult, JobRow, decode_claim, encode_row
from fleetd.backend.keys import Keys
from fleetd.backend.redis_link import Script, SyncClient
from fleetd.config.queue_section import Served
from fleetd.jobs.errors import QuotaExceeded
from fleetd.jobs.status import JobStatus

# ClaimedJob and ClaimResult are defined by the codec; re-exported for their users.
__all__ = ["ClaimResult", "ClaimedJob", "Scripts"]

# Most wake-up tokens kept in the wake list: enough to wake every idle fetcher of a
# large cluster at once, small enough that stale tokens cost a few empty claims at most.
WAKE_TOKEN_CAP = 64
# A dead daemon's control list expires after a day.
CONTROL_TTL_S = 86400

_NAMES = (
    "enqueue", "claim", "complete", "fail", "abort", "release", "renew", "reap", "promote",
    "cancel", "reset", "progress", "prune", "heartbeat", "quota_check", "later_fill",
    "schedule_save", "schedule_remove", "schedule_fire", "audit_write",
    # Workflows (typed methods in fleetd.workflows.scripts).
    "wf_submit", "wf_skip", "wf_cancel", "wf_resume", "wf_prune",
    # Templates (fleetd.templates.store).
    "template_save",
    # Jobs claimed at once or landed finished (fleetd.runtime.inline, fleetd.spool.finished).
    "land",
    # Quarantines (typed methods in fleetd.jobs.quarantine).
    "quarantine_count", "quarantine_release",
)  # fmt: skip


def quota_refusal(reply: Sequence[Any]) -> QuotaExceeded:
    """enqueue.lua's refusal (company, quota, limit, retry ms per company) as the error
    of its first company, with `companies` naming every one refused."""
    it = iter(reply)
    refused = [(str(c), str(q), int(lim), int(ms)) for c, q, lim, ms in zip(it, it, it, it,
                                                                          strict=True)]  # fmt: skip
    company, quota, limit, retry_ms = refused[0]
    err = QuotaExceeded(company, quota, limit, max(retry_ms, 1) / 1000)
    err.companies = [c for c, *_ in refused]
    err.refusals = [(c, q, lim, max(ms, 1) / 1000) for c, q, lim, ms in refused]
    return err


def _read(name: str) -> str:
    return resources.files("fleetd.backend").joinpath("lua", f"{name}.lua").read_text("utf-8")


def _analytics_lib(enabled: bool) -> str:
    text = _read("_analytics")
    if enabled:
        return text
    return text.replace("local AN_ENABLED = true", "local AN_ENABLED = false", 1)


class Scripts:
    """The loaded scripts of one namespace, with typed call methods."""

    def __init__(
        self, keys: Keys, events_maxlen: int, *, company_maxlen: int = 0, analytics: bool = True
    ) -> None:
        """`company_maxlen`: the cap of each company's own replay stream
        (`Keys.company_events`; 0 = none kept). `analytics=False` loads the scripts
        without the analytics bookkeeping (_analytics.lua's functions do nothing):
        bench/analytics.py's control."""
        self.keys = keys
        # ARGV[2] of every script: both caps in one argument (_lib.lua's header).
        self._head = [keys.prefix, f"{int(events_maxlen)}:{int(company_maxlen)}"]
        # The workflow helpers (wf_settle) follow the shared ones: every finishing
        # script settles a workflow node's children in its own atomic step.
        # Quarantine counting (quarantine_strike) is shared by quarantine_count and reap.
        lib = "\n".join((_analytics_lib(analytics), _read("_lib"), _read("_workflow"),
                          _read("_quarantine")))  # fmt: skip
        self._scripts = {n: Script(n, lib + "\n" + _read(n)) for n in _NAMES}
        s = {st: keys.status(st) for st in JobStatus}
        self._s = s
        # What claims send beyond the call's own arguments (for_claims): the job types
        # the daemon has handlers for ('' = every type) and the encoded [limits].
        self._claim_types = ""
        self._claim_limits = ""
        self._claim_queues = Served()

    def for_claims(
        self, types: Sequence[str] | None, limits: str, queues: Served | None = None
    ) -> Scripts:
        """These scripts, claiming only jobs of `types` (None: every type) within
        `limits` (fleetd.jobs.limits.Limits.encode; '' = none), from `queues` (None:
        the default queue)."""
        bound = copy.copy(self)
        bound._claim_types = "" if types is None else json.dumps(sorted(types))
        bound._claim_limits = limits
        bound._claim_queues = queues or Served()
        return bound

    def in_space(self, keys: Keys) -> Scripts:
        """These scripts (and their claim settings) on another key space."""
        bound = copy.copy(self)
        bound.keys = keys
        bound._head = [keys.prefix, self._head[1]]
        bound._s = {st: keys.status(st) for st in JobStatus}
        return bound

    def all(self) -> list[Script]:
        return list(self._scripts.values())

    def _run(self, client: SyncClient, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return self._scripts[name](client, keys, [*self._head, *args])

    call = _run  # for the typed methods kept beside their feature (fleetd.workflows.scripts)

    def command(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> tuple[Any, ...]:
        """Script `name`'s EVALSHA as one command with `call`'s arguments, for a connection
        of the caller's own (fleetd.backend.native_lane); its reply is `call`'s."""
        return ("EVALSHA", self._scripts[name].sha, len(keys), *keys, *self._head, *args)

    # -- enqueue / claim -------------------------------------------------------------

    def enqueue(
        self, client: SyncClient, rows: Sequence[JobRow], quota: str = ""
    ) -> list[tuple[str, str, bool, int]]:
        """Returns per job (id, status, duplicate, created_at ms). `quota`: the
        companies' quotas (Limits.encode_quota); a company over one raises
        QuotaExceeded and nothing of the call is stored."""
        k = self.keys
        args: list[Any] = [len(rows), WAKE_TOKEN_CAP, *map(encode_row, rows)]
        if quota:
            args.append(quota)
        keys = [k.queue, k.delayed, k.seq, self._s[JobStatus.PENDING], k.events, k.wake]
        reply = self._run(client, "enqueue", keys, args)
        now = int(reply[0])
        if now == -1:
            raise quota_refusal(reply[1:])
        out = [(row.id, "pending", False, now) for row in rows]
        it = iter(reply[1:])  # the duplicates only (see enqueue.lua)
        for pos, job_id, status, created in zip(it, it, it, it, strict=True):
            out[int(pos) - 1] = (job_id, status, True, int(created))
        return out

    def quota_check(self, client: SyncClient, rows: Sequence[JobRow], quota: str) -> None:
        """The companies' quotas for a call of `rows` stored in several enqueue calls:
        checked (and the rates counted) once for all; raises QuotaExceeded."""
        count: dict[str, int] = {}
        types: dict[str, set[str]] = {}
        for row in rows:
            if row.company_id:
                count[row.company_id] = count.get(row.company_id, 0) + 1
                types.setdefault(row.company_id, set()).add(row.type)
        summary = {c: [n, sorted(types[c])] for c, n in count.items()}
        reply = self._run(client, "quota_check", [], [quota, json.dumps(summary)])
        if int(reply[0]) == -1:
            raise quota_refusal(reply[1:])

    def later_fill(self, client: SyncClient, cursor: str, count: int) -> tuple[str, int]:
        """One step of the `quota_later` back-fill over `status:pending` from `cursor`
        ("-inf:0" first): (the next cursor, '0' when done and marked; jobs added)."""
        keys = [self._s[JobStatus.PENDING], self.keys.quota_backfilled]
        reply = self._run(client, "later_fill", keys, [cursor, count])
        return str(reply[0]), int(reply[1])

    def claim_call(
        self, count: int, lease_ms: int, token: str, daemon_id: str
    ) -> tuple[list[str], list[Any]]:
        """claim.lua's keys and arguments, as `call` and `command` take them."""
        k, s = self.keys, self._s
        keys = [
            k.queue, k.delayed, k.seq, s[JobStatus.PENDING], s[JobStatus.RETRYING],
            k.leases, k.events, k.wake,
        ]  # fmt: skip
        args = [count, lease_ms, token, daemon_id, self._claim_types]
        return keys, [*args, self._claim_limits, self._claim_queues.claim_arg()]

    def claim(
        self, client: SyncClient, count: int, lease_ms: int, token: str, daemon_id: str
    ) -> ClaimResult:
        keys, args = self.claim_call(count, lease_ms, token, daemon_id)
        return decode_claim(self._run(client, "claim", keys, args), token)

    def wait_then_claim(
        self,
        client: SyncClient,
        wait_keys: Sequence[str],
        timeout: float,
        count: int,
        lease_ms: int,
        token: str,
        daemon_id: str,
    ) -> ClaimResult:
        """BLPOP on `wait_keys` (server-side timeout), then claim, in one round trip:
        a wake-up token reaches the claim without a reply travelling to us first."""
        keys, args = self.claim_call(count, lease_ms, token, daemon_id)
        _, reply = self._scripts["claim"].after(
            client, lambda pipe: pipe.blpop(wait_keys, timeout=timeout), keys, [*self._head, *args]
        )
        return decode_claim(reply, token)

    # -- outcomes of running jobs (batched) ------------------------------------------

    def complete(self, client: SyncClient, items: Sequence[tuple[str, str, str, str]]) -> list[int]:
        """items: (id, token, result JSON, event data JSON). Returns 1 done / 0 stale."""
        s = self._s
        keys = [self.keys.leases, s[JobStatus.COMPLETED], self.keys.events]
        args: list[Any] = [len(items)]
        for item in items:
            args.extend(item)
        return [int(x) for x in self._run(client, "complete", keys, args)]

    def fail(
        self, client: SyncClient, items: Sequence[tuple[str, str, str, str, bool, int]]
    ) -> list[int]:
        """items: (id, token, error, traceback, retryable, retry delay ms — from
        fleetd.jobs.retry). Returns per job the retry's due ms, 0 for failed for good,
        -1 for stale."""
        k, s = self.keys, self._s
        keys = [
            k.leases, s[JobStatus.RETRYING], s[JobStatus.FAILED], k.delayed, k.events,
        ]  # fmt: skip
        args: list[Any] = [len(items)]
        for job_id, token, error, tb, retryable, delay_ms in items:
            args.extend(
                (job_id, token, error, json.dumps(error), tb, 1 if retryable else 0, delay_ms)
            )
        return [int(x) for x in self._run(client, "fail", keys, args)]

    def abort(self, client: SyncClient, items: Sequence[tuple[str, str]]) -> list[int]:
        """items: (id, token) of running jobs cancelled on request."""
        s = self._s
        keys = [self.keys.leases, s[JobStatus.CANCELLED], self.keys.events]
        args: list[Any] = [len(items)]
        for item in items:
            args.extend(item)
        return [int(x) for x in self._run(client, "abort", keys, args)]

    def release(self, client: SyncClient, items: Sequence[tuple[str, str]]) -> list[int]:
        """items: (id, token) of running jobs given back at a graceful stop."""
        k, s = self.keys, self._s
        keys = [
            k.leases, s[JobStatus.PENDING], k.queue, k.events, k.wake, s[JobStatus.CANCELLED],
        ]  # fmt: skip
        args: list[Any] = [len(items), WAKE_TOKEN_CAP]
        for item in items:
            args.extend(item)
        return [int(x) for x in self._run(client, "release", keys, args)]

    def renew(
        self, client: SyncClient, lease_ms: int, items: Sequence[tuple[str, str]]
    ) -> list[int]:
        """Returns per job 1 renewed, 2 renewed with a cancel requested, 0 lost."""
        args: list[Any] = [lease_ms, len(items)]
        for item in items:
            args.extend(item)
        return [int(x) for x in self._run(client, "renew", [self.keys.leases], args)]

    def progress(self, client: SyncClient, job_id: str, token: str, progress: str) -> bool:
        return bool(self._run(client, "progress", [self.keys.events], [job_id, token, progress]))

    # -- maintenance -----------------------------------------------------------------

    def reap(
        self, client: SyncClient, max_stalls: int, limit: int, strikes: tuple[int, int] = (0, 0)
    ) -> tuple[int, int, int, int]:
        """(requeued, failed, cancelled, parts quarantined). `strikes`: quarantine after,
        window ms (fleetd.jobs.quarantine.Strikes); after 0: stalls are not counted."""
        k, s = self.keys, self._s
        keys = [
            k.leases, k.queue, k.seq, s[JobStatus.PENDING], s[JobStatus.FAILED],
            s[JobStatus.CANCELLED], k.events, k.wake, k.quarantines,
        ]  # fmt: skip
        r = self._run(client, "reap", keys, [max_stalls, limit, WAKE_TOKEN_CAP, *strikes])
        return int(r[0]), int(r[1]), int(r[2]), int(r[3])

    def promote(self, client: SyncClient) -> tuple[int, int | None, int]:
        """Returns (moved, next due ms or None, Redis now ms)."""
        k, s = self.keys, self._s
        keys = [k.queue, k.delayed, k.seq, s[JobStatus.PENDING], s[JobStatus.RETRYING], k.wake]
        r = self._run(client, "promote", keys, [WAKE_TOKEN_CAP])
        due = int(r[1])
        return int(r[0]), None if due < 0 else due, int(r[2])

    def prune(
        self, client: SyncClient, status: JobStatus, age_ms: int, limit: int, offset: int = 0
    ) -> tuple[int, int]:
        """(deleted, kept: nodes of a workflow still stored); `offset` skips the kept."""
        keys = [self._s[status], self.keys.events]
        r = self._run(client, "prune", keys, [age_ms, limit, status.value, offset])
        return int(r[0]), int(r[1])

    def prune_workflows(
        self, client: SyncClient, status: JobStatus, age_ms: int, limit: int, cutoff: int | None
    ) -> tuple[int, int, bool, int]:
        """Workflows that ended `status` before now - age (or before `cutoff`, what the
        run's first call returned), with their nodes' jobs (at most `limit` nodes looked
        at, one workflow at least): (workflows, jobs, call again, cutoff)."""
        k = self.keys
        keys = [k.workflows_done(status.value), k.workflows, k.events]
        args = [age_ms, limit, status.value, "" if cutoff is None else cutoff]
        r = self._run(client, "wf_prune", keys, args)
        return int(r[0]), int(r[1]), int(r[2]) == 1, int(r[3])

    def heartbeat(
        self, client: SyncClient, daemon_id: str, payload: str, ttl_ms: int, leaving: bool = False
    ) -> int:
        """Publish one daemon's metrics; returns Redis now ms."""
        keys = [self.keys.daemons, self.keys.heartbeats]
        return int(self._run(client, "heartbeat", keys, [daemon_id, payload, ttl_ms, int(leaving)]))

    # -- admin -----------------------------------------------------------------------

    def cancel(self, client: SyncClient, job_id: str) -> tuple[str, str]:
        k, s = self.keys, self._s
        keys = [
            k.queue, k.delayed, s[JobStatus.PENDING], s[JobStatus.RETRYING],
            s[JobStatus.CANCELLED], k.events,
        ]  # fmt: skip
        r = self._run(client, "cancel", keys, [job_id, CONTROL_TTL_S])
        return str(r[0]), str(r[1])

    def reset(self, client: SyncClient, job_id: str, quota: str = "") -> tuple[str, str]:
        """(outcome reset | refused | missing, status). `quota`: the companies' quotas
        (Limits.encode_quota), the job counted as one enqueued for its company: over
        one raises QuotaExceeded and nothing is written."""
        k, s = self.keys, self._s
        keys = [
            k.queue, k.seq, s[JobStatus.PENDING], s[JobStatus.FAILED], s[JobStatus.CANCELLED],
            k.events, k.wake,
        ]  # fmt: skip
        r = self._run(client, "reset", keys, [job_id, WAKE_TOKEN_CAP, quota])
        if r[0] == -1:
            raise quota_refusal(r[1:])
        return str(r[0]), str(r[1])

    # -- audit -----------------------------------------------------------------------

    def audit_write(
        self,
        client: SyncClient,
        epoch: str,
        caps: tuple[int, int, int],
        mark_ttl_s: int,
        entries: Sequence[tuple[int, str, Mapping[str, str]]],
    ) -> int:
        """(seq, route, stream fields) of one writer epoch, in seq order; `caps` are the
        maxlens of the shared, a company's and the anonymous stream; a route is 's'
        (shared only), 'a' (anonymous) or 'c<company>' (shared and the company's).
        Returns how many were added (those at or below the epoch's mark were written
        before)."""
        shared, company, anonymous = caps
        args: list[Any] = [shared, mark_ttl_s, company, anonymous, len(entries)]
        for seq, route, fields in entries:  # JSON has no raw newline: it ends at the first
            args.extend((seq, f"{json.dumps(fields, separators=(',', ':'))}\n{route}"))
        k = self.keys
        keys = [k.audit, k.audit_writer(epoch), k.audit_anonymous, k.audit_split]
        return int(self._run(client, "audit_write", keys, args))
