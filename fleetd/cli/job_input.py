"""What `fleetd enqueue` reads: a job from its flags (`--data` as a JSON object), or many
from a JSON-lines file; a bad input is one line on stderr and exit 2 (fleetd.cli.common.fail)."""

from __future__ import annotations

import argparse
from typing import Any

from fleetd.cli.common import fail, parse_json, read_input

__all__ = ["parse_data", "read_jsonl", "request_from_args"]


def parse_data(text: str) -> dict[str, Any]:
    data = parse_json(text, "--data is not valid JSON")
    if not isinstance(data, dict):
        fail(f"--data must be a JSON object, got {type(data).__name__}")
    return data


def request_from_args(a: argparse.Namespace) -> dict[str, Any]:
    raw: dict[str, Any] = {"type": a.type, "data": parse_data(a.data)}
    for field, value in (
        ("priority", a.priority),
        ("max_retries", a.max_retries),
        ("timeout", a.timeout),
        ("company_id", a.company),
        ("user_id", a.user),
        ("run_at", a.run_at),
        ("idempotency_key", a.idempotency_key),
        ("queue", a.queue),
    ):
        if value is not None:
            raw[field] = value
    if a.tag:
        raw["tags"] = a.tag
    if a.encrypt:
        raw["encrypt"] = True
    return raw


def read_jsonl(source: str) -> list[dict[str, Any]]:
    items = []
    # Lines end at "\n" only: a JSON string may hold U+2028 or a form feed as it is.
    for n, line in enumerate(read_input(source).split("\n"), 1):
        if not line.strip():
            continue
        item = parse_json(line, f"{source}:{n}: not valid JSON")
        if not isinstance(item, dict):
            fail(f"{source}:{n}: each line must be a JSON object")
        items.append(item)
    if not items:
        fail(f"{source}: no jobs")
    return items
