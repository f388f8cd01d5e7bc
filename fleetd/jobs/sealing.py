"""Encryption at rest of sensitive job data: the keyring, the envelope, and which parts
of a job's data are sealed.

Owns:
- `Keyring`: the data keys of `[encryption]` — `keys` from the config, else the lines
  of `key_file` (default `<state_dir>/encryption-keys`, generated mode 0600 the first
  time something is sealed; opening never generates one). The first key seals, every
  key opens: that is how keys rotate.
- `Sealer`: AES-256-GCM (the `cryptography` package) of one value into an envelope
  string `fleetd:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`, with a fresh
  96-bit random nonce per seal, and the associated data
  `fleetd:v1:<key id>\\n<context>\\n<path>` — context `job:<id>` or `schedule:<id>`,
  path the field path or `*` for the whole data — so a sealed value moved into another
  job, schedule or field fails to open.
- the sealed forms of a job's data and the marker stored beside it (hash field
  `sealed`): `data` = the whole data is one envelope, stored as {"$sealed": envelope};
  a JSON list of paths = the values at those (dot-separated) paths are envelopes of
  their JSON encodings. No marker = plain data, which nothing here ever looks at.
- `redact`: the data as readers see it — "***" for a sealed field, {"encrypted": true}
  for sealed whole data; no key needed, and neither plaintext nor ciphertext shown;
  `echoed_redaction` finds those placeholders sent back in place of sealed values.
- `widen`: what a save of changed data seals so as to cover at least what was sealed.

Errors are `SealError` with a message fit for a job's error ("unknown key id 'k0'").
Lifecycle: a Sealer loads its keyring on first use and keeps it until the process
ends (a key change takes a restart, like every process reading the same config).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fleetd.config.datakeys import SealError, format_key, new_key, parse_key

if TYPE_CHECKING:
    from fleetd.backend.scripts import ClaimedJob
    from fleetd.config import Config

__all__ = [
    "KEY_FILE",
    "MARK_DATA",
    "REDACTED",
    "Keyring",
    "SealError",
    "Sealer",
    "check_paths",
    "echoed_redaction",
    "format_key",
    "new_key",
    "open_claimed",
    "parse_key",
    "redact",
    "widen",
]

VERSION = "v1"
PREFIX = f"fleetd:{VERSION}:"
# The key file's name under the state directory when `[encryption] key_file` is "".
KEY_FILE = "encryption-keys"
# AES-256 keys (their text form: fleetd.config.datakeys). GCM's standard nonce is 96
# bits; random nonces stay safe for 2^32 seals per key (NIST SP 800-38D §8.3) — rotate
# long before that.
NONCE_BYTES = 12
# The marker of whole-data sealing, and the key its envelope is stored under.
MARK_DATA = "data"
WHOLE_KEY = "$sealed"
WHOLE_PATH = "*"
# What readers see in place of a sealed value.
REDACTED = "***"
REDACTED_DATA: dict[str, Any] = {"encrypted": True}
# A sensitive path: object keys joined by dots ("recipient.phone"); no wildcards.
_PATH = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


class EncryptionUnavailable(Exception):
    """This process cannot seal: its keys are missing or unusable. The operator's to
    fix, not the caller's (the API answers 500 encryption_unavailable, not 422)."""


def check_paths(paths: object) -> tuple[str, ...]:
    """A handler's `sensitive` declaration as a tuple; ValueError saying what is wrong."""
    if isinstance(paths, str) or not isinstance(paths, Sequence):
        raise ValueError("sensitive must be a tuple of field paths such as 'recipient.phone'")
    out = tuple(paths)
    for p in out:
        if not isinstance(p, str) or not _PATH.fullmatch(p):
            raise ValueError(f"sensitive path {p!r} must be object keys joined by dots")
    for p in out:
        if out.count(p) > 1 or any(q.startswith(p + ".") for q in out):
            raise ValueError(f"sensitive path {p!r} is listed twice or contains another one")
    return out


@dataclass(frozen=True, slots=True)
class Keyring:
    """Key id → AES-GCM cipher; `active` seals."""

    active: str
    ciphers: Mapping[str, AESGCM]

    @classmethod
    def parse(cls, lines: Sequence[str], where: str) -> Keyring:
        keys: dict[str, AESGCM] = {}
        for n, line in enumerate(lines, 1):
            kid, raw = parse_key(line, f"{where}, key {n}")
            if kid in keys:
                raise SealError(f"{where}: key id {kid!r} appears twice")
            keys[kid] = AESGCM(raw)
        if not keys:
            raise SealError(f"{where}: no keys")
        return cls(next(iter(keys)), keys)


