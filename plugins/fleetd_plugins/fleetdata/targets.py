"""Where `data_cleanup` deletes: one relation and its timestamp column per cleanup type.

By default the contract's views (`gps_tracks.recorded_at`, `audit_logs.created_at`,
`driver_events.occurred_at`), which PostgreSQL deletes through when they are simple
(auto-updatable). A platform whose views are not simple names its real table instead,
in `[data] cleanup_gps_tracks` (…`_audit_logs`, …`_driver_events`):
`"[schema.]relation.timestamp_column"`, e.g. `"telemetry.positions.recorded_at"`. The
relation must also have the contract's `id` and `company_id` columns (batches are
chosen by id, a job's company by company_id); `fleetd data check` checks all of it.

Names are identifiers only — letters, digits and `_`, not starting with a digit, at
most 63 characters (PostgreSQL's limit) — checked when the config is loaded, and the
SQL quotes them through the database library (`Db.ident`), so a config value never
becomes SQL text of its own. Quoted names are exact: write them as the catalog has
them (PostgreSQL folds unquoted names to lower case when tables are created).

Owns `Target`, `parse_target`, `check_target` (the config check) and `DEFAULTS`.
Pure logic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULTS", "Target", "check_target", "parse_target"]

# PostgreSQL truncates identifiers past NAMEDATALEN - 1 = 63 bytes: a longer name would
# silently mean another one.
MAX_IDENTIFIER = 63
_IDENTIFIER = re.compile(rf"[A-Za-z_][A-Za-z0-9_]{{0,{MAX_IDENTIFIER - 1}}}")


@dataclass(frozen=True)
class Target:
    """A relation (optionally schema-qualified) and the timestamp column clean-up
    compares with its cutoff."""

    schema: str | None
    relation: str
    column: str

    @property
    def parts(self) -> tuple[str, ...]:
        """The relation's name parts, for `Db.ident(*parts)`."""
        return (self.relation,) if self.schema is None else (self.schema, self.relation)

    def __str__(self) -> str:
        return ".".join((*self.parts, self.column))


# cleanup_type → the contract's view and its time column.
DEFAULTS: dict[str, Target] = {
    "gps_tracks": Target(None, "gps_tracks", "recorded_at"),
    "audit_logs": Target(None, "audit_logs", "created_at"),
    "driver_events": Target(None, "driver_events", "occurred_at"),
}


def parse_target(text: str) -> Target:
    """`relation.column` or `schema.relation.column`; ValueError saying what is wrong."""
    parts = text.split(".")
    if len(parts) not in (2, 3):
        raise ValueError(
            f"must be 'relation.timestamp_column' or 'schema.relation.timestamp_column', "
            f"got {text!r}"
        )
    for part in parts:
        if not _IDENTIFIER.fullmatch(part):
            raise ValueError(
                f"{part!r} is not a plain identifier (letters, digits and _, not starting "
                f"with a digit, at most {MAX_IDENTIFIER} characters), in {text!r}"
            )
    if len(parts) == 2:
        return Target(None, parts[0], parts[1])
    return Target(parts[0], parts[1], parts[2])


def check_target(value: str) -> str | None:
    """The config check of a `[data] cleanup_*` key."""
    try:
        parse_target(value)
    except ValueError as exc:
        return str(exc)
    return None
