"""Logging set-up: journald-friendly text by default, JSON lines on request; and the
cheap path for the per-job lines of a busy worker.

Text lines carry no timestamp when stderr goes to the journal (JOURNAL_STREAM is set;
journald stamps every line itself) and an ISO timestamp otherwise. JSON lines carry
ts, level, logger, msg and any `extra` fields (job_id, job_type…).

A worker logs one INFO line per finished job (`[daemon] log_jobs`): at 10,000 jobs/s
the stock path (`Logger.log`: findCaller walking the stack, LogRecord.__init__ asking
for the thread, process and file names, a `strftime` per line, a write and a flush per
line) cost ~10 µs of a ~50 µs job. `log_record` makes the same LogRecord from a copy of
one made the stock way (per thread and process) with the per-line fields set;
`held_lines()` lets the completion batcher write the lines of one batch with one
write; the text formatter formats each second's timestamp once. The lines and their
fields are the same as through `Logger.log`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "JsonFormatter",
    "LineHandler",
    "TextFormatter",
    "configure_logging",
    "held_lines",
    "log_record",
    "set_level",
]

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """logging.Formatter with the default date format computed once per second (the
    `strftime` was ~15% of a job line's cost); the text is the same."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second = -1
        self._second_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._second_text},{int(record.msecs):03d}"  # default_msec_format


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that can hold its lines: between `hold()` and `write_held()`, lines
    logged by the holding thread are gathered and then written with one write and one
    flush (lines of other threads go straight out, as before)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._holder: int | None = None
        self._held: list[str] = []

    def hold(self) -> None:
        self._holder = threading.get_ident()

    def write_held(self) -> None:
        self._holder = None
        if self._held:
            text = "".join(self._held)
            self._held.clear()
            self.acquire()
            try:
                self.stream.write(text)
                self.flush()
            except Exception:  # as StreamHandler.emit: a broken stream never stops a job
                self.handleError(logging.makeLogRecord({"msg": "(held log lines)"}))
            finally:
                self.release()

    def emit(self, record: logging.LogRecord) -> None:
        if self._holder is None or self._holder != threading.get_ident():
            super().emit(record)
            return
        try:
            self._held.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)


@contextmanager
def held_lines() -> Iterator[None]:
    """Lines logged by this thread inside the block go out in one write at its end
    (through fleetd's own handler; other handlers are untouched)."""
    handler = next((h for h in logging.getLogger().handlers if isinstance(h, LineHandler)), None)
    if handler is None or handler._holder is not None:
        yield
        return
    handler.hold()
    try:
        yield
    finally:
        handler.write_held()


# Per (process id, thread id): the attributes of a LogRecord made the stock way, which
# stay the same for every record that thread makes (thread, process and file names…).
_templates: dict[tuple[int, int], dict[str, Any]] = {}
_new_record = logging.LogRecord.__new__


def _template() -> dict[str, Any]:
    key = (os.getpid(), threading.get_ident())
    base = _templates.get(key)
    if base is None:
        if len(_templates) > 64:  # threads come and go: keep a bounded few
            _templates.clear()
        made = logging.LogRecord("", logging.INFO, __file__, 0, "", (), None, "log_record")
        base = _templates[key] = dict(vars(made))
    return base


def log_record(
    logger: logging.Logger, level: int, msg: str, args: tuple[Any, ...], extra: Mapping[str, Any]
) -> None:
    """`logger.log(level, msg, *args, extra=extra)`, cheaper: no caller's frame is
    looked up (the record names this function: no formatter of ours shows it) and the
    record is a copy of a template (`_template`) with the per-line fields set as
    LogRecord.__init__ sets them. The caller has checked `logger.isEnabledFor(level)`."""
    record = _new_record(logging.LogRecord)
    d = record.__dict__
    d.update(_template())
    ct = time.time()
    d["name"] = logger.name
    d["msg"] = msg
    d["args"] = args
    d["levelname"] = logging.getLevelName(level)
    d["levelno"] = level
    d["created"] = ct
    d["msecs"] = int((ct - int(ct)) * 1000) + 0.0
    d["relativeCreated"] = (ct - _START) * 1000
    d.update(extra)
    logger.handle(record)


def _logging_start() -> float:
    """logging's own start time, which relativeCreated counts from."""
    made = logging.makeLogRecord({})
    return made.created - made.relativeCreated / 1000


_START = _logging_start()


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    handler = LineHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(TextFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())
    # Library chatter (hypercorn access logs, fakeredis internals) stays at warning.
    for name in ("fakeredis", "hpack", "hypercorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
