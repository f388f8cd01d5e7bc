"""fleetd.jobs.isolation (sans-IO): policies resolved from handler and config, error
kinds, exit classification, RetryAfter; and the [isolation] section's checks."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from fleetd.config import ConfigError, load_config
from fleetd.config.isolation_section import IsolationConfig
from fleetd.jobs.contract import HandlerDefaults, check_handler
from fleetd.jobs.errors import InvalidHandler
from fleetd.jobs.handlers import JobHandler
from fleetd.jobs.isolation import (
    CPU,
    CRASH,
    ERROR,
    MEMORY,
    TIMEOUT,
    Overrides,
    Policy,
    RetryAfter,
    RetryRule,
    classify_exit,
    error_kind,
    resolve,
)


def test_the_handler_declares_and_the_config_overrides() -> None:
    declared = HandlerDefaults(isolation="process", memory_mb=256, no_retry=("crash",)).policy()
    assert declared == Policy("process", 256, 0, frozenset({CRASH}))
    none = Overrides.of(IsolationConfig())
    assert resolve("t", declared, none) == Policy("process", 256, 0, frozenset({CRASH}))
    cfg = Overrides.of(IsolationConfig(
        modes=("t=thread", "*=inline"), memory=("t=1024",), cpu=("*=30",),
        no_retry=("t=memory, timeout",), memory_mb=2048,
    ))  # fmt: skip
    assert resolve("t", declared, cfg) == Policy("thread", 1024, 30, frozenset({MEMORY, TIMEOUT}))
    other = resolve("u", Policy(), cfg)
    assert (other.mode, other.memory_mb, other.cpu_seconds) == ("inline", 2048, 30)
    assert other.no_retry == frozenset({MEMORY})  # the default: memory is not retried


def test_retryable_by_kind_and_exception_name() -> None:
    p = HandlerDefaults(no_retry=("memory", "SMTPRecipientsRefused")).policy()
    assert not p.retryable(MEMORY)
    assert p.retryable(CRASH) and p.retryable(CPU) and p.retryable(TIMEOUT)
    assert not p.retryable(ERROR, "SMTPRecipientsRefused")
    assert p.retryable(ERROR, "ValueError")


def test_error_kind_reads_the_texts_prefix() -> None:
    assert error_kind("resource_exhausted: memory: MemoryError") == MEMORY
    assert error_kind("resource_exhausted: cpu: the job's process …") == CPU
    assert error_kind("timeout: timed out after 1s") == TIMEOUT
    assert error_kind("crash: the job's process exited with code 3") == CRASH
    assert error_kind("ValueError: timeout: not a prefix") == ERROR


def test_a_dead_child_is_classified_by_its_exit() -> None:
    assert classify_exit(-signal.SIGXCPU, 512)[0] == CPU
    kind, text = classify_exit(-signal.SIGKILL, 512)
    assert kind == MEMORY and "OOM killer (limit 512 MiB)" in text
    assert classify_exit(-signal.SIGSEGV, 0) == (
        CRASH,
        "crash: the job's process was killed by SIGSEGV",
    )
    assert classify_exit(3, 0) == (CRASH, "crash: the job's process exited with code 3")


def test_retry_after_takes_seconds() -> None:
    assert RetryAfter(2.5).seconds == 2.5
    assert RetryAfter(10**9).seconds == 86_400.0  # capped at a day
    for bad in (-1, float("nan"), "5"):
        with pytest.raises(ValueError):
            RetryAfter(bad)  # type: ignore[arg-type]


def test_a_handler_with_an_unknown_mode_is_refused() -> None:
    class Bad(JobHandler):
        job_type = "bad"
        defaults = HandlerDefaults(isolation="container")

    with pytest.raises(InvalidHandler, match="isolation must be one of inline, thread, process"):
        check_handler(Bad())


def test_bad_isolation_entries_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "fleetd.toml"
    path.write_text('[isolation]\nmodes = ["t=vm", "nothing"]\nmemory = ["t=lots"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    text = "\n".join(info.value.errors)
    assert "mode must be one of inline, thread, process, got 'vm'" in text
    assert "must be a whole number, got 'lots'" in text


def test_retry_rules_give_a_kind_its_own_delay_and_cap() -> None:
    p = HandlerDefaults(
        no_retry=("memory", "Refused"),
        retry=("timeout:10m/1", "SMTPServerDisconnected:30s", "crash:/2", "error:1.5s"),
    ).policy()
    assert dict(p.rules) == {
        TIMEOUT: RetryRule(600_000, 1), "SMTPServerDisconnected": RetryRule(30_000, None),
        CRASH: RetryRule(None, 2), ERROR: RetryRule(1500, None),
    }  # fmt: skip
    assert p.decide(TIMEOUT, "", 0) == (True, 600_000)
    assert p.decide(TIMEOUT, "", 1) == (False, None)  # one retry at most for a timeout
    assert p.decide(CRASH, "", 1) == (True, None)  # the backoff's delay
    assert p.decide(CRASH, "", 2) == (False, None)
    # The exception's rule wins over its kind's; a class with none takes the kind's.
    assert p.decide(ERROR, "SMTPServerDisconnected", 9) == (True, 30_000)
    assert p.decide(ERROR, "ValueError", 9) == (True, 1500)
    assert p.decide(MEMORY, "", 0) == (False, None)  # no_retry first
    assert p.decide(ERROR, "Refused", 0) == (False, None)
    assert Policy().decide(CPU, "", 50) == (True, None)  # no rules: the job's own cap


def test_the_configs_retry_rules_replace_the_handlers() -> None:
    declared = HandlerDefaults(retry=("timeout:1m",)).policy()
    cfg = Overrides.of(IsolationConfig(retry=(
        "t=timeout:5s/0", "t=crash:2m", "*=timeout:1s",
    )))  # fmt: skip
    assert dict(resolve("t", declared, cfg).rules) == {
        TIMEOUT: RetryRule(5000, 0), CRASH: RetryRule(120_000, None),
    }  # fmt: skip
    assert dict(resolve("u", declared, cfg).rules) == {TIMEOUT: RetryRule(1000, None)}
    none = Overrides.of(IsolationConfig())
    assert dict(resolve("t", declared, none).rules) == {TIMEOUT: RetryRule(60_000, None)}


def test_bad_retry_rules_are_refused_where_they_are_written(tmp_path: Path) -> None:
    class Bad(JobHandler):
        job_type = "bad"
        defaults = HandlerDefaults(retry=("timeout:soon",))

    with pytest.raises(InvalidHandler, match="bad: retry rule invalid duration 'soon'"):
        check_handler(Bad())
    path = tmp_path / "fleetd.toml"
    for entry, says in (
        ("t=timeout", "'timeout' is not '<error kind or exception>:<delay>[/<retries>]'"),
        ("t=crash:1m/many", "retries must be a whole number 0-100"),
        ("t=error:2d", "the delay is over a day"),
        ("t=:1s", "':1s' is not"),
        ("t=crash:/", "'crash:/' is not"),
    ):
        path.write_text(f'[isolation]\nretry = ["{entry}"]\n')
        with pytest.raises(ConfigError) as info:
            load_config(path, {})
        assert says in "\n".join(info.value.errors), entry
