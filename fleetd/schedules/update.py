"""A schedule update planned: the definition it stores, under the sealing rules.

Owns `plan_update` for fleetd.schedules.store (PUT /jobs/scheduled/{id}, `fleetd
schedules update|pause|resume`, `add --upsert`): the stored definition with its data
opened where this process can, the changes applied, and the rules no update breaks:
- sealed data is never stored or shown unsealed unless the caller sent the data again
  in full: `encrypt` turned off without `data` is refused (422 on `data`), since the
  answer and every later read would show the sealed plaintext;
- a redaction placeholder sent back is refused (fleetd.schedules.payload);
- the data is checked against the handler only when data, job type, priority or
  `encrypt` change; a check of data the caller did not send (it was opened from sealed
  storage) reports without the values the handler's messages quote;
- sealed data this process cannot open is kept as stored when nothing needs it, and
  the reason it cannot be opened is the error when something does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fleetd.jobs.model import ValidationError
from fleetd.schedules.model import ScheduledJob, ScheduleSpec
from fleetd.schedules.payload import refuse_redacted, sealed_errors

if TYPE_CHECKING:
    from fleetd.schedules.store import ScheduleOps

__all__ = ["ENCRYPT_OFF_NEEDS_DATA", "plan_update"]

ENCRYPT_OFF_NEEDS_DATA = (
    "send the data again in full to turn sealing off (encrypt false): sealed data is "
    "never stored unsealed or shown"
)


def plan_update(
    ops: ScheduleOps, current: ScheduledJob, changes: Mapping[str, Any]
) -> tuple[ScheduleSpec, ScheduleSpec, bool]:
    """(the stored definition, the new one, keep_data): keep_data means the stored
    data stays exactly as it is (sealed, and unreadable here). Raises ValidationError."""
    sent_data = "data" in changes
    if sent_data and isinstance(changes["data"], Mapping):
        refuse_redacted(changes["data"], current)
    unreadable: ValidationError | None = None
    try:
        stored = ops.spec_of(current)
    except ValidationError as exc:
        stored, unreadable = current.spec(), exc  # data redacted
    spec = stored.updated(changes)
    recheck = sent_data or spec.encrypt != stored.encrypt
    recheck |= (spec.job_type, spec.priority) != (stored.job_type, stored.priority)
    keep_data = False
    if unreadable is not None and not sent_data:
        if recheck:  # checking or sealing anew needs the plaintext
            raise unreadable
        keep_data = True
    if stored.encrypt and not spec.encrypt and not sent_data:
        raise ValidationError("data", ENCRYPT_OFF_NEEDS_DATA)
    if recheck:
        try:
            spec = ops.check(spec)
        except ValidationError as exc:
            if current.sealed and not sent_data:
                raise sealed_errors(exc, current) from None
            raise
    return stored, spec, keep_data
