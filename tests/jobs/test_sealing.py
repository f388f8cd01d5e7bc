"""fleetd.jobs.sealing on its own: the envelope, its binding to a job and field, tampering,
key ids and rotation, the key file (generated, permissions, broken), redaction, and the
handler's `sensitive` declaration. No Redis."""

from __future__ import annotations

import base64
import dataclasses
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from fleetd.cli.commands import main
from fleetd.config import Config
from fleetd.jobs.handlers import HandlerRegistry, InvalidHandler, JobHandler
from fleetd.jobs.sealing import (
    KEY_FILE,
    REDACTED,
    Sealer,
    SealError,
    echoed_redaction,
    format_key,
    new_key,
    redact,
    widen,
)

K1 = format_key("k1", b"\x01" * 32)
K2 = format_key("k2", b"\x02" * 32)
SECRET = "hunter2-very-secret"
DATA = {"to": "ada@example.com", "smtp_password": SECRET, "recipient": {"phone": "+4915112345"}}


def test_a_value_round_trips_and_the_envelope_names_version_and_key() -> None:
    sealer = Sealer([K1])
    env = sealer.seal(SECRET.encode(), "job:job_1", "smtp_password")
    assert env.startswith("fleetd:v1:k1:")
    assert SECRET not in env
    assert sealer.open(env, "job:job_1", "smtp_password") == SECRET.encode()


def test_each_seal_uses_a_fresh_nonce() -> None:
    sealer = Sealer([K1])
    a, b = (sealer.seal(b"same", "job:j", "f") for _ in range(2))
    assert a != b
    blob_a = base64.urlsafe_b64decode(a.rsplit(":", 1)[1] + "==")
    blob_b = base64.urlsafe_b64decode(b.rsplit(":", 1)[1] + "==")
    assert blob_a[:12] != blob_b[:12]


@pytest.mark.parametrize(
    ("context", "path"),
    [("job:job_2", "smtp_password"), ("job:job_1", "to"), ("schedule:job_1", "smtp_password")],
)
def test_a_sealed_value_is_bound_to_its_job_and_field(context: str, path: str) -> None:
    sealer = Sealer([K1])
    env = sealer.seal(SECRET.encode(), "job:job_1", "smtp_password")
    with pytest.raises(SealError, match="failed authentication"):
        sealer.open(env, context, path)


def test_a_tampered_value_fails_to_open() -> None:
    sealer = Sealer([K1])
    env = sealer.seal(SECRET.encode(), "job:j", "f")
    head, body = env.rsplit(":", 1)
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    for bad in (f"{head}:{flipped}", f"{head}:{body[:10]}", f"{head}:!!", f"{head}"):
        with pytest.raises(SealError):
            sealer.open(bad, "job:j", "f")
    # The key id is part of the associated data: relabelling the envelope fails too.
    both = Sealer([K2, K1])
    relabelled = env.replace("fleetd:v1:k1:", "fleetd:v1:k2:")
    with pytest.raises(SealError, match="failed authentication"):
        both.open(relabelled, "job:j", "f")


def test_an_unknown_key_id_is_named() -> None:
    env = Sealer([K1]).seal(b"x", "job:j", "f")
    with pytest.raises(SealError, match=r"unknown key id 'k1' \(keys configured: k2\)"):
        Sealer([K2]).open(env, "job:j", "f")


def test_not_an_envelope_is_refused() -> None:
    with pytest.raises(SealError, match="not a sealed value"):
        Sealer([K1]).open("plain text", "job:j", "f")
    with pytest.raises(SealError, match="not a sealed value"):
        Sealer([K1]).open(42, "job:j", "f")


def test_rotation_the_first_key_seals_every_key_opens() -> None:
    old = Sealer([K1]).seal(b"old", "job:j", "f")
    rotated = Sealer([K2, K1])
    assert rotated.open(old, "job:j", "f") == b"old"
    new = rotated.seal(b"new", "job:j", "f")
    assert new.startswith("fleetd:v1:k2:")
    with pytest.raises(SealError, match="unknown key id 'k2'"):
        Sealer([K1]).open(new, "job:j", "f")


def test_sealing_fields_in_place_and_opening_them() -> None:
    sealer = Sealer([K1])
    paths = ("smtp_password", "recipient.phone", "absent", "absent.deeper")
    sealed, marker = sealer.seal_data(DATA, "job:j", paths)
    assert json.loads(marker) == ["smtp_password", "recipient.phone"]
    assert sealed["to"] == "ada@example.com"
    assert sealed["smtp_password"].startswith("fleetd:v1:k1:")
    assert sealed["recipient"]["phone"].startswith("fleetd:v1:k1:")
    assert SECRET not in json.dumps(sealed) and "+4915112345" not in json.dumps(sealed)
    assert DATA["smtp_password"] == SECRET  # the caller's data is left alone
    assert sealer.open_data(sealed, marker, "job:j") == DATA
    assert redact(sealed, marker) == {**DATA, "smtp_password": REDACTED,
                                      "recipient": {"phone": REDACTED}}  # fmt: skip


