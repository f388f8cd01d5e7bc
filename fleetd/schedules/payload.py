"""A schedule's job data: sealed at rest, opened again, and made into each job's row.

Owns, for fleetd.schedules.store (saving) and fleetd.schedules.firing (running):
- `at_rest`: the data as a save stores it, sealed like a job's (`encrypt`, or fields
  the handler marks sensitive), bound to the schedule's id, never sealing less than
  was sealed before; `refuse_redacted` stops a redaction placeholder ("***") sent back
  from being stored over the secret;
- `open_schedule_data`: a sealed schedule's data in plaintext;
- `sealed_errors`: a ValidationError about data opened from a sealed schedule, its
  messages (which may quote the value) replaced, so no answer, log line, event or
  `last_error` repeats sealed plaintext;
- `job_row`: the job row (fleetd.backend.codec.JobRow, built by QueueOps like every
  enqueue) of one occurrence — tagged `schedule:<id>` and `occurrence:<ISO time>`, with
  the idempotency key `schedule:<id>:<ISO time>` — or of a manual run (tagged
  `run-now`); sealed data is opened here and sealed again for the new job.

Pure functions of the queue operations (registry, sealer, defaults): no Redis I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fleetd.backend.codec import JobRow
from fleetd.jobs.model import EnqueueRequest, ValidationError
from fleetd.jobs.queue import QueueOps
from fleetd.jobs.sealing import REDACTED, SealError, echoed_redaction, widen
from fleetd.jobs.validation import FieldError
from fleetd.schedules.model import ScheduledJob, ScheduleSpec, occurrence_tags

__all__ = ["at_rest", "job_row", "open_schedule_data", "refuse_redacted", "sealed_errors"]

# What a check of sealed stored data says instead of the handler's message, which may
# quote the value ("'x@y' is not a valid email").
SEALED_INVALID = (
    "the stored value (sealed, not shown) is not valid for this job type; send the data again"
)


def sealed_errors(exc: ValidationError, job: ScheduledJob) -> ValidationError:
    """`exc` (raised checking `job`'s opened data) without the values it quotes: every
    message replaced; with whole-data sealing the paths too (they name its keys)."""
    if job.encrypt:
        return ValidationError("data", SEALED_INVALID)
    return ValidationError.of([FieldError(e.field, SEALED_INVALID) for e in exc.errors])


def job_row(queue_ops: QueueOps, job: ScheduledJob, occurrence_ms: int | None) -> JobRow:
    """The job row of one occurrence, or of a manual run when occurrence_ms is None.
    Raises ValidationError when the installed handler rejects the stored data (its
    schema changed since the schedule was saved) or sealed data cannot be opened."""
    tags: tuple[str, ...] = (f"schedule:{job.id}", "run-now")
    idem: str | None = None
    if occurrence_ms is not None:
        listed, idem = occurrence_tags(job.id, occurrence_ms)
        tags = tuple(listed)
    data = job.data
    if job.sealed:
        data = open_schedule_data(queue_ops, job)
    req = EnqueueRequest(
        type=job.job_type, data=data, priority=job.priority, company_id=job.company_id,
        user_id=job.user_id, tags=tags, idempotency_key=idem, encrypt=job.encrypt,
    )  # fmt: skip
    if job.job_type in queue_ops.registry:
        try:
            return queue_ops.prepare(req)
        except ValidationError as exc:
            raise (sealed_errors(exc, job) if job.sealed else exc) from None
    # Not installed in this process: enqueue it all the same, with the config's
    # defaults; a daemon that has the handler runs it (the data was checked when the
    # schedule was saved). Sealed parts are sealed again, for the job this time.
    paths: Sequence[str] | None = ()
    if job.sealed:
        paths = None if job.encrypt else tuple(json.loads(job.sealed))
    return queue_ops.build_row(req, data, None, paths)


def open_schedule_data(queue_ops: QueueOps, job: ScheduledJob) -> dict[str, Any]:
    """A sealed schedule's data in plaintext; ValidationError on `data` if it cannot be."""
    sealer = queue_ops.sealer
    try:
        if sealer is None or job.stored_data is None:
            raise SealError("no [encryption] keys in this process")
        return sealer.open_data(job.stored_data, job.sealed, f"schedule:{job.id}")
    except SealError as exc:
        raise ValidationError("data", f"cannot decrypt data: {exc}") from None


def at_rest(
    queue_ops: QueueOps, spec: ScheduleSpec, current: ScheduledJob | None, keep_data: bool
) -> tuple[dict[str, Any], str]:
    """(data as stored, sealing marker) of `spec` saved over `current` (None: new).

    `keep_data`: spec.data is current's, redacted (this process cannot open it), so
    the stored data is kept as it is, ciphertext and marker. Otherwise spec.data is
    plaintext, sealed whole with `encrypt`, else at the handler's sensitive paths
    and at every path current sealed — the registry of this process may lack the
    handler (not installed here, disabled) or know an older version of it. Only
    `encrypt` false (an update keeps it unless told) narrows whole-data sealing.
    """
    if keep_data:  # only sealed data can be unreadable
        assert current is not None and current.stored_data is not None
        return current.stored_data, current.sealed
    context = f"schedule:{spec.id}"
    if spec.encrypt:
        return queue_ops.seal(spec.data, context, None)
    before = current.sealed if current is not None and not current.encrypt else ""
    paths = widen(before, queue_ops.registry.sensitive(spec.job_type or ""))
    if paths == ():
        return spec.data, ""
    return queue_ops.seal(spec.data, context, paths)


def refuse_redacted(data: Mapping[str, Any], current: ScheduledJob) -> None:
    """ValidationError when `data` sends back the placeholders readers were shown
    for current's sealed values (the dashboard's edit dialog would otherwise store
    "***" over the secret)."""
    path = echoed_redaction(data, current.sealed) if current.sealed else None
    if path is None:
        return
    shown = f'"{REDACTED}"' if path else '{"encrypted": true}'
    raise ValidationError(
        f"data.{path}" if path else "data",
        f"is the placeholder {shown} shown for a sealed value, which cannot be sent "
        "back redacted: send the value in full, or leave data out to keep it",
    )
