"""The audit log: every mutation, whichever door it came through, exactly once.

Modules: entry (the entry, the closed set of actions, the doors and their subjects),
store (writing to the Redis streams — the shared one, each company's, the anonymous
refusals' — with per-writer dedupe), spool (the durable local
file of entries Redis could not take), backlog (the in-memory backlog, its spill rule,
`AuditSink`, `AuditTrail`), writer (the daemon's trio service), background (the
CLI's and the client's), reader (reading back, filtered).

Doors and what they record — the HTTP API (every call of a mutating endpoint, refusals
included), the CLI (`enqueue`, `jobs cancel|reset`, `cleanup`, `schedules
add|update|rm|pause|resume|run-now`), fleetd.client.Client (enqueue, enqueue_many,
cancel, reset), the scheduler (each job it enqueues, each default schedule it
creates) and handlers (`ctx.enqueue`) — are wired where each door is; they build the
entry and `submit` it to their process's writer (`Engine.audit`).
"""