def test_a_sealed_field_keeps_its_json_type() -> None:
    sealer = Sealer([K1])
    data = {"pin": 1234, "card": {"n": "4111", "cvv": [1, 2, 3]}, "flag": None}
    sealed, marker = sealer.seal_data(data, "job:j", ("pin", "card", "flag"))
    assert sealer.open_data(sealed, marker, "job:j") == data


def test_no_sensitive_field_present_means_no_marker() -> None:
    sealed, marker = Sealer([K1]).seal_data({"to": "x"}, "job:j", ("smtp_password",))
    assert (sealed, marker) == ({"to": "x"}, "")


def test_whole_data_sealing() -> None:
    sealer = Sealer([K1])
    sealed, marker = sealer.seal_data(DATA, "job:j", None)
    assert marker == "data"
    assert list(sealed) == ["$sealed"]
    assert "ada@example.com" not in json.dumps(sealed)
    assert sealer.open_data(sealed, marker, "job:j") == DATA
    assert redact(sealed, marker) == {"encrypted": True}
    with pytest.raises(SealError):
        sealer.open_data(sealed, marker, "job:other")


def test_a_sealed_field_swapped_between_fields_fails() -> None:
    sealer = Sealer([K1])
    sealed, marker = sealer.seal_data({"a": "x", "b": "y"}, "job:j", ("a", "b"))
    swapped = {"a": sealed["b"], "b": sealed["a"]}
    with pytest.raises(SealError, match="failed authentication"):
        sealer.open_data(swapped, marker, "job:j")


def test_redaction_of_an_unknown_marker_hides_everything() -> None:
    assert redact({"a": "x"}, "something-newer") == {"encrypted": True}


def test_the_placeholders_sent_back_are_found_at_sealed_paths_only() -> None:
    marker = json.dumps(["smtp_password", "recipient.phone"])
    shown = redact(Sealer([K1]).seal_data(DATA, "schedule:s", json.loads(marker))[0], marker)
    assert echoed_redaction(shown, marker) == "smtp_password"
    assert echoed_redaction({**DATA, "recipient": {"phone": REDACTED}}, marker) == (
        "recipient.phone"
    )
    assert echoed_redaction({**DATA, "to": REDACTED}, marker) is None  # not sealed there
    assert echoed_redaction({"encrypted": True}, "data") == ""
    assert echoed_redaction({"encrypted": True, "x": 1}, "data") is None


def test_widen_never_seals_less_than_before() -> None:
    assert widen("", ("a",)) == ("a",)
    assert widen('["b"]', ()) == ("b",)  # the handler is unknown here: the marker's paths
    assert widen('["b","a"]', ("a", "c")) == ("a", "c", "b")
    # A path inside another one is sealed with it, whichever side lists it.
    assert widen('["r.phone"]', ("r",)) == ("r",)
    assert widen('["r"]', ("r.phone",)) == ("r",)
    assert widen("data", ("a",)) is None and widen("something-newer", ()) is None


# -- keys from the config and the key file ---------------------------------------------


def _cfg(tmp_path: Path, **encryption: Any) -> Config:
    cfg = Config.default()
    return dataclasses.replace(
        cfg,
        daemon=dataclasses.replace(cfg.daemon, state_dir=str(tmp_path / "state")),
        encryption=dataclasses.replace(cfg.encryption, **encryption),
    )


def test_the_default_key_file_is_generated_on_first_seal_mode_0600(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    path = tmp_path / "state" / KEY_FILE
    opener = Sealer.from_config(cfg)
    with pytest.raises(SealError, match="no encryption keys"):
        opener.open("fleetd:v1:k1:AAAA", "job:j", "f")  # opening never generates keys
    assert not path.exists()
    env = Sealer.from_config(cfg).seal(b"x", "job:j", "f")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [line] = path.read_text().splitlines()
    assert line.startswith("k1:") and len(base64.b64decode(line[3:])) == 32
    # Another process (a new Sealer) reads the same key, never a second one.
    assert Sealer.from_config(cfg).open(env, "job:j", "f") == b"x"
    assert path.read_text().splitlines() == [line]
    assert [p.name for p in path.parent.iterdir()] == [KEY_FILE]  # no temp file left


def test_configured_keys_win_over_the_key_file(tmp_path: Path) -> None:
    sealer = Sealer.from_config(_cfg(tmp_path, keys=(K2, K1)))
    assert sealer.seal(b"x", "job:j", "f").startswith("fleetd:v1:k2:")
    assert not (tmp_path / "state" / KEY_FILE).exists()


def test_a_configured_key_file_with_rotation_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# rotated 2026-01\n{K2}\n\n{K1}\n")
    sealer = Sealer.from_config(_cfg(tmp_path, key_file=str(path)))
    ring = sealer.keyring()
    assert ring.active == "k2" and list(ring.ciphers) == ["k2", "k1"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no keys"),
        ("k1\n", "expected 'key_id:base64'"),
        ("k1:not base64!\n", "key 'k1' is not valid base64"),
        (format_key("k1", b"x" * 16) + "\n", "must be 32 bytes, got 16"),
        (f"{K1}\n{K1}\n", "key id 'k1' appears twice"),
    ],
)
def test_a_bad_key_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keys"
    path.write_text(content)
    sealer = Sealer.from_config(_cfg(tmp_path, key_file=str(path)))
    with pytest.raises(SealError, match=message) as err:
        sealer.seal(b"x", "job:j", "f")
    assert str(path) in str(err.value)


