"""Audit entries survive a Redis outage, against real redis-server processes of the
test's own (`own_redis`): kept in memory and written once Redis is back; spooled to the
state directory when the process stops, or before the call is answered when that call
met the outage (so a SIGKILL right after the answer loses nothing), and written by the
next process — exactly once, however many processes replay the spool.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from api_client import PREFIX, SECRET, api_config, auth, running_api
from conftest import fleetd_env, make_config
from daemons import Fleet, cli_json, run_cli, settings, wait_for
from redis_server import RedisServer, RedisServerFactory

from fleetd.audit.backlog import SPILL_AFTER, AuditTrail, Backlog, Stamped
from fleetd.audit.entry import Action, AuditEntry, Door
from fleetd.audit.reader import AuditReader
from fleetd.audit.spool import SPOOL_NAME, AuditSpool
from fleetd.audit.store import AuditCaps, AuditStore
from fleetd.audit.writer import REPLAY_INTERVAL, RETRY_CAP
from fleetd.backend.redis_link import RedisUnavailable
from fleetd.client import Client
from fleetd.config import Config
from fleetd.engine import Engine


def audit_log(cfg: Config) -> list[dict[str, Any]]:
    """Every entry of the namespace's audit stream, oldest first."""
    engine = Engine.build(cfg, daemon=True)
    try:
        found, _ = engine.link.run_sync(lambda c: AuditReader(engine.keys).read(c, limit=1000))
    finally:
        engine.link.close()  # not engine.close(): this reader must not replay the spool
    return list(reversed(found))


def spooled(cfg: Config) -> list[dict[str, Any]]:
    path = cfg.state_dir / SPOOL_NAME
    if not path.exists():
        return []
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return [json.loads(line)["entry"] for line in path.read_text().splitlines()]


def setup(own_redis: RedisServerFactory, tmp_path: Path) -> tuple[RedisServer, Config]:
    server = own_redis()
    # The enqueue spool off: these tests need requests that fail (503) during the outage
    # (tests/spool covers enqueues spooled and replayed).
    cfg = make_config(server.url, "audit", tmp_path / "state", spool={"enabled": False})
    return server, api_config(cfg)


