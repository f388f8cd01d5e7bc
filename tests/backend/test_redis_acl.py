"""The Redis ACL user of docs/OPERATIONS.md is enough for fleetd, and no more.

The `ACL SETUSER fleetd …` line is read from the document itself (so the two cannot
drift), applied to a private redis-server, and a real daemon (every role) plus the CLI
run a workload through that user: jobs completed, retried, failed and cancelled, a
schedule fired, listings, stats, workers, clean-up, the admin API's /readyz. Redis'
ACL LOG must then hold no denial except CONFIG GET (fleetd's optional eviction-policy
check, which it skips when refused). The user cannot touch keys outside fleetd's.
"""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from pathlib import Path

import pytest
import redis
from conftest import fleetd_env, make_config
from daemons import Fleet, cli_json, run_cli
from redis_server import RedisServerFactory

DOC = Path(__file__).parents[2] / "docs" / "OPERATIONS.md"
PASSWORD = "acl-test-password"
# Denials fleetd expects and handles: the start-up check of maxmemory-policy.
TOLERATED = {"config|get"}


def acl_setuser() -> list[str]:
    match = re.search(r"^ACL SETUSER fleetd (.+)$", DOC.read_text(), re.MULTILINE)
    assert match, "docs/OPERATIONS.md has no `ACL SETUSER fleetd …` line"
    rules = [r.replace(">CHANGE-ME", f">{PASSWORD}") for r in match.group(1).split()]
    assert f">{PASSWORD}" in rules
    return ["ACL", "SETUSER", "fleetd", *rules]


def test_fleetd_runs_with_the_documented_acl_user(
    own_redis: RedisServerFactory, fleet: Fleet, tmp_path: Path
) -> None:
    server = own_redis()
    server.command(*acl_setuser())
    server.command("ACL", "LOG", "RESET")
    url = server.url.replace("redis://", f"redis://fleetd:{PASSWORD}@")
    cfg = make_config(url, "acl", tmp_path / "state")
    env = fleetd_env(cfg) | {"FLEETD_HTTP_METRICS_AUTH": "false"}
    d = fleet.start(env)

    def enqueue(*args: str) -> dict[str, object]:
        body: dict[str, object] = cli_json(env, "enqueue", *args, "--json")
        return body

    ok = enqueue("noop", "--data", '{"n": 1}', "--wait")
    assert ok["status"] == "completed"
    retried = enqueue("noop", "--data", '{"fail_attempts": 1}', "--wait")
    assert retried["status"] == "completed"
    failing = ("noop", "--data", '{"fail_attempts": 5}', "--max-retries", "0", "--wait", "--json")
    failed = run_cli(env, "enqueue", *failing)  # exit 1: the job failed
    assert json.loads(failed.stdout)["status"] == "failed", failed.stderr
    later = enqueue("noop", "--run-at", "2099-01-01T00:00:00Z")
    later_id = str(later.get("job_id") or later.get("id"))
    assert run_cli(env, "jobs", "cancel", later_id).returncode == 0
    for args in (
        ("jobs", "list", "--status", "completed", "--json"),
        ("stats", "--json"),
        ("workers", "--json"),
        ("schedules", "list", "--json"),
        # Reading a window seals its closed buckets (GET, HGETALL, ZRANGE, SET … PX).
        ("analytics", "--window", "week", "--json"),
        ("analytics", "--window", "hour", "--json"),
        ("capacity", "--json"),
    ):
        cli_json(env, *args)
    cli_json(env, "schedules", "add", "acl-check", "--type", "noop", "--schedule", "1h", "--json")
    fired = run_cli(env, "schedules", "run-now", "acl-check")
    assert fired.returncode == 0, fired.stderr
    assert run_cli(env, "cleanup", "--older-than", "1s").returncode == 0
    # The API (role api) answers ready through the same user.
    port = json.loads((cfg.state_dir / "http.json").read_text())["urls"][0]
    with urllib.request.urlopen(f"{port}/readyz", timeout=5) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"{port}/metrics", timeout=5) as resp:
        scrape = resp.read()
    assert b"fleetd_jobs" in scrape
    assert b'fleetd_alert_active{alert="backlog"} 0.0' in scrape  # fleetd.runtime.alerts' gauge
    d.send(signal.SIGTERM)
    assert d.wait_exit(15) == 0, d.tail()

    denied = server.command("ACL", "LOG")
    assert isinstance(denied, list)
    entries = [dict(zip(e[::2], e[1::2], strict=True)) for e in denied]  # type: ignore[index]
    objects = {str(e.get(b"object", b""), "utf-8") for e in entries}
    assert objects <= TOLERATED, f"denied by the ACL: {entries}"

    # …and nothing outside fleetd's keys.
    client = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.set("someone-else:key", "1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.flushall()
    client.close()
