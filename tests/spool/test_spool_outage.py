"""Enqueues during a Redis outage, against real redis-server processes of the test's own:
the HTTP API (single and bulk), the CLI and fleetd.client answer `spooled` with the
job's id, `GET /jobs/{id}` answers `spooled` until the job lands, /metrics and
worker/health show the spool, the caps answer 503, and when Redis is back every job
lands once — also when the daemon that spooled them was SIGKILLed and another one
started on its state directory.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import trio
from api_client import PREFIX, SECRET, api_config, auth, running_api
from conftest import fleetd_env, make_config
from daemons import Fleet, cli_json, run_cli, settings, wait_for
from redis_server import RedisServer, RedisServerFactory

from fleetd.client import Client
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus


def setup(
    own_redis: RedisServerFactory, tmp_path: Path, **spool: object
) -> tuple[RedisServer, Config]:
    server = own_redis(aof=True)
    changes = {"spool": spool} if spool else {}
    return server, api_config(make_config(server.url, "spool", tmp_path / "state", **changes))


def statuses(cfg: Config, ids: list[str]) -> dict[str, str]:
    engine = Engine.build(cfg, daemon=False)
    try:
        jobs = engine.link.run_sync(engine.ops.get_many, ids)
        return {i: (j.status.value if j else "missing") for i, j in zip(ids, jobs, strict=True)}
    finally:
        engine.link.close()


def replays(cfg: Config) -> list[str]:
    from fleetd.audit.reader import AuditReader

    engine = Engine.build(cfg, daemon=False)
    try:
        found, _ = engine.link.run_sync(lambda c: AuditReader(engine.keys).read(c, limit=1000))
    finally:
        engine.link.close()
    return [str(e["target"]) for e in reversed(found) if e["action"] == "job.replay"]


async def test_http_enqueues_are_spooled_shown_and_land_once_redis_is_back(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    server, cfg = setup(own_redis, tmp_path)
    async with running_api(cfg, roles=("api", "worker")) as api:
        await api.enqueue({"type": "noop"})  # Redis is up: stored at once
        server.kill()
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop", "company_id": "acme"})
        assert r.status_code == 202, r.text
        one = r.json()
        assert one["status"] == "spooled" and one["job_id"].startswith("job_")
        r = await api.post(f"{PREFIX}/enqueue/bulk", json={"jobs": [{"type": "noop"}] * 3})
        assert r.status_code == 202, r.text
        bulk = [j["job_id"] for j in r.json()["jobs"]]
        assert {j["status"] for j in r.json()["jobs"]} == {"spooled"}
        ids = [one["job_id"], *bulk]
        keyed = {"Idempotency-Key": "order-7", **api.headers}
        r1 = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"}, headers=keyed)
        r2 = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"}, headers=keyed)
        assert (r1.status_code, r2.status_code) == (202, 202)
        assert r2.json() == {**r1.json(), "duplicate": True}  # a retry: the same job
        ids.append(r1.json()["job_id"])

        shown = await api.get(f"{PREFIX}/{one['job_id']}")
        assert shown.status_code == 200, shown.text
        assert shown.json()["status"] == "spooled"
        assert shown.json()["job"]["company_id"] == "acme"
        # Another company's spooled job answers as a job that does not exist: with Redis
        # away, nobody can tell (503).
        other = await api.get(f"{PREFIX}/{one['job_id']}", headers=auth("globex"))
        missing = await api.get(f"{PREFIX}/job_missing")
        assert other.status_code == missing.status_code == 503
        assert other.json()["error"]["code"] == missing.json()["error"]["code"]

        metrics = (await api.get("/metrics")).text
        assert "fleetd_spool_jobs 5.0" in metrics and "fleetd_redis_up 0.0" in metrics
        health = (await api.get(f"{PREFIX}/worker/health")).json()
        assert health["status"] == "unhealthy" and health["spool"]["jobs"] == 5
        assert any("Redis is unreachable" in r for r in health["reasons"])

        await trio.to_thread.run_sync(server.start)  # AOF: the first job is still there
        for job_id in ids:
            done = await api.wait_status(job_id, "completed", limit=20)
            assert done["job"]["id"] == job_id
        health = (await api.get(f"{PREFIX}/worker/health")).json()
        assert health["spool"]["jobs"] == 0
    assert await trio.to_thread.run_sync(replays, cfg) == ids  # each once, in order
    assert set((await trio.to_thread.run_sync(statuses, cfg, ids)).values()) == {"completed"}


async def test_past_the_caps_an_enqueue_answers_503(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    server, cfg = setup(own_redis, tmp_path, max_jobs=2)
    async with running_api(cfg) as api:
        server.kill()
        r = await api.post(f"{PREFIX}/enqueue/bulk", json={"jobs": [{"type": "noop"}] * 2})
        assert r.status_code == 202
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"})
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        assert r.json()["error"]["code"] == "redis_unavailable"
        message = r.json()["error"]["message"]
        # What to do, and nothing of the host: not the spool's size, file or Redis's address.
        assert "the spool is full" in message, message
        assert "2 jobs" not in message and str(server.port) not in message
        assert str(tmp_path) not in message and "127.0.0.1" not in message


def test_the_cli_and_the_client_spool_and_the_operator_commands(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    server, cfg = setup(own_redis, tmp_path)
    env = fleetd_env(cfg)
    server.kill()
    first = cli_json(env, "enqueue", "noop", "--json")
    assert first["status"] == "spooled"
    shown = cli_json(env, "jobs", "show", first["job_id"], "--json")
    assert (shown["status"], shown["job"]["id"]) == ("spooled", first["job_id"])
    missing = run_cli(env, "jobs", "show", "job_nope")
    assert missing.returncode == 2 and "Redis unreachable" in missing.stderr
    with Client(cfg, name="web") as client:
        second = client.enqueue("noop", {"n": 1})
        many = client.enqueue_many([{"type": "noop"}, {"type": "noop"}])
    assert second.status == "spooled" and {r.status for r in many} == {"spooled"}
    status = cli_json(env, "spool", "status", "--json")
    assert status["jobs"] == 4 and status["set_aside"] == []
    refused = run_cli(env, "spool", "replay")
    assert refused.returncode == 2 and "Redis unreachable" in refused.stderr
    dropped = cli_json(env, "spool", "drop", many[1].job_id, "--json")
    assert dropped == {"dropped": 1}
    bad = run_cli(env, "spool", "drop")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--all" in bad.stderr

    server.start()
    replayed = cli_json(env, "spool", "replay", "--json")
    assert (replayed["replayed"], replayed["left"]) == (3, 0)
    ids = [first["job_id"], second.job_id, many[0].job_id]
    assert replays(cfg) == ids
    assert set(statuses(cfg, ids).values()) == {JobStatus.PENDING.value}
    assert statuses(cfg, [many[1].job_id]) == {many[1].job_id: "missing"}


def test_a_spool_left_by_a_sigkilled_daemon_is_replayed_by_the_next_one(
    own_redis: RedisServerFactory, tmp_path: Path, fleet: Fleet
) -> None:
    server, cfg = setup(own_redis, tmp_path)
    env = {**fleetd_env(cfg), **settings(auth_secret=SECRET, daemon_roles="api")}
    daemon = fleet.start(env)
    url = fleet.api_url(cfg.state_dir)
    server.kill()
    ids = []
    for _ in range(3):
        r = httpx.post(f"{url}{PREFIX}/enqueue", json={"type": "noop"}, headers=auth(), timeout=10)
        assert r.status_code == 202, r.text
        ids.append(r.json()["job_id"])
    daemon.kill()
    server.start()
    assert set(statuses(cfg, ids).values()) == {"missing"}  # only in the spool
    fleet.start(env, name="next")
    wait_for(lambda: set(statuses(cfg, ids).values()) == {"pending"}, 15, "the replay", fleet.tails)
    assert replays(cfg) == ids


async def test_with_the_spool_off_an_outage_answers_503_as_before(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    server, cfg = setup(own_redis, tmp_path, enabled=False)
    async with running_api(cfg) as api:
        server.kill()
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"})
        assert r.status_code == 503
    assert not (cfg.state_dir / "enqueue-spool.db").exists()


async def test_no_company_fills_the_spool_others_need(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    server, cfg = setup(own_redis, tmp_path, max_jobs=4, company_share=0.5)
    async with running_api(cfg) as api:
        server.kill()
        flood = {"jobs": [{"type": "noop", "company_id": "A"}] * 2}
        r = await api.post(f"{PREFIX}/enqueue/bulk", json=flood)
        assert r.status_code == 202
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop", "company_id": "A"})
        assert r.status_code == 503, r.text
        assert "company 'A' holds its whole share" in r.json()["error"]["message"]
        # Room is left for everyone else: another company, the platform's own jobs.
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop", "company_id": "B"})
        assert r.status_code == 202, r.text
        r = await api.post(f"{PREFIX}/enqueue", json={"type": "noop"})
        assert r.status_code == 202, r.text
