"""Validation errors: what a refused input says, one message per rule.

Owns:
- `FieldError` (one problem: a field path such as `data.cc[1]` or `jobs[3].priority`,
  and a sentence) and `ValidationError` (every problem of one input, raised by
  declarations, handlers and plugins alike; the HTTP layer answers 422 with them);
- `rule()`: a check written as a function that raises ValidationError (parse_ts,
  parse_priority, load_timezone …) used as a pydantic field rule, its message kept;
- `explained()`: one sentence for every failure of a field's declared constraints;
- `from_pydantic()`: pydantic's errors as FieldErrors, with the messages of the
  generic constraints (`unknown field`, `is required`, `must be at most 128
  characters` …) defined once in `MESSAGES`.

Pure logic, no I/O. The declarations themselves live in fleetd.jobs.fields (the field
rules), fleetd.jobs.model (EnqueueRequest) and fleetd.schedules.model (ScheduleSpec).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic import PlainValidator, WrapValidator
from pydantic_core import PydanticCustomError, core_schema

__all__ = [
    "MESSAGES",
    "FieldError",
    "ValidationError",
    "explained",
    "field_path",
    "from_pydantic",
    "invalid",
    "rule",
]

# The error type of every message fleetd writes itself (rule, explained, invalid).
FLEETD_ERROR = "fleetd"

# pydantic error type → fleetd's sentence; `{name}` takes the error's context value.
# Types not listed keep pydantic's own message.
MESSAGES: dict[str, str] = {
    "extra_forbidden": "unknown field",
    "unexpected_keyword_argument": "unknown field",
    "missing": "is required",
    "missing_argument": "is required",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dataclass_type": "must be a JSON object",
    "dataclass_exact_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "string_type": "must be a string",
    "string_unicode": "must be valid Unicode text (no lone UTF-16 surrogates)",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "too_short": "must list at least {min_length} item(s)",
    "too_long": "must list at most {max_length} items",
    "enum": "must be one of {expected}",
    "literal_error": "must be one of {expected}",
}


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem of a request: `field` is its path (`data.to`, `data.cc[1]`)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ValidationError(ValueError):
    """Bad input. `field` and `message` describe the first problem; `errors` lists
    every problem found, for the CLI to print and the HTTP layer to return as a 422."""

    def __init__(
        self, field: str, message: str, errors: Sequence[FieldError] | None = None
    ) -> None:
        self.errors: list[FieldError] = list(errors) if errors else [FieldError(field, message)]
        super().__init__("; ".join(map(str, self.errors)))
        self.field = field
        self.message = message

    @classmethod
    def of(cls, errors: Sequence[FieldError]) -> ValidationError:
        """One error for many field errors (at least one)."""
        return cls(errors[0].field, errors[0].message, errors)

    def prefixed(self, prefix: str) -> ValidationError:
        """The same errors with each field path under `prefix` (e.g. `jobs[3].`)."""
        return ValidationError.of([FieldError(prefix + e.field, e.message) for e in self.errors])


def invalid(message: str) -> PydanticCustomError:
    """A pydantic error carrying fleetd's own sentence (raise it inside a validator)."""
    # The sentence goes in the context, not the template: it may quote user input
    # holding braces.
    return PydanticCustomError(FLEETD_ERROR, "{reason}", {"reason": message})


def rule(check: Callable[[Any], Any], input_type: Any) -> PlainValidator:
    """A field rule written as a function raising ValidationError; its message is
    kept, its field path is the field's. `input_type` is what the OpenAPI document
    says the field accepts."""

    def run(value: Any) -> Any:
        try:
            return check(value)
        except ValidationError as exc:
            raise invalid(exc.message) from None

    return PlainValidator(run, json_schema_input_type=input_type)


def explained(message: str) -> WrapValidator:
    """Any failure of the constraints declared before it is reported as `message` (one
    error on the field itself, not one per list item or constraint)."""

    def wrap(value: Any, handler: core_schema.ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except pydantic.ValidationError:
            raise invalid(message) from None

    return WrapValidator(wrap)


def field_path(loc: Sequence[int | str], root: str = "body") -> str:
    """`("jobs", 3, "priority")` → `jobs[3].priority`; `()` → `body`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or root


def _message(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == FLEETD_ERROR:
        return str(ctx["reason"])
    template = MESSAGES.get(kind)
    if template is None:
        return str(error["msg"])
    try:
        return template.format(**ctx)
    except (KeyError, IndexError):
        return str(error["msg"])


def _unknown(error: Any) -> bool:
    return error["type"] in ("extra_forbidden", "unexpected_keyword_argument")


def from_pydantic(exc: pydantic.ValidationError, prefix: str = "") -> ValidationError:
    """Every error of one pydantic validation as fleetd's ValidationError: in the
    order the fields are declared, unknown fields after the known ones of the same
    object, sorted by name."""
    errors = exc.errors(include_url=False, include_input=False)
    # Each object's errors stay where pydantic reported the object's first one.
    first: dict[tuple[Any, ...], int] = {}
    for index, error in enumerate(errors):
        first.setdefault(tuple(error["loc"][:-1]), index)

    def order(item: tuple[int, Any]) -> tuple[int, bool, str, int]:
        index, error = item
        loc = tuple(error["loc"])
        unknown = _unknown(error) and bool(loc)
        return first[loc[:-1]], unknown, str(loc[-1]) if unknown else "", index

    ordered = [e for _, e in sorted(enumerate(errors), key=order)]
    found: list[FieldError] = []
    for error in ordered:
        field_error = FieldError(prefix + field_path(error["loc"]), _message(error))
        if field_error not in found:
            found.append(field_error)
    return ValidationError.of(found)
