"""Arrays of tables in the config (`[[alerts.rules]]`): a key of kind "tables".

Owns `build_tables()`: each table of the array read into the key's item dataclass (its
fields `setting()`s, exactly like a section's), every problem of every table collected
with its place (`alerts.rules[2].threshold: ...`), then the key's cross-table checks
(`problems`); and `tables_to_toml()`, the reverse for `fleetd config show`. An array of
tables cannot come from the environment: one variable cannot spell it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleetd.config.durations import format_duration
from fleetd.config.settings import convert, section_keys

__all__ = ["build_tables", "tables_to_toml"]


def build_tables(
    label: str, meta: Mapping[str, Any], raw: Any, from_env: bool
) -> tuple[tuple[Any, ...], list[str]]:
    """(the tables as instances of meta["schema"], the errors; each names its key)."""
    if from_env:
        return (), [f"{label}: an array of tables cannot be set from the environment"]
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        return (), [f"{label}: must be an array of tables ([[{label}]]), got {raw!r}"]
    schema, items = meta["schema"], []
    errors: list[str] = []
    clean: dict[int, Any] = {}
    keys = section_keys(schema)
    for n, table in enumerate(raw, 1):
        where, before = f"{label}[{n}]", len(errors)
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key not in keys:
                errors.append(f"{where}: unknown key {key!r} (known: {', '.join(keys)})")
                continue
            kind, item_meta = keys[key]
            typed, error = convert(kind, item_meta, value, False)
            if error:
                errors.append(f"{where}.{key}: {error}")
            else:
                values[item_meta["field"]] = typed
        items.append(schema(**values))
        if len(errors) == before:
            clean[n] = items[-1]
    # Cross-table checks see the tables that read cleanly (by their 1-based place), so
    # a bad value is reported once, not again as a missing one.
    if meta["problems"] is not None:
        errors.extend(meta["problems"](label, clean))
    return tuple(items), errors


def tables_to_toml(value: tuple[Any, ...]) -> list[dict[str, Any]]:
    """The tables as TOML spells them (durations as "30s")."""
    out = []
    for item in value:
        row: dict[str, Any] = {}
        for key, (kind, meta) in section_keys(type(item)).items():
            v = getattr(item, meta["field"])
            row[key] = format_duration(v) if kind == "duration" else v
        out.append(row)
    return out
