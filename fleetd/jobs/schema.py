"""Job data schemas: JSON Schema (draft 2020-12) compiled once, errors as field paths.

Owns:
- `compile_schema()`: checks a handler's schema when its plugin loads (a broken schema,
  or a `format` fleetd cannot check, is a start-up error, not a surprise at enqueue);
- `SchemaValidator.errors()`: every problem of one job's data, each with its path
  (`data.to`, `data.cc[1]`) and a message written for the person who enqueued it;
- the formats fleetd checks. jsonschema silently ignores a format whose checker is
  missing (`date-time` needs an optional package), so fleetd names its own set and
  refuses schemas that use others.

Pure logic, no I/O: e-mail addresses are checked for syntax only (no DNS lookups).

jsonschema and email-validator are imported when a schema is first compiled or an
address checked, not with this module: they cost ~45 ms of start-up that the CLI's
commands which never validate job data (`fleetd stats`, `jobs list`, …) would pay for
importing the handler contract (bench/cli_startup.py).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fleetd.jobs.model import FieldError

if TYPE_CHECKING:
    from jsonschema import FormatChecker
    from jsonschema import ValidationError as SchemaError

__all__ = ["FORMATS", "SchemaValidator", "compile_schema", "field_path"]

# Most errors reported for one job's data: enough to fix a form, bounded for a 422 body.
MAX_ERRORS = 50
# Keywords whose values are data, not subschemas: a "format" key inside them is not one.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TYPE_NOUNS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
    "null": "null",
}


def _check_email(value: object, *, display_name: bool) -> bool:
    if not isinstance(value, str):
        return True  # "format" constrains strings only; "type" catches the rest
    if "\r" in value or "\n" in value:
        raise ValueError("must not contain line breaks")
    import email_validator

    try:
        email_validator.validate_email(
            value, check_deliverability=False, allow_display_name=display_name
        )
    except email_validator.EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return True


def _check_date_time(value: object) -> bool:
    """RFC 3339: a date, a time and an offset (a time without a zone is ambiguous)."""
    if not isinstance(value, str):
        return True
    text = value.replace("Z", "+00:00").replace("z", "+00:00")
    if "T" not in text.upper() or datetime.fromisoformat(text).tzinfo is None:
        raise ValueError("needs a date, a time and a UTC offset or Z")
    return True


def _check_date(value: object) -> bool:
    if isinstance(value, str):
        if len(value) != len("2024-01-31"):
            raise ValueError("must be YYYY-MM-DD")
        date.fromisoformat(value)
    return True


def _check_uri(value: object) -> bool:
    if isinstance(value, str):
        parts = urlsplit(value)
        if not parts.scheme or not (parts.netloc or parts.path):
            raise ValueError("must be an absolute URI with a scheme")
    return True


def _check_regex(value: object) -> bool:
    if isinstance(value, str):
        re.compile(value)
    return True


def _strings(check: Callable[[str], object]) -> Callable[[object], bool]:
    def run(value: object) -> bool:
        if isinstance(value, str):
            check(value)
        return True

    return run


# format → (checker, the noun used in messages). Each checker raises on a bad value;
# its exception text becomes the detail of the message.
FORMATS: dict[str, tuple[Callable[[object], bool], str]] = {
    "email": (lambda v: _check_email(v, display_name=False), "e-mail address"),
    "mailbox": (lambda v: _check_email(v, display_name=True), "e-mail address"),
    "date": (_check_date, "date (YYYY-MM-DD)"),
    "date-time": (_check_date_time, "date and time (RFC 3339)"),
    "uuid": (_strings(uuid.UUID), "UUID"),
    "ipv4": (_strings(ipaddress.IPv4Address), "IPv4 address"),
    "ipv6": (_strings(ipaddress.IPv6Address), "IPv6 address"),
    "uri": (_check_uri, "URI"),
    "regex": (_check_regex, "regular expression"),
}


@functools.cache
def _format_checker() -> FormatChecker:
    """The one checker of FORMATS, built on first use."""
    from jsonschema import FormatChecker

    checker = FormatChecker(formats=())
    for name, (func, _) in FORMATS.items():
        checker.checks(name, raises=(ValueError, TypeError))(func)
    return checker


def field_path(path: Iterable[object], root: str = "data") -> str:
    """`("cc", 1)` → `data.cc[1]`; keys that are not identifiers are quoted."""
    out = root
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and _IDENTIFIER.fullmatch(part):
            out += f".{part}"
        else:
            out += f"[{str(part)!r}]"
    return out


def _formats_used(schema: object) -> Iterator[str]:
    if isinstance(schema, Mapping):
        for key, value in schema.items():
            if key == "format" and isinstance(value, str):
                yield value
            elif key not in _DATA_KEYWORDS:
                yield from _formats_used(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _formats_used(item)


def _noun(schema_type: object) -> str:
    types = schema_type if isinstance(schema_type, list) else [schema_type]
    return " or ".join(_TYPE_NOUNS.get(str(t), str(t)) for t in types)


def _unexpected(error: SchemaError) -> list[str]:
    """The property names an additionalProperties error is about."""
    schema, instance = error.schema, error.instance
    if not isinstance(schema, Mapping) or not isinstance(instance, Mapping):
        return []
    known = set(schema.get("properties", {}))
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    return sorted(
        str(k) for k in instance if k not in known and not any(p.search(str(k)) for p in patterns)
    )


def _plural(n: object, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _message(error: SchemaError) -> str:
    """A sentence for one keyword failure (the path is printed before it)."""
    kw, value = error.validator, error.instance
    expected: Any = error.validator_value
    if kw == "type":
        return f"must be {_noun(expected)}"
    if kw == "format":
        noun = FORMATS.get(str(expected), (None, str(expected)))[1]
        detail = f" ({error.cause})" if error.cause and str(error.cause) else ""
        return f"{value!r} is not a valid {noun}{detail}"
    if kw == "enum":
        return "must be one of " + ", ".join(map(repr, expected))
    if kw == "const":
        return f"must be {expected!r}"
    if kw == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters"
    if kw == "maxLength":
        return f"must be at most {expected} characters"
    if kw == "pattern":
        return f"{value!r} does not match the pattern {expected!r}"
    if kw in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        word = {
            "minimum": "at least",
            "exclusiveMinimum": "more than",
            "maximum": "at most",
            "exclusiveMaximum": "less than",
        }[str(kw)]
        return f"must be {word} {expected}, got {value!r}"
    if kw == "minItems":
        return f"must list at least {_plural(expected, 'item')}"
    if kw == "maxItems":
        return f"must list at most {_plural(expected, 'item')}"
    if kw == "uniqueItems":
        return "must not list an item twice"
    if kw == "multipleOf":
        return f"must be a multiple of {expected}"
    return error.message


def _flatten(error: SchemaError) -> Iterator[FieldError]:
    """Field errors for one jsonschema error, unfolding the ones it is made of."""
    kw = error.validator
    expected: Any = error.validator_value
    if kw == "required":
        # jsonschema reports a missing property at its parent; name the property itself.
        instance: Any = error.instance
        missing = [k for k in expected if k not in instance]
        for name in missing:
            yield FieldError(field_path([*error.absolute_path, name]), "is required")
        return
    if kw == "additionalProperties" and (names := _unexpected(error)):
        for name in names:
            yield FieldError(field_path([*error.absolute_path, name]), "unknown field")
        return
    if kw in ("anyOf", "oneOf") and error.context:
        # Report the branch whose type the value has (a string given to "a string or a
        # list" is judged as a string); with no such single branch, name the choices.
        branches: dict[object, list[SchemaError]] = {}
        for sub in error.context:
            branches.setdefault(sub.schema_path[0] if sub.schema_path else 0, []).append(sub)
        typed = [
            errs
            for errs in branches.values()
            if not any(e.validator == "type" and not e.relative_path for e in errs)
        ]
        if len(typed) == 1:
            for sub in sorted(typed[0], key=lambda e: list(map(str, e.absolute_path))):
                yield from _flatten(sub)
            return
        types = [s.get("type") for s in expected if isinstance(s, Mapping)]
        if types and all(types):
            yield FieldError(field_path(error.absolute_path), f"must be {_noun(types)}")
            return
    yield FieldError(field_path(error.absolute_path), _message(error))


class SchemaValidator:
    """One compiled schema. `errors(data)` lists every problem, sorted by path."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        from jsonschema import Draft202012Validator

        self.schema = schema
        self._validator = Draft202012Validator(schema, format_checker=_format_checker())

    def errors(self, data: object) -> list[FieldError]:
        found: list[FieldError] = []
        for error in sorted(
            self._validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))
        ):
            for field_error in _flatten(error):
                if field_error not in found:
                    found.append(field_error)
            if len(found) >= MAX_ERRORS:
                break
        return sorted(found[:MAX_ERRORS], key=lambda e: e.field)


def compile_schema(schema: object) -> SchemaValidator:
    """Check a schema (raises ValueError saying what is wrong) and compile it."""
    if not isinstance(schema, Mapping):
        raise ValueError(f"schema must be a JSON Schema object, got {type(schema).__name__}")
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError as BadSchema

    try:
        Draft202012Validator.check_schema(schema)
    except BadSchema as exc:
        where = "/".join(map(str, exc.absolute_path)) or "(root)"
        raise ValueError(f"invalid JSON Schema at {where}: {exc.message}") from None
    if schema.get("type", "object") != "object":
        raise ValueError('schema must describe an object ("type": "object")')
    if unknown := sorted(set(_formats_used(schema)) - FORMATS.keys()):
        raise ValueError(
            f"schema uses format(s) {', '.join(map(repr, unknown))} that fleetd does not "
            f"check (known: {', '.join(sorted(FORMATS))})"
        )
    return SchemaValidator(schema)
