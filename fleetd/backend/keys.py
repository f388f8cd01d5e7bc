"""The one place that builds Redis key names.

Every key lives under `fleetd:{<namespace>}:`. The braces are a Redis Cluster hash tag:
all of a namespace's keys hash to one slot, so every Lua script may touch any of them,
including keys a script builds itself from the prefix (job hashes, idempotency keys,
control lists), which carry the same tag.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetd.jobs.status import JobStatus

__all__ = ["Keys"]


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names of one namespace. Lua scripts receive `prefix` to build per-job keys
    (`<prefix>job:<id>`, `<prefix>idem:<n>:<company>:<key>`, `<prefix>ctl:<daemon>`,
    `<prefix>schedules:wake:<daemon>`, `<prefix>schedules:company:<company>`,
    `<prefix>quota:later:<company>`, `<prefix>events:company:<company>`,
    `<prefix>audit:company:<company>`) the same way.

    Composite names never join two free-form strings with a separator either may
    contain: each name below has at most one variable part, at its end, after a fixed
    prefix no other family shares (`schedule:` vs `schedules:`), except `idem` (length
    prefix) and `poke`, whose second part is one of two fixed loop names."""

    namespace: str

    @property
    def prefix(self) -> str:
        return f"fleetd:{{{self.namespace}}}:"

    def job(self, job_id: str) -> str:
        """Hash of one job (fields as fleetd.jobs.model.Job.from_hash reads them)."""
        return f"{self.prefix}job:{job_id}"

    def idem(self, company_id: str | None, key: str) -> str:
        """String: one company's idempotency key → job id, as `idem:<length>:<company>:
        <key>` (the length in UTF-8 bytes, as Lua's `#` counts; no company = the empty
        one). Company ids may contain ':', so without the length `acme` + `eu:order-1`
        and `acme:eu` + `order-1` would be one key. enqueue.lua builds it the same way."""
        company = company_id or ""
        return f"{self.prefix}idem:{len(company.encode())}:{company}:{key}"

    def control(self, daemon_id: str) -> str:
        """List of control messages for one daemon (cancel requests for its jobs)."""
        return f"{self.prefix}ctl:{daemon_id}"

    def poke(self, daemon_id: str, loop: str) -> str:
        """List a daemon pushes to itself to end its own blocking waits at once when it
        stops (`loop` is fetch or control), instead of waiting out their timeouts."""
        return f"{self.prefix}poke:{daemon_id}:{loop}"

    def status(self, status: JobStatus | str) -> str:
        """Zset index of the jobs in one status: scored by creation time for pending and
        retrying; by finish time for completed, failed and cancelled. Processing jobs
        are indexed by `leases` itself (scored by lease deadline, so the most recently
        claimed or renewed come first): one zset less to write per claim and finish."""
        st = JobStatus(status)
        if st is JobStatus.PROCESSING:
            return self.leases
        return f"{self.prefix}status:{st.value}"

    @property
    def queue(self) -> str:
        """Zset indexing the non-empty parts of the ready jobs (`ready(part)`): member the
        part, score = (20 - priority of its head) * 1e13 + its turn (claim.lua serves
        the lowest: strict priority, round robin between parts within one)."""
        return f"{self.prefix}queue"

    def ready(self, part: str) -> str:
        """Zset of the ready jobs of one part (a job type and a company, spelled by
        fleetd.jobs.parts.part_name); score = (20 - priority) * 1e13 + sequence: strict
        priority, FIFO within one."""
        return f"{self.prefix}ready:{part}"

    def queue_index(self, name: str) -> str:
        """The index of a named queue's parts (fleetd.jobs.queues): `queue` for the
        default queue (its keys from before named queues), else `queue:<name>`."""
        return self.queue if name in ("", "default") else f"{self.prefix}queue:{name}"

    def ready_in(self, name: str, part: str) -> str:
        """The ready jobs of one part of a named queue (`ready(part)` for the default)."""
        return self.ready(part) if name in ("", "default") else f"{self.prefix}rq:{name}:{part}"

    @property
    def queues(self) -> str:
        """Set of the named queues (not `default`) that ever had a ready job."""
        return f"{self.prefix}queues"

    @property
    def queues_slotted(self) -> str:
        """Set of the named queues that have a slot of their own (`[queues] own_slot`),
        added by the first enqueue into each (fleetd.backend.spaces): a daemon or reader
        whose config does not list a queue still finds its jobs."""
        return f"{self.prefix}queues:slotted"

    def in_queue(self, queue: str) -> Keys:
        """The keys of a named queue with a slot of its own: the namespace's whole key
        layout under the hash tag `{<namespace>/<queue>}` (neither name can hold '/',
        so no two spaces share a tag)."""
        return Keys(f"{self.namespace}/{queue}")

    @property
    def queues_paused(self) -> str:
        """Set of the paused queues: claim.lua serves none of them."""
        return f"{self.prefix}queues:paused"

    @property
    def limits_running(self) -> str:
        """Hash `t:<type>` / `c:<company>` / `q:<queue>` → jobs processing that hold a
        slot of that concurrency limit (claim.lua counts up, every way out of processing
        down)."""
        return f"{self.prefix}limits:running"

    @property
    def quarantines(self) -> str:
        """Hash part → JSON record of a quarantined part (quarantine_count.lua), which
        claim.lua skips until an admin releases it."""
        return f"{self.prefix}quarantines"

    def quarantine_log(self, part: str) -> str:
        """Zset of a part's classified failures within the quarantine window."""
        return f"{self.prefix}quarantine:log:{part}"

    @property
    def quota_refused(self) -> str:
        """Hash company → enqueues refused by its quotas (enqueue.lua), for the alert."""
        return f"{self.prefix}quota:refused"

    def quota_later(self, company_id: str) -> str:
        """Zset of a company's pending jobs in no part (waiting for their run_at, or
        workflow nodes waiting for parents), by ms: `company_max_pending` counts them.
        Built in-script too (_lib.lua later_add / later_remove / later_heal)."""
        return f"{self.prefix}quota:later:{company_id}"

    @property
    def quota_backfilled(self) -> str:
        """String: when the back-fill of the `quota_later` sets (later_fill.lua, for jobs
        stored by a version that did not keep them) went through every pending job;
        until it exists, each worker daemon's maintenance runs it once at start."""
        return f"{self.prefix}quota:backfilled"

    def quota_rate(self, window: int, company_id: str) -> str:
        """String: a company's enqueues in one fixed window of its enqueue-rate quota
        (`window` = Redis ms // the window's ms; expires after two windows)."""
        return f"{self.prefix}quota:rate:{window}:{company_id}"

    def limits_rate(self, field: str) -> str:
        """Zset of the starts within a rate limit's window (`field` as in limits_running),
        scored by start ms."""
        return f"{self.prefix}limits:rate:{field}"

    @property
    def delayed(self) -> str:
        """Zset of jobs waiting for a time (run_at or a retry's backoff), scored by due ms."""
        return f"{self.prefix}delayed"

    @property
    def leases(self) -> str:
        """Zset of processing jobs scored by lease deadline ms (what the reaper scans)."""
        return f"{self.prefix}leases"

    @property
    def seq(self) -> str:
        """Counter giving FIFO order within a priority."""
        return f"{self.prefix}seq"

    @property
    def wake(self) -> str:
        """List of wake-up tokens: idle fetchers block on it (never on the jobs)."""
        return f"{self.prefix}wake"

    @property
    def events(self) -> str:
        """Stream of job events, appended by the scripts inside each transition."""
        return f"{self.prefix}events"

    def company_events(self, company_id: str) -> str:
        """Stream of one company's events (`[events] company_maxlen`, ~): the same entries
        under the same ids as `events`, plus `prev` (the id before it in this stream, ''
        for the first since the key was created), so that a replay of that company knows
        exactly whether it was trimmed past a cursor. Written only while the company is
        in `events_watched`; expires an hour after its last event. Built in-script
        (_lib.lua company_emit); read by fleetd.runtime.replay."""
        return f"{self.prefix}events:company:{company_id}"

    @property
    def events_watched(self) -> str:
        """Zset company → until ms (Redis time): the companies whose feeds have a
        subscriber, or had one within the hour, whose events also go to their own
        stream (`company_events`). Kept by fleetd.runtime.events.EventHub."""
        return f"{self.prefix}events:watched"

    def ws_ticket(self, ticket: str) -> str:
        """String: a single-use WebSocket ticket → JSON of its token's subject, company
        and exp; set with a TTL, redeemed with GETDEL (any daemon of the cluster may)."""
        return f"{self.prefix}ws:ticket:{ticket}"

    @property
    def alerts_sent(self) -> str:
        """Hash alert name → `raised` or `resolved`: the last transition of a
        cluster-wide alert sent (events stream, webhook), by whichever daemon led then."""
        return f"{self.prefix}alerts:sent"

    @property
    def daemons(self) -> str:
        """Hash daemon id → JSON of its WorkerMetrics and identity."""
        return f"{self.prefix}daemons"

    @property
    def heartbeats(self) -> str:
        """Zset daemon id → last heartbeat ms."""
        return f"{self.prefix}daemons:hb"

    # -- schedules (hashes under `schedule:`, indexes under `schedules:`, so no schedule
    # id can collide with an index name) ----------------------------------------------

    def schedule(self, schedule_id: str) -> str:
        """Hash of one schedule (fields as fleetd.schedules.model.ScheduledJob.from_hash reads)."""
        return f"{self.prefix}schedule:{schedule_id}"

    @property
    def schedules_due(self) -> str:
        """Zset of active schedules scored by next due ms: what the scheduler sleeps on."""
        return f"{self.prefix}schedules:due"

    @property
    def schedules_all(self) -> str:
        """Zset of every schedule scored by creation ms (listing order)."""
        return f"{self.prefix}schedules:all"

    def schedules_of(self, company_id: str | None) -> str:
        """Zset of one company's schedules scored by creation ms (no company: the empty
        one), kept by schedule_save.lua and schedule_remove.lua: a company's listing
        reads its own schedules, never every company's."""
        return f"{self.prefix}schedules:company:{company_id or ''}"

    @property
    def schedules_names(self) -> str:
        """Hash `<name>\n<company_id>` → schedule id: names are unique per company."""
        return f"{self.prefix}schedules:names"

    @property
    def schedules_defaults(self) -> str:
        """Set of default schedule ids ever created: a deleted default stays deleted."""
        return f"{self.prefix}schedules:defaults"

    @property
    def schedulers(self) -> str:
        """Zset daemon id → registration expiry ms of the running schedulers; a schedule
        change pushes a token to each one's wake list (`<prefix>schedules:wake:<id>`)."""
        return f"{self.prefix}schedules:daemons"

    def schedule_wake(self, daemon_id: str) -> str:
        """List one scheduler blocks on between due times (woken by schedule changes)."""
        return f"{self.prefix}schedules:wake:{daemon_id}"

    @property
    def schedules_stats(self) -> str:
        """Hash of scheduler counters across all schedules (missed, fired, errors)."""
        return f"{self.prefix}schedules:stats"

    @property
    def audit(self) -> str:
        """Stream of every mutation, whichever door it came through (fleetd.audit), but
        for refusals of callers without a valid token (`audit_anonymous`)."""
        return f"{self.prefix}audit"

    @property
    def audit_anonymous(self) -> str:
        """Stream of the refused calls of callers without a valid token, capped on its
        own: however many there are, they never evict an authenticated entry."""
        return f"{self.prefix}audit:anonymous"

    def audit_company(self, company_id: str) -> str:
        """Stream of one company's entries (also in `audit`, under the same id), capped
        on its own: another company's volume never shortens this company's trail.
        audit_write.lua builds it the same way."""
        return f"{self.prefix}audit:company:{company_id}"

    @property
    def audit_split(self) -> str:
        """String: the id of the first entry audit_write.lua wrote to the streams above.
        Below it, `audit` holds what the previous version wrote (to it alone): a
        company's read continues there."""
        return f"{self.prefix}audit:split"

    def audit_writer(self, epoch: str) -> str:
        """The highest entry number one audit writer epoch wrote (audit_write.lua)."""
        return f"{self.prefix}audit:writer:{epoch}"

    # -- workflows (fleetd.workflows; node fields in lua/_workflow.lua) ----------------

    def workflow(self, workflow_id: str) -> str:
        """Hash of one workflow: status, policy, counts (left: nodes not finished, failures)."""
        return f"{self.prefix}wf:{workflow_id}"

    def workflow_nodes(self, workflow_id: str) -> str:
        """Hash node name → job id of one workflow."""
        return f"{self.prefix}wf:{workflow_id}:nodes"

    @property
    def workflows(self) -> str:
        """Zset of every workflow id by creation ms."""
        return f"{self.prefix}workflows"

    def workflows_done(self, status: str) -> str:
        """Zset of the workflows that ended `status` (completed, failed, cancelled) by
        finish ms: retention reads it (lua/wf_prune.lua)."""
        return f"{self.prefix}workflows:{status}"

    # -- templates (fleetd.templates) ---------------------------------------------------

    def template(self, member: str) -> str:
        """Hash of one template's versions (`latest`, `v<N>` → JSON); `member` is
        `<n>:<company>:<name>` (fleetd.templates.store.member: length-prefixed as idem)."""
        return f"{self.prefix}template:{member}"

    @property
    def templates(self) -> str:
        """Zset of template members by last save ms."""
        return f"{self.prefix}templates"

    # -- analytics (written by fleetd/backend/lua/_analytics.lua, read by fleetd.analytics)

    def analytics_minute(self, minute: int) -> str:
        """Hash of one minute's figures per type and company (minutes since the epoch)."""
        return f"{self.prefix}an:m:{minute}"

    def analytics_hour(self, hour: int) -> str:
        """Hash of one hour's figures per type and company (hours since the epoch)."""
        return f"{self.prefix}an:h:{hour}"

    def analytics_queues(self, minute: int) -> str:
        """Hash of one minute's jobs completed / failed per named queue."""
        return f"{self.prefix}an:q:{minute}"

    def analytics_sealed_minute(self, minute: int) -> str:
        """String: a closed minute's figures as JSON (fleetd.analytics.sealed)."""
        return f"{self.prefix}an:ms:{minute}"

    def analytics_sealed_hour(self, hour: int) -> str:
        """String: a closed hour's figures as JSON (fleetd.analytics.sealed)."""
        return f"{self.prefix}an:hs:{hour}"

    def analytics_slowest(self, hour: int, company_id: str | None, job_type: str) -> str:
        """Zset job id → run ms of one hour's slowest attempts of a type and company,
        `an:slow:<hour>:<length>:<company>:<type>` (the length as for `idem`)."""
        company = company_id or ""
        return f"{self.prefix}an:slow:{hour}:{len(company.encode())}:{company}:{job_type}"

    def status_keys(self) -> dict[JobStatus, str]:
        return {s: self.status(s) for s in JobStatus}
