"""Log formats: text by default (no timestamp under journald), JSON lines on request."""

from __future__ import annotations

import json
import logging

import pytest

from fleetd.runtime.log import configure_logging


@pytest.fixture(autouse=True)
def _restore_root_logger() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    logging.getLogger("fleetd.job").info("done %s", "x", extra={"job_id": "job_1"})
    logging.getLogger("fleetd.job").debug("not shown")
    [line] = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["level"] == "info"
    assert record["logger"] == "fleetd.job"
    assert record["msg"] == "done x"
    assert record["job_id"] == "job_1"
    assert record["ts"].endswith("+00:00")


def test_text_lines_drop_the_timestamp_under_journald(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    configure_logging("warning", "text")
    logging.getLogger("fleetd.worker").warning("lease lost")
    assert capsys.readouterr().err == "WARNING fleetd.worker: lease lost\n"
    monkeypatch.delenv("JOURNAL_STREAM")
    configure_logging("warning", "text")
    logging.getLogger("fleetd.worker").warning("again")
    line = capsys.readouterr().err
    assert line.endswith(" WARNING fleetd.worker: again\n") and line[:4].isdigit()
