"""How a config key is declared, parsed and checked: the `setting()` machinery.

Owns:
- `setting()`: a dataclass field whose metadata (default, kind, limits, choices,
  check, TOML key, secret, help) drives parsing and validation, so a section is a frozen
  dataclass of settings with no per-key code — core sections (fleetd.config.sections)
  and the sections plugins declare (`ConfigSection`) alike;
- `section_keys(cls)`: a section's keys as TOML spells them, with kind and metadata;
- `convert()`: a raw TOML value or environment string -> the typed value, or the error
  message (TOML's types are checked, never coerced);
- `ConfigSection` and `section_problems()`: a plugin's section and what is wrong with
  its declaration;
- `ConfigError`, which carries every problem found, each naming its key.

Sans-IO: nothing here reads files or the environment.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast, get_type_hints

from fleetd.config.durations import DURATION_EXAMPLES, format_duration, parse_duration

__all__ = [
    "DAY",
    "HOUR",
    "MAX_PORT",
    "MINUTE",
    "SECOND",
    "Check",
    "ConfigError",
    "ConfigSection",
    "Keys",
    "convert",
    "is_host_port",
    "parse_value",
    "prefixed",
    "section_keys",
    "section_problems",
    "setting",
]

SECOND, MINUTE, HOUR, DAY = 1.0, 60.0, 3_600.0, 86_400.0
MAX_PORT = 65_535

_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})
Check = Callable[[Any], str | None]
Keys = dict[str, tuple[str, Mapping[str, Any]]]  # TOML key -> (kind, metadata + "field")
# "float" (a TOML integer or float) is declared explicitly: kind="float".
_KINDS: dict[object, str] = {str: "str", int: "int", bool: "bool", tuple[str, ...]: "list"}
_TOML_TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str, "duration": str, "bool": bool, "int": int, "float": (int, float)
}  # fmt: skip
_NOUNS = {
    "int": "an integer",
    "float": "a number",
    "tables": "an array of tables",
    "count": "an integer",
    "duration": "a duration",
    "bool": "true or false",
    "list": "a list of strings",
    "str": "a string",
}
# A section name is a TOML table and the middle of FLEETD_<SECTION>_<KEY>: lower case,
# and short enough that the variable stays readable (the longest core one has 11).
_SECTION_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


class ConfigError(Exception):
    """Invalid configuration; `errors` holds every problem found, each naming its key."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("invalid configuration:\n  " + "\n  ".join(errors))


def setting(
    default: Any,
    help: str,
    *,
    kind: str | None = None,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    choices: tuple[str, ...] | None = None,
    unique: bool = False,
    check: Check | None = None,
    key: str | None = None,
    secret: bool = False,
    schema: type | None = None,
    problems: Callable[[str, Mapping[int, Any]], list[str]] | None = None,
) -> Any:
    """A config key: a dataclass field whose metadata drives parsing and validation.

    kind: "duration" for float seconds written "30s"; "count" for an int or the string
    "auto" (resolved by the code that uses it); "float" for a number; else from the
    type (str, int, bool, tuple[str, ...] = "list"). min/max are inclusive (item count
    for lists), above is exclusive. choices: allowed values (of each item for lists).
    check: error or None.
    key: the TOML key when it differs from the field name (`from`, a Python keyword).
    secret: masked when the config is shown (`fleetd config show`).
    schema: for kind "tables" (an array of tables, `[[section.key]]`), the frozen
    dataclass of settings each table is read into (fleetd.config.tables); problems:
    (label, {place: table read cleanly}) -> what is wrong across them (every error at once).
    """
    meta = {
        "help": help,
        "kind": kind,
        "min": min,
        "max": max,
        "above": above,
        "choices": choices,
        "unique": unique,
        "check": check,
        "key": key,
        "secret": secret,
        "schema": schema,
        "problems": problems,
    }
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ConfigSection:
    """A config section a plugin declares (hook `fleetd_config_sections`).

    name: its TOML table, e.g. "email" for `[email]`; its keys are overridden from the
    environment as FLEETD_<NAME>_<KEY>. It must not be a core section's name nor another
    plugin's.
    schema: a frozen dataclass whose fields are all `setting()`s — types, defaults,
    limits and help, exactly like a core section's. Its defaults are the section's.
    """

    name: str
    schema: type[Any]


def prefixed(*prefixes: str) -> Check:
    """A check that a string starts with one of `prefixes`."""

    def check(value: str) -> str | None:
        if value.startswith(prefixes):
            return None
        return f"must start with {', '.join(prefixes[:-1])} or {prefixes[-1]}, got {value!r}"

    return check


def is_host_port(value: str) -> bool:
    host, _, port = value.rpartition(":")  # rpartition: "[::1]:0" keeps its colons
    return bool(host) and port.isdigit() and int(port) <= MAX_PORT


_KEYS_OF: dict[type[Any], Keys] = {}