def test_a_configured_key_file_that_is_missing_is_not_generated(tmp_path: Path) -> None:
    path = tmp_path / "unmounted" / "keys"
    sealer = Sealer.from_config(_cfg(tmp_path, key_file=str(path)))
    with pytest.raises(SealError, match=f"keys is empty and {path} does not exist"):
        sealer.seal(b"x", "job:j", "f")
    assert not path.parent.exists()


def test_an_unreadable_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.mkdir()  # unreadable as a file, even for root
    with pytest.raises(SealError, match=f"key file {path}: Is a directory"):
        Sealer.from_config(_cfg(tmp_path, key_file=str(path))).keyring()
    path.rmdir()
    path.write_bytes(b"\xff\xfe binary")
    with pytest.raises(SealError, match="not a text file"):
        Sealer.from_config(_cfg(tmp_path, key_file=str(path))).keyring()


# -- `fleetd keygen` -------------------------------------------------------------------


def test_keygen_prints_a_key_the_config_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(Path(__file__).parents[1] / "empty.toml"), "keygen", "--id", "k7"]) == 0
    line = capsys.readouterr().out.strip()
    kid, _, material = line.partition(":")
    assert kid == "k7" and len(base64.b64decode(material)) == 32
    assert Sealer([line]).keyring().active == "k7"
    assert main(["-c", str(Path(__file__).parents[1] / "empty.toml"), "keygen"]) == 0
    assert capsys.readouterr().out.startswith("k20")  # k<UTC date and time>


def test_keygen_refuses_a_bad_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(Path(__file__).parents[1] / "empty.toml"), "keygen", "--id", "a:b"]) == 2
    assert "--id: key id 'a:b'" in capsys.readouterr().err


def test_new_keys_differ() -> None:
    assert new_key() != new_key()


# -- the handler's declaration ---------------------------------------------------------


class _Mail(JobHandler):
    job_type = "mail"

    async def run(self, ctx: object, data: dict[str, object]) -> dict[str, object]:
        return {}


@pytest.mark.parametrize(
    ("sensitive", "message"),
    [
        ("smtp_password", "must be a tuple"),
        (("a b",), "object keys joined by dots"),
        (("a.",), "object keys joined by dots"),
        (("a[0]",), "object keys joined by dots"),
        (("a", "a.b"), "contains another one"),
        (("a", "a"), "listed twice"),
    ],
)
def test_a_bad_sensitive_declaration_stops_registration(sensitive: object, message: str) -> None:
    handler = _Mail()
    handler.sensitive = sensitive  # type: ignore[assignment]
    with pytest.raises(InvalidHandler, match=f"mail: .*{message}"):
        HandlerRegistry().register(handler)


def test_the_registry_knows_the_sensitive_paths() -> None:
    handler = _Mail()
    handler.sensitive = ("smtp_password", "recipient.phone")
    registry = HandlerRegistry()
    registry.register(handler)
    assert registry.sensitive("mail") == ("smtp_password", "recipient.phone")
    assert registry.sensitive("other") == ()


def test_run_handler_seals_and_opens_like_the_worker(tmp_path: Path) -> None:
    from fleetd.testing import Harness

    seen: list[dict[str, object]] = []

    class Mail(_Mail):
        sensitive = ("smtp_password",)

        async def run(self, ctx: object, data: dict[str, object]) -> dict[str, object]:
            seen.append(data)
            return {"ok": True}

    with Harness([Mail()], tmp_path=tmp_path) as harness:
        assert harness.run_sync("mail", {"to": "x", "smtp_password": SECRET}) == {"ok": True}
        stored = harness.job(harness.last_job_id)
        raw = harness.link.run_sync(lambda c: c.hget(harness.ops.keys.job(stored.id), "data"))
    assert seen == [{"to": "x", "smtp_password": SECRET}]
    assert stored.data == {"to": "x", "smtp_password": REDACTED} and stored.encrypted
    assert SECRET not in raw and "fleetd:v1:k1:" in raw
