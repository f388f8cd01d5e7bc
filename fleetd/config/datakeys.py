"""The text form of `[encryption]` data keys, "key_id:base64" (sans-IO).

Owns the one syntax of a data key, shared by the config check of `[encryption] keys`,
the key file the sealer reads and writes (fleetd.jobs.sealing) and `fleetd keygen`:

- `parse_key(line, where)` -> (key id, 32 key bytes), or `SealError` naming `where`;
- `format_key(key_id, key)` -> "key_id:base64", the inverse;
- `new_key()` -> 32 random bytes.

It lives beside the config (not with the sealer) so that checking a config file needs
neither the jobs package nor the cipher library: the sealer imports it from here.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets

__all__ = ["KEY_BYTES", "SealError", "format_key", "new_key", "parse_key"]

# AES-256: 32-byte keys.
KEY_BYTES = 32
# 32 characters fit the envelope's key id field and stay readable in logs.
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class SealError(ValueError):
    """A value cannot be sealed or opened; the message says why (never the value)."""


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def format_key(key_id: str, key: bytes) -> str:
    """The config form of a key: "key_id:base64"."""
    if not _KEY_ID.fullmatch(key_id):
        raise SealError(f"key id {key_id!r} must be 1 to 32 of A-Z a-z 0-9 _ . -")
    return f"{key_id}:{base64.b64encode(key).decode()}"


def parse_key(line: str, where: str) -> tuple[str, bytes]:
    """(key id, key) of a "key_id:base64" line; SealError naming `where` if malformed."""
    kid, sep, material = line.strip().partition(":")
    if not sep or not _KEY_ID.fullmatch(kid):
        raise SealError(f"{where}: expected 'key_id:base64' with a key id of A-Z a-z 0-9 _ . -")
    try:
        raw = base64.b64decode(material, validate=True)
    except (binascii.Error, ValueError):
        raise SealError(f"{where}: key {kid!r} is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise SealError(f"{where}: key {kid!r} must be {KEY_BYTES} bytes, got {len(raw)}")
    return kid, raw