def section_keys(cls: type[Any]) -> Keys:
    """A section dataclass's keys as TOML spells them -> (kind, metadata with "field");
    computed once per class (every load and dump asks)."""
    if (known := _KEYS_OF.get(cls)) is not None:
        return known
    hints = get_type_hints(cls)
    keys: Keys = {
        (f.metadata.get("key") or f.name): (
            f.metadata.get("kind") or _KINDS[hints[f.name]],
            {**f.metadata, "field": f.name},
        )
        for f in dataclasses.fields(cls)
    }
    _KEYS_OF[cls] = keys
    return keys


def section_problems(section: object) -> list[str]:
    """What is wrong with a plugin's section declaration ([] = nothing)."""
    if not isinstance(section, ConfigSection):
        return [f"expected a fleetd.ConfigSection, got {type(section).__name__}"]
    name, cls = section.name, section.schema
    if not isinstance(name, str) or not _SECTION_NAME.fullmatch(name):
        return [f"section name {name!r} must be 1 to 32 of a-z 0-9 _, starting with a letter"]
    what = f"section [{name}]"
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        return [f"{what}: schema must be a dataclass, got {cls!r}"]
    if not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        return [f"{what}: schema {cls.__name__} must be frozen (@dataclass(frozen=True))"]
    problems = [
        f"{what}: {f.name} is not declared with fleetd.setting(default, help)"
        for f in dataclasses.fields(cls)
        if not f.metadata.get("help")
    ]
    if problems:
        return problems
    try:
        section_keys(cls)
    except (KeyError, NameError, TypeError) as exc:
        return [f"{what}: a key's type is not str, int, bool or tuple[str, ...] ({exc})"]
    # The defaults must pass the section's own checks: defaults are what most users run.
    defaults = cls()
    for key, (kind, meta) in section_keys(cls).items():
        value = getattr(defaults, meta["field"])
        if problem := _violation(kind, meta, value, value):
            problems.append(f"{what}: the default of {key} {problem}")
    return problems


def _describe(kind: str, meta: Mapping[str, Any]) -> str:
    """What a valid value looks like, e.g. "an integer from 1 to 10000"."""
    if meta["choices"]:
        return ("a list of " if kind == "list" else "one of ") + ", ".join(meta["choices"])
    low, high, above, noun = meta["min"], meta["max"], meta["above"], _NOUNS[kind]
    show: Callable[[float], str] = format_duration if kind == "duration" else str
    if kind == "count":
        return _describe("int", meta) + ' or "auto"'
    if kind not in ("int", "float", "duration"):
        return noun
    if low is not None and high is not None:
        return f"{noun} from {show(low)} to {show(high)}"
    if above is not None:
        return f"{noun} greater than {show(above)}"
    return f"{noun} of at least {show(low)}" if low is not None else noun


def parse_value(kind: str, raw: Any, from_env: bool) -> Any:
    """The typed value of a TOML value or an environment string; ValueError if it does
    not parse or, from TOML, has the wrong type (TOML's types are checked, not coerced)."""
    if kind == "count":  # an integer, or "auto"
        if raw == "auto":
            return raw
        kind = "int"
    if from_env:
        if kind == "bool" and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        if kind == "list":
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        raw = int(raw) if kind == "int" else float(raw) if kind == "float" else raw
    elif kind == "list":
        if not (isinstance(raw, list) and all(isinstance(i, str) for i in raw)):
            raise ValueError
        return tuple(raw)
    if not isinstance(raw, _TOML_TYPES[kind]) or (
        kind in ("int", "float") and isinstance(raw, bool)
    ):
        raise ValueError
    if kind == "float":
        number = float(cast(float, raw))
        if not math.isfinite(number):  # TOML spells nan and inf
            raise ValueError
        return number
    return parse_duration(str(raw)) if kind == "duration" else raw


def _violation(kind: str, meta: Mapping[str, Any], value: Any, raw: object) -> str | None:
    """Why a well-typed value is not allowed, or None."""
    low, high, above = meta["min"], meta["max"], meta["above"]
    if kind == "list":
        if low is not None and len(value) < low:
            return f"must list at least {int(low)} item(s)"
        if bad := [i for i in value if meta["choices"] and i not in meta["choices"]]:
            return f"unknown item {bad[0]!r} (choose from {', '.join(meta['choices'])})"
        if meta["unique"] and (dupes := sorted({i for i in value if value.count(i) > 1})):
            return f"duplicate item(s) {', '.join(dupes)}"
    elif not (kind == "count" and value == "auto") and (
        (low is not None and value < low)
        or (high is not None and value > high)
        or (above is not None and value <= above)
        or (meta["choices"] and value not in meta["choices"])
    ):
        return f"must be {_describe(kind, meta)}, got {raw!r}"
    check: Check | None = meta["check"]
    return check(value) if check else None


def convert(kind: str, meta: Mapping[str, Any], raw: Any, from_env: bool) -> tuple[Any, str]:
    """(value, "") or (None, error) for a raw TOML value or environment string."""
    try:
        value = parse_value(kind, raw, from_env)
    except ValueError as exc:
        if kind != "duration":
            return None, f"must be {_describe(kind, meta)}, got {raw!r}"
        # parse_duration's message quotes the input; a bare error means "not a string".
        return None, str(exc) or f"must be a duration string ({DURATION_EXAMPLES}), got {raw!r}"
    return (None, problem) if (problem := _violation(kind, meta, value, raw)) else (value, "")