def _read_key_file(path: Path) -> Keyring:
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError:
        raise SealError(f"key file {path}: not a text file of 'key_id:base64' lines") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return Keyring.parse(lines, f"key file {path}")


def _create_key_file(path: Path) -> None:
    """Write a new one-key file, mode 0600, unless one exists. Written aside and linked
    into place (link fails if the name exists), so a daemon and a CLI starting together
    agree on one key and neither ever reads a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(format_key("k1", new_key()) + "\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: use its key
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Sealer:
    """Seals and opens values with the keys of one config (loaded on first use)."""

    def __init__(
        self, keys: Sequence[str] = (), key_file: Path | None = None, *, generate: bool = False
    ) -> None:
        if not keys and key_file is None:
            raise ValueError("a Sealer needs keys or a key file")
        self._keys = tuple(keys)
        self.key_file = key_file
        # Only the default key file is generated: a configured one that is missing is
        # an operator's mistake (an unmounted volume), not a reason to invent a key.
        self._generate = generate
        self._ring: Keyring | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: Config) -> Sealer:
        e = cfg.encryption
        if e.keys:
            return cls(e.keys)
        if e.key_file:
            return cls((), Path(e.key_file).expanduser())
        return cls((), cfg.state_dir / KEY_FILE, generate=True)

    def keyring(self, *, create: bool = False) -> Keyring:
        """The keys; with `create`, a missing default key file is generated first."""
        ring = self._ring
        if ring is not None:
            return ring
        with self._lock:
            if self._ring is None:
                self._ring = self._load(create)
            return self._ring

    def _load(self, create: bool) -> Keyring:
        if self._keys:
            return Keyring.parse(self._keys, "[encryption] keys")
        path = self.key_file
        assert path is not None
        try:
            return _read_key_file(path)
        except FileNotFoundError:
            if not (create and self._generate):
                raise SealError(
                    f"no encryption keys: [encryption] keys is empty and {path} does not exist"
                ) from None
        except OSError as exc:
            raise SealError(f"key file {path}: {exc.strerror}") from None
        try:
            _create_key_file(path)
            return _read_key_file(path)
        except OSError as exc:
            raise SealError(f"cannot create key file {path}: {exc.strerror}") from None

    # -- one value ---------------------------------------------------------------------

    @staticmethod
    def _aad(kid: str, context: str, path: str) -> bytes:
        return f"{PREFIX}{kid}\n{context}\n{path}".encode()

    def seal(self, plaintext: bytes, context: str, path: str) -> str:
        ring = self.keyring(create=True)
        kid = ring.active
        nonce = os.urandom(NONCE_BYTES)
        ct = ring.ciphers[kid].encrypt(nonce, plaintext, self._aad(kid, context, path))
        return f"{PREFIX}{kid}:{base64.urlsafe_b64encode(nonce + ct).rstrip(b'=').decode()}"

    def open(self, envelope: object, context: str, path: str) -> bytes:
        if not isinstance(envelope, str) or not envelope.startswith(PREFIX):
            where = "the data" if path == WHOLE_PATH else f"field {path!r}"
            raise SealError(f"{where} is not a sealed value (fleetd:{VERSION}:…)")
        kid, sep, body = envelope[len(PREFIX) :].partition(":")
        ciphers = self.keyring().ciphers
        cipher = ciphers.get(kid)
        if cipher is None:
            raise SealError(f"unknown key id {kid!r} (keys configured: {', '.join(ciphers)})")
        try:
            blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            if not sep or len(blob) < NONCE_BYTES + 16:
                raise ValueError
            aad = self._aad(kid, context, path)
            return cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except (ValueError, binascii.Error, InvalidTag):
            raise SealError(
                f"sealed value of {path if path != WHOLE_PATH else 'the data'} failed "
                f"authentication (tampered, or moved from another {context.partition(':')[0]})"
            ) from None

    # -- a job's (or schedule's) data --------------------------------------------------

    def seal_data(
        self, data: dict[str, Any], context: str, paths: Sequence[str] | None
    ) -> tuple[dict[str, Any], str]:
        """(sealed data, marker): the whole data when `paths` is None, else the values
        at `paths` that are present ("" marker and the data unchanged when none is)."""
        if paths is None:
            sealed = self.seal(_encode(data).encode(), context, WHOLE_PATH)
            return {WHOLE_KEY: sealed}, MARK_DATA
        out = data
        done: list[str] = []
        for path in paths:
            parent, key = _locate(out, path)
            if parent is None or key not in parent:
                continue
            if out is data:
                out = _deep_copy(data)
                parent, key = _locate(out, path)
                assert parent is not None
            parent[key] = self.seal(_encode(parent[key]).encode(), context, path)
            done.append(path)
        return out, (_encode(done) if done else "")

    def open_data(self, data: dict[str, Any], marker: str, context: str) -> dict[str, Any]:
        """The plaintext data of sealed `data` (as `seal_data` made it). Raises SealError."""
        if marker == MARK_DATA:
            plain = json.loads(self.open(data.get(WHOLE_KEY), context, WHOLE_PATH))
            if not isinstance(plain, dict):
                raise SealError("the sealed data is not a JSON object")
            return plain
        out = _deep_copy(data)
        for path in _marked_paths(marker):
            parent, key = _locate(out, path)
            if parent is None or key not in parent:
                raise SealError(f"sealed field {path!r} is missing from the data")
            parent[key] = json.loads(self.open(parent[key], context, path))
        return out


def _marked_paths(marker: str) -> list[str]:
    try:
        paths = json.loads(marker)
    except ValueError:
        paths = None
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise SealError(f"unknown sealing marker {marker[:40]!r}")
    return paths


def _locate(data: dict[str, Any], path: str) -> tuple[dict[str, Any] | None, str]:
    """The object holding the last key of `path`, and that key; None when an object on
    the way is missing (or not an object)."""
    *parents, key = path.split(".")
    node: Any = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), key


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    """A copy whose nested objects can be changed (JSON values only: no deepcopy needed)."""
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def redact(data: dict[str, Any], marker: str) -> dict[str, Any]:
    """`data` as stored, with every sealed part replaced: readers see that something is
    sealed, never the plaintext nor the ciphertext. Needs no key."""
    if marker == MARK_DATA:
        return dict(REDACTED_DATA)
    try:
        paths = _marked_paths(marker)
    except SealError:
        return dict(REDACTED_DATA)  # a marker from a newer fleetd: hide everything
    out = _deep_copy(data)
    for path in paths:
        parent, key = _locate(out, path)
        if parent is not None and key in parent:
            parent[key] = REDACTED
    return out


def echoed_redaction(data: Mapping[str, Any], marker: str) -> str | None:
    """Where `data`, sent to replace data sealed as `marker` says, holds the placeholder
    `redact` showed instead of a sealed value: "" for the whole data, else the first
    sealed path holding "***"; None when nowhere (the data can be sealed as sent)."""
    if marker == MARK_DATA:
        return "" if data == REDACTED_DATA else None
    try:
        paths = _marked_paths(marker)
    except SealError:  # a marker from a newer fleetd: `redact` showed REDACTED_DATA
        return "" if data == REDACTED_DATA else None
    for path in paths:
        parent, key = _locate(dict(data), path)
        if parent is not None and parent.get(key) == REDACTED:
            return path
    return None


def widen(marker: str, paths: Sequence[str]) -> tuple[str, ...] | None:
    """The paths to seal so that new data covers at least what `marker` sealed and
    `paths` (a handler's sensitive fields): None (the whole data) for a whole-data
    marker or one from a newer fleetd, else the union without a path lying inside
    another one (sealed with it: sealing both would nest envelopes)."""
    if marker == MARK_DATA:
        return None
    try:
        before = _marked_paths(marker) if marker else []
    except SealError:
        return None
    union = list(dict.fromkeys([*paths, *before]))
    return tuple(p for p in union if not any(p.startswith(q + ".") for q in union))


def open_claimed(sealer: Sealer | None, job: ClaimedJob) -> tuple[dict[str, Any], str]:
    """(plaintext data, "") of a claimed sealed job, its `data` left redacted for
    lifecycle hooks and `ctx.job`; or ({}, error text) when it cannot be opened — a
    failure no retry can cure (the key is gone or the value was tampered with)."""
    try:
        if sealer is None:
            raise SealError("no [encryption] keys in this process")
        plain = sealer.open_data(job.data, job.sealed, f"job:{job.id}")
    except (SealError, ValueError) as exc:
        return {}, f"cannot decrypt data: {exc}"
    job.data = redact(job.data, job.sealed)
    return plain, ""