def test_a_cli_entry_spooled_in_an_outage_is_written_once_by_the_next_command(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    server, cfg = setup(own_redis, tmp_path)
    env = fleetd_env(cfg)
    job_id = cli_json(env, "enqueue", "noop", "--json")["job_id"]
    server.stop()
    done = run_cli(env, "jobs", "cancel", job_id)
    assert done.returncode == 2 and "Redis unreachable" in done.stderr
    [entry] = spooled(cfg)
    assert (entry["action"], entry["door"], entry["target"]) == ("job.cancel", "cli", job_id)
    assert entry["outcome"] == "redis_unavailable"  # the code a 503 of the API says
    server.start()  # same port, empty (no AOF): only what is written from now on
    assert run_cli(env, "stats").returncode == 0  # the next command replays the spool
    assert spooled(cfg) == []
    log = audit_log(cfg)
    assert [(e["action"], e["outcome"], e["uid"]) for e in log] == [
        ("job.cancel", "redis_unavailable", entry["uid"])
    ]
    assert log[0]["at"] != log[0]["id"]  # when it happened, not when it was written
    assert run_cli(env, "stats").returncode == 0
    assert len(audit_log(cfg)) == 1


async def test_an_http_entry_answered_503_lands_once_redis_is_back(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    server, cfg = setup(own_redis, tmp_path)
    async with running_api(cfg) as api:
        server.kill()
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"})
        assert r.status_code == 503
        await trio.to_thread.run_sync(server.start)
        with trio.fail_after(10):
            while not (log := await trio.to_thread.run_sync(audit_log, cfg)):
                await trio.sleep(0.1)
        assert [(e["action"], e["status"], e["door"]) for e in log] == [
            ("job.enqueue", 503, "http")
        ]
    assert spooled(cfg) == [] and len(audit_log(cfg)) == 1


async def test_an_entry_spooled_when_the_daemon_knew_redis_was_away_lands_at_the_retry_pace(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    """The writer's link failed before the entry was spooled: its replay is tried at the
    retry pace (RETRY_CAP, 2 s), not at the next REPLAY_INTERVAL (10 s after start)."""
    server, cfg = setup(own_redis, tmp_path)
    async with running_api(cfg) as api:
        server.kill()
        link = api.daemon.engine.link
        with pytest.raises(RedisUnavailable):
            await link.call(lambda c: c.ping())
        assert not link.ready
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"})
        assert r.status_code == 503
        assert [e["status"] for e in spooled(cfg)] == ["503"]
        await trio.to_thread.run_sync(server.start)
        limit = 2 * RETRY_CAP + 2
        assert limit < REPLAY_INTERVAL
        with trio.fail_after(limit):
            while not await trio.to_thread.run_sync(audit_log, cfg):
                await trio.sleep(0.1)
    assert spooled(cfg) == [] and [e["status"] for e in audit_log(cfg)] == [503]


async def test_entries_of_a_daemon_stopped_in_an_outage_are_written_by_the_next_process(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    server, cfg = setup(own_redis, tmp_path)
    async with running_api(cfg) as api:
        server.kill()
        for _ in range(3):
            r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"})
            assert r.status_code == 503
    # Stopped with Redis away: nothing dropped, all three in the spool.
    assert [e["action"] for e in spooled(cfg)] == ["job.enqueue"] * 3
    server.start()
    env = fleetd_env(cfg)
    assert run_cli(env, "stats").returncode == 0
    assert [e["status"] for e in audit_log(cfg)] == [503, 503, 503]
    assert spooled(cfg) == []


def test_a_daemon_sigkilled_right_after_answering_in_an_outage_loses_no_entry(
    own_redis: RedisServerFactory, tmp_path: Path, fleet: Fleet
) -> None:
    server, cfg = setup(own_redis, tmp_path)
    env = {
        **fleetd_env(cfg),
        **settings(auth_secret=SECRET, daemon_roles="api", spool_enabled="false"),
    }
    daemon = fleet.start(env)
    url = fleet.api_url(cfg.state_dir)
    server.kill()
    r = httpx.post(f"{url}{PREFIX}/enqueue", json={"type": "noop"}, headers=auth(), timeout=10)
    assert r.status_code == 503
    # On disk before the answer went out (SPILL_AFTER is the rule of the other entries).
    assert [(e["action"], e["status"]) for e in spooled(cfg)] == [("job.enqueue", "503")]
    daemon.kill()
    server.start()
    assert run_cli(env, "stats").returncode == 0
    assert [(e["action"], e["status"]) for e in audit_log(cfg)] == [("job.enqueue", 503)]


def test_a_spooled_enqueue_keeps_its_entry_when_the_daemon_is_sigkilled_at_once(
    own_redis: RedisServerFactory, tmp_path: Path, fleet: Fleet
) -> None:
    server = own_redis()
    cfg = api_config(make_config(server.url, "audit", tmp_path / "state"))
    env = {**fleetd_env(cfg), **settings(auth_secret=SECRET, daemon_roles="api")}
    daemon = fleet.start(env)
    url = fleet.api_url(cfg.state_dir)
    before = time.monotonic()
    server.kill()
    r = httpx.post(f"{url}{PREFIX}/enqueue", json={"type": "noop"}, headers=auth(), timeout=10)
    assert r.status_code == 202 and r.json()["status"] == "spooled"
    job_id = r.json()["job_id"]
    daemon.kill()  # well inside SPILL_AFTER: only the fsync before the answer kept it
    assert time.monotonic() - before < SPILL_AFTER
    server.start()  # empty (no AOF): what is in Redis from now on came from the spools
    fleet.start(env, name="next")  # replays both spools (jobs, then their entries)

    def entries() -> list[tuple[str, str | None]]:
        return sorted((e["action"], e["target"]) for e in audit_log(cfg))

    expected = [("job.enqueue", job_id), ("job.replay", job_id)]
    wait_for(lambda: entries() == expected, 30, f"{expected}", fleet.tails)
    assert spooled(cfg) == []


def test_replaying_a_spool_twice_or_after_a_lost_answer_writes_each_entry_once(
    config: Config, engine: Engine, tmp_path: Path
) -> None:
    store = AuditStore(engine.keys, engine.scripts, AuditCaps(1000, 1000, 1000))
    spool = AuditSpool(tmp_path / SPOOL_NAME)
    trail = AuditTrail(store, spool)
    items = [
        Stamped("epoch-a", n, AuditEntry(Action.JOB_RESET, "cli:x", Door.CLI, target=f"job_{n}"))
        for n in (1, 2, 3)
    ]
    client = engine.link.client
    # The first two reached Redis, but the answer was lost: the whole batch is sent again.
    assert store.write(client, "epoch-a", items[:2]) == 2
    trail.spool.append(items)
    trail.spool.append(items)  # and spooled twice, as two crashed processes might
    assert spool.replay(lambda e, s: store.write(client, e, s)) == 1
    assert spool.replay(lambda e, s: store.write(client, e, s)) == 0
    found, _ = AuditReader(engine.keys).read(client, limit=10)
    assert sorted(e["target"] for e in found) == ["job_1", "job_2", "job_3"]


def test_a_client_enqueue_spooled_in_an_outage_has_its_entry_on_disk_before_it_returns(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    server = own_redis()
    cfg = make_config(server.url, "audit", tmp_path / "state")
    with Client(cfg, name="durable") as client:
        server.kill()
        result = client.enqueue("noop", {})
        assert result.status == "spooled"
        # Not left in memory for the background thread's SPILL_AFTER: a SIGKILL of the
        # client now keeps it.
        [entry] = spooled(cfg)
        assert (entry["action"], entry["door"], entry["target"]) == (
            "job.enqueue", "client", result.job_id,
        )  # fmt: skip
        assert entry["detail"]["spooled"] is True


def test_a_batch_written_while_the_backlog_was_spilled_does_not_drop_newer_entries() -> None:
    backlog = Backlog()
    backlog.add(AuditEntry(Action.JOB_CANCEL, "cli:x", Door.CLI, target="old"))
    epoch, batch = backlog.head(10)  # a write in flight…
    assert [s.entry.target for s in backlog.take_all()] == ["old"]  # …when it is spilled
    backlog.add(AuditEntry(Action.JOB_CANCEL, "cli:x", Door.CLI, target="new"))
    backlog.drop(len(batch), epoch)  # the write went through after all
    assert [s.entry.target for s in backlog] == ["new"]
    epoch, batch = backlog.head(10)
    backlog.drop(len(batch), epoch)
    assert len(backlog) == 0
