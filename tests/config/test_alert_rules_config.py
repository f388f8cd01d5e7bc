"""[[alerts.rules]]: arrays of tables read into rules, every problem of every rule
reported at start-up at once (load_config and a real `fleetd` start), and the round
trip through `fleetd config show`'s TOML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import fleetd_env, make_config

from fleetd.config import AlertRuleConfig, ConfigError, dump_toml, load_config

GOOD = """
[alerts]
[[alerts.rules]]
name = "email_slow"
metric = "run_p95"
type = "email"
threshold = 2.5
for = "1m"

[[alerts.rules]]
name = "idle"
metric = "throughput"
company = "acme"
threshold = 10
resolve = 12
window = "10m"
"""

BAD = """
[[alerts.rules]]
name = "quarantined"
metric = "schedule_lateness"
type = "x"

[[alerts.rules]]
name = "Bad Name"
metric = "nope"
threshold = "x"

[[alerts.rules]]
metric = "failure_rate"
threshold = 120
for = "soon"

[[alerts.rules]]
name = "floor"
metric = "throughput"
threshold = 5
resolve = 2
color = "red"

[[alerts.rules]]
name = "cap"
metric = "backlog"
threshold = 100
resolve = 150
window = "2h"

[[alerts.rules]]
name = "cap2"
metric = "backlog"
threshold = 100
resolve = 150
"""


def test_rules_are_read(tmp_path: Path) -> None:
    path = tmp_path / "fleetd.toml"
    path.write_text(GOOD)
    cfg = load_config(path, {})
    slow, idle = cfg.alerts.rules
    assert slow == AlertRuleConfig(name="email_slow", metric="run_p95", type="email",
                                   threshold=2.5, for_=60.0)  # fmt: skip
    assert slow.resolve_at == 2.0  # 80% of the threshold by default
    assert idle.spec.below and idle.resolve_at == 12 and idle.window == 600
    again = tmp_path / "again.toml"
    again.write_text(dump_toml(cfg))
    assert load_config(again, {}) == cfg


def test_every_problem_at_once(tmp_path: Path) -> None:
    path = tmp_path / "fleetd.toml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert sorted(info.value.errors) == sorted([
        "alerts.rules[1].name: 'quarantined' is a built-in alert's name",
        "alerts.rules[1]: schedule_lateness takes no type or company scope",
        "alerts.rules[2].metric: must be one of failure_rate, backlog, wait_p95, run_p95, "
        "throughput, no_completions, schedule_lateness, daemon_memory, workers, "
        "schedule_missed, redis_down, got 'nope'",
        "alerts.rules[2].threshold: must be a number of at least 0, got 'x'",
        "alerts.rules[3].for: invalid duration 'soon' (use e.g. 500ms, 10s, 30m, 1h, 1d, 1w)",
        "alerts.rules[4]: unknown key 'color' (known: name, metric, type, company, "
        "threshold, resolve, for, resolve_for, window, min_jobs, enabled)",
        "alerts.rules[5].window: must be a duration from 1m to 1h, got '2h'",
        "alerts.rules[6].resolve: must be at or below the threshold (100), got 150",
    ]), info.value.errors  # fmt: skip


def test_checks_across_clean_rules(tmp_path: Path) -> None:
    path = tmp_path / "fleetd.toml"
    path.write_text("""
[[alerts.rules]]
metric = "failure_rate"
threshold = 120
[[alerts.rules]]
name = "Bad Name"
metric = "throughput"
threshold = 5
resolve = 2
[[alerts.rules]]
name = "twice"
metric = "backlog"
[[alerts.rules]]
name = "twice"
metric = "daemon_memory"
company = "acme"
""")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.errors == [
        "alerts.rules[1].name: is required",
        "alerts.rules[1].threshold: a failure rate is 0 to 100 (%), got 120",
        "alerts.rules[2].name: must be a-z 0-9 _ starting with a letter, got 'Bad Name'",
        "alerts.rules[2].resolve: must be at or above the threshold (5), got 2",
        "alerts.rules[4].name: 'twice' is also alerts.rules[3]'s name",
        "alerts.rules[4]: daemon_memory takes no type or company scope",
    ]


def test_not_from_the_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"FLEETD_ALERTS_RULES": "x"})
    assert info.value.errors == [
        "alerts.rules (from FLEETD_ALERTS_RULES): an array of tables cannot be set from the "
        "environment"
    ]


def test_a_daemon_refuses_to_start_with_bad_rules(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "fleetd.toml"
    path.write_text(BAD)
    env = fleetd_env(make_config(redis_url, "rules", tmp_path / "state")) | {
        "FLEETD_CONFIG": str(path)
    }
    command = [sys.executable, "-m", "fleetd.cli", "run", "--roles", "worker"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "alerts.rules[1].name: 'quarantined' is a built-in alert's name" in done.stderr
    assert "alerts.rules[6].resolve" in done.stderr


def test_a_rule_of_a_built_in_name_overrides_or_disables_it(tmp_path: Path) -> None:
    """The five built-in alerts are rules: a rule of one's name replaces it (its metric
    may be left out), `enabled = false` turns it off with nothing else to say; the
    built-in's metric still takes no scope it cannot."""
    path = tmp_path / "fleetd.toml"
    path.write_text("""
[[alerts.rules]]
name = "backlog"
threshold = 500
for = "2m"
[[alerts.rules]]
name = "no_worker"
enabled = false
""")
    backlog, no_worker = load_config(path, {}).alerts.rules
    assert (backlog.name, backlog.metric, backlog.threshold, backlog.for_) == (
        "backlog", "", 500, 120.0)  # fmt: skip
    assert not no_worker.enabled
    path.write_text('[[alerts.rules]]\nname = "no_worker"\ncompany = "acme"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.errors == ["alerts.rules[1]: workers takes no type or company scope"]


def test_no_rule_takes_a_name_of_the_alerts_that_name_what_they_find(tmp_path: Path) -> None:
    path = tmp_path / "fleetd.toml"
    path.write_text(
        '[[alerts.rules]]\nname = "unserved_queue"\nmetric = "backlog"\nthreshold = 1\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.errors == [
        "alerts.rules[1].name: 'unserved_queue' is a built-in alert's name"
    ]
