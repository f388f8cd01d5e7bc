"""Synchronous fallback and queue bypass (fleetd.runtime.inline, fleetd.api.fallback),
against real redis-server processes of the test's own: a sync-fallback job sent while
Redis is down runs at once and is answered 200 with its result, then lands in Redis
completed and never runs again; a bypassed critical job starts on the receiving daemon
before any claim (the pool's slots all busy), is stored claimed by it and can be
cancelled, and is retried by the pool when it fails; a bypassed job while Redis is
down runs at once and lands completed; fleetd.client and `fleetd enqueue --fallback
sync` run an e-mail in their own process — but not one whose enqueue may have reached
Redis before the connection broke (spooled instead); landing a finished job twice changes
nothing; the refusals name their field.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import trio
from api_client import PREFIX, api_config, running_api
from conftest import fleetd_env, make_config
from daemons import cli_json, run_cli
from redis_server import RedisServerFactory

from fleetd.api.context import api_redis_timeout
from fleetd.client import Client
from fleetd.config import Config
from fleetd.engine import Engine, build_registry
from fleetd.jobs.context import JobContext
from fleetd.jobs.handlers import HandlerDefaults, HandlerRegistry, JobHandler
from fleetd.runtime.inline import InlineResult
from fleetd.spool.finished import Finished, finished_encoder, finished_of, land_finished


class Recorder(JobHandler):
    """Records each run (the job id); sleeps `data.sleep` seconds; fails on `data.fail`."""

    job_type = "recorder"
    defaults = HandlerDefaults(sync_fallback=True)

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.entered: dict[str, float] = {}

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        self.entered[ctx.job.id] = trio.current_time()
        self.runs.append(ctx.job.id)
        await trio.sleep(float(data.get("sleep", 0)))
        if data.get("fail"):
            raise RuntimeError("asked to fail")
        if data.get("artifact"):  # `artifact` bytes, within [artifacts] job_max_bytes
            await ctx.artifacts.write_bytes("out.bin", b"a" * int(data["artifact"]))
        return {"echo": data.get("n"), "attempt": ctx.job.attempts}


class Plain(JobHandler):
    """A type without sync_fallback, sleeping `data.sleep` seconds."""

    job_type = "plain"

    async def run(self, ctx: JobContext, data: dict[str, Any]) -> dict[str, Any]:
        await trio.sleep(float(data.get("sleep", 0)))
        return {}


def setup(
    own_redis: RedisServerFactory, tmp_path: Path, **worker: object
) -> tuple[Any, Config, HandlerRegistry, Recorder]:
    server = own_redis(aof=True)
    changes = {"worker": worker} if worker else {}
    cfg = api_config(make_config(server.url, "inline", tmp_path / "state", **changes))
    registry = build_registry(cfg)
    recorder = Recorder()
    registry.register(recorder, source="tests")
    registry.register(Plain(), source="tests")
    return server, cfg, registry, recorder


def stored(cfg: Config, job_id: str) -> dict[str, str]:
    engine = Engine.build(cfg, daemon=False)
    try:
        return dict(engine.link.run_sync(lambda c: c.hgetall(engine.keys.job(job_id))))
    finally:
        engine.link.close()


def events_of(cfg: Config, job_id: str) -> list[str]:
    engine = Engine.build(cfg, daemon=False)
    try:
        found = engine.link.run_sync(lambda c: c.xrange(engine.keys.events, count=100_000))
        return [f["type"] for _, f in found if f["job_id"] == job_id]
    finally:
        engine.link.close()


async def test_sync_fallback_runs_inline_while_redis_is_down_and_lands_completed_once(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    server, cfg, registry, recorder = setup(own_redis, tmp_path)
    async with running_api(cfg, roles=("api", "worker"), registry=registry) as api:
        # Redis up: `fallback` changes nothing (queued, run by the pool).
        up = await api.post(f"{PREFIX}/enqueue", json={"type": "recorder", "fallback": "sync"})
        assert up.status_code == 201, up.text
        assert "ran" not in up.json()
        await api.wait_status(up.json()["job_id"], "completed")

        server.kill()
        body = {"type": "recorder", "data": {"n": 7}, "fallback": "sync"}
        r = await api.post(f"{PREFIX}/enqueue", json=body)
        assert r.status_code == 200, r.text
        answer = r.json()
        job_id = answer["job_id"]
        assert answer["status"] == "completed" and answer["ran"] == "sync"
        assert {k: answer["result"][k] for k in ("echo", "attempt")} == {"echo": 7, "attempt": 1}
        assert set(answer["result"]) == {"echo", "attempt", "processing_time", "worker_id"}
        assert recorder.runs.count(job_id) == 1
        failing = {"type": "recorder", "data": {"fail": True}, "fallback": "sync"}
        f = await api.post(f"{PREFIX}/enqueue", json=failing)
        assert f.status_code == 200, f.text
        assert f.json()["status"] == "failed" and "asked to fail" in f.json()["error"]
        # While spooled, the job is shown with its outcome.
        shown = (await api.get(f"{PREFIX}/{job_id}")).json()
        assert shown["status"] == "completed" and shown["job"]["spooled"] is True

        await trio.to_thread.run_sync(server.start)
        with trio.fail_after(20):
            while (await api.get(f"{PREFIX}/{job_id}")).json().get("job", {}).get("spooled"):
                await trio.sleep(0.05)
        landed = (await api.get(f"{PREFIX}/{job_id}")).json()
        assert landed["status"] == "completed", landed
        assert landed["job"]["result"] == answer["result"]
        failed = await api.wait_status(f.json()["job_id"], "failed")
        assert "asked to fail" in failed["job"]["error"]
        await trio.sleep(1.0)  # the pool had its chances to claim it
        assert recorder.runs.count(job_id) == 1
    hash_ = await trio.to_thread.run_sync(stored, cfg, job_id)
    assert hash_["status"] == "completed" and hash_["attempts"] == "1"
    assert "lease" not in hash_
    kinds = await trio.to_thread.run_sync(events_of, cfg, job_id)
    assert kinds == ["job.enqueued", "job.completed"]


async def test_fallback_and_bypass_refusals_name_their_field(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    _, cfg, registry, _ = setup(own_redis, tmp_path)
    async with running_api(cfg, roles=("api",), registry=registry) as api:
        cases = [
            ({"type": "plain", "fallback": "sync"}, "fallback", "sync_fallback"),
            ({"type": "recorder", "fallback": "later"}, "fallback", ""),
            ({"type": "recorder", "bypass": True}, "bypass", "critical"),
            ({"type": "recorder", "bypass": True, "priority": "critical"}, "bypass", "worker"),
        ]
        for body, field, words in cases:
            r = await api.post(f"{PREFIX}/enqueue", json=body)
            assert r.status_code == 422, (body, r.text)
            error = r.json()["error"]
            fields = error["details"]["fields"]
            assert [f["field"] for f in fields] == [field], error
            assert words in fields[0]["message"]
        bulk = await api.post(
            f"{PREFIX}/enqueue/bulk", json={"jobs": [{"type": "recorder", "bypass": True}]}
        )
        assert bulk.status_code == 422 and "jobs[0].bypass" in bulk.text


async def test_bypass_starts_before_any_claim_while_every_slot_is_busy(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    _, cfg, registry, recorder = setup(own_redis, tmp_path, concurrency=2)
    async with running_api(cfg, roles=("api", "worker"), registry=registry) as api:
        busy = [
            (await api.enqueue({"type": "plain", "data": {"sleep": 30}}))["job_id"]
            for _ in range(3)
        ]
        for job_id in busy[:2]:
            await api.wait_status(job_id, "processing")
        # Both slots of the pool run long jobs; a third one waits for a slot.
        pool = api.daemon.pool
        assert pool is not None and {j.id for j in pool.running_jobs()} == set(busy[:2])
        body = {"type": "recorder", "priority": "critical", "bypass": True, "data": {"n": 1}}
        sent = trio.current_time()
        r = await api.post(f"{PREFIX}/enqueue", json={**body, "data": {"n": 1, "sleep": 0.5}})
        assert r.status_code == 201, r.text
        job_id = r.json()["job_id"]
        assert r.json()["ran"] == "bypass" and r.json()["status"] == "processing"
        # Started before the answer, beside the two busy slots, claimed by this daemon.
        assert job_id in recorder.entered and recorder.entered[job_id] >= sent
        assert {j.id for j in pool.running_jobs()} == {*busy[:2], job_id}
        assert (await trio.to_thread.run_sync(stored, cfg, job_id))["worker"] == pool.daemon_id
        done = await api.wait_status(job_id, "completed")
        assert done["job"]["result"]["echo"] == 1 and done["job"]["result"]["attempt"] == 1
        # A bypassed job is a job as any other: it can be cancelled while it runs.
        slow = {**body, "data": {"sleep": 30}}
        r = await api.post(f"{PREFIX}/enqueue", json=slow)
        assert r.status_code == 201 and r.json()["ran"] == "bypass"
        slow_id = r.json()["job_id"]
        cancel = await api.delete(f"{PREFIX}/{slow_id}")
        assert cancel.status_code == 202, cancel.text
        await api.wait_status(slow_id, "cancelled")
        # The critical slot (one) is busy: the next bypass is queued as any critical job.
        hold = await api.post(f"{PREFIX}/enqueue", json=slow)
        assert hold.json()["ran"] == "bypass"
        queued = await api.post(f"{PREFIX}/enqueue", json=body)
        assert queued.status_code == 201 and "ran" not in queued.json()
        assert queued.json()["status"] == "pending"
        for job_id in [*busy, hold.json()["job_id"], queued.json()["job_id"]]:
            await api.delete(f"{PREFIX}/{job_id}")
    kinds = await trio.to_thread.run_sync(events_of, cfg, done["job"]["id"])
    assert kinds == ["job.enqueued", "job.started", "job.completed"]


async def test_bypass_lands_from_the_trio_thread_and_after_redis_forgot_its_scripts(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    """land.lua of a bypass goes out from the trio thread (fleetd.backend.native_lane): no
    worker-thread hop; after SCRIPT FLUSH (a restarted Redis forgets its scripts) the
    NOSCRIPT answer sends it through the link, which loads the script again; a second
    bypass with the same Idempotency-Key answers the first job and runs nothing."""
    server, cfg, registry, recorder = setup(own_redis, tmp_path)
    async with running_api(cfg, roles=("api", "worker"), registry=registry) as api:
        body = {"type": "recorder", "priority": "critical", "bypass": True, "data": {"n": 1}}
        inline = api.daemon.http.state.inline if api.daemon.http else None
        assert inline is not None
        hops: list[object] = []
        real = inline.link.call

        async def counted(fn: Any, *args: Any) -> Any:
            hops.append(fn)
            return await real(fn, *args)

        inline.link.call = counted  # type: ignore[method-assign]
        try:
            r = await api.post(f"{PREFIX}/enqueue", json=body)
            assert r.status_code == 201 and r.json()["ran"] == "bypass", r.text
            landed_hops = [f for f in hops if "_land_claimed" in repr(f)]
            assert landed_hops == []  # land.lua did not take the link's thread
            # ... on a lane with the API link's timeouts ([redis] and api_redis_timeout).
            lane = inline._lane
            assert lane is not None
            assert lane._command_timeout == api_redis_timeout(cfg)
            assert lane._connect_timeout == min(cfg.redis.connect_timeout, lane._command_timeout)
            server.command("SCRIPT", "FLUSH")
            again = await api.post(f"{PREFIX}/enqueue", json={**body, "data": {"n": 2}})
            assert again.status_code == 201 and again.json()["ran"] == "bypass", again.text
            assert [f for f in hops if "_land_claimed" in repr(f)] != []  # NOSCRIPT: via link
        finally:
            del inline.link.call
        for job_id in (r.json()["job_id"], again.json()["job_id"]):
            await api.wait_status(job_id, "completed")
        key = {**api.headers, "Idempotency-Key": "once"}
        first = await api.post(f"{PREFIX}/enqueue", json={**body, "data": {"n": 3}}, headers=key)
        second = await api.post(f"{PREFIX}/enqueue", json={**body, "data": {"n": 4}}, headers=key)
        assert first.status_code == 201 and second.status_code == 200, second.text
        assert second.json()["job_id"] == first.json()["job_id"]
        await api.wait_status(first.json()["job_id"], "completed")
    assert sorted(recorder.runs) == sorted(
        [r.json()["job_id"], again.json()["job_id"], first.json()["job_id"]]
    )


async def test_bypass_while_redis_is_down_runs_at_once_and_lands_completed(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    server, cfg, registry, recorder = setup(own_redis, tmp_path)
    async with running_api(cfg, roles=("api", "worker"), registry=registry) as api:
        server.kill()
        body = {"type": "recorder", "priority": "critical", "bypass": True, "data": {"n": 3}}
        r = await api.post(f"{PREFIX}/enqueue", json=body)
        assert r.status_code == 200, r.text
        job_id = r.json()["job_id"]
        assert r.json()["ran"] == "bypass" and r.json()["status"] == "completed"
        assert recorder.runs == [job_id]
        await trio.to_thread.run_sync(server.start)
        with trio.fail_after(20):
            while (await api.get(f"{PREFIX}/{job_id}")).json().get("job", {}).get("spooled"):
                await trio.sleep(0.05)
        assert (await api.get(f"{PREFIX}/{job_id}")).json()["status"] == "completed"
        await trio.sleep(1.0)
        assert recorder.runs == [job_id]


def test_the_client_and_the_cli_run_an_email_here_while_redis_is_down(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    server = own_redis(aof=True)
    cfg = api_config(make_config(server.url, "inline", tmp_path / "state"))
    env = fleetd_env(cfg)
    mail = {"to": "ops@example.com", "subject": "Fleet Update", "body": "Status changed"}
    outbox = Path(cfg.state_dir) / "outbox"
    server.kill()
    with Client(cfg, name="web") as client:
        ran = client.enqueue("email_notification", mail, fallback="sync")
        assert isinstance(ran, InlineResult) and ran.status == "completed"
        assert ran.result is not None and ran.result["worker_id"]
        refused = run_cli(env, "enqueue", "noop", "--fallback", "sync")
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1
        assert "fallback" in refused.stderr and "sync_fallback" in refused.stderr
    cli = cli_json(env, "enqueue", "email_notification", "--data", json.dumps(mail),
                   "--fallback", "sync", "--json")  # fmt: skip
    assert cli["status"] == "completed" and cli["ran"] == "sync"
    ids = [ran.job_id, cli["job_id"]]
    assert sorted(p.name for p in outbox.glob("*.eml")) == sorted(f"{i}.eml" for i in ids)
    server.start()
    replayed = cli_json(env, "spool", "replay", "--json")
    assert (replayed["replayed"], replayed["left"]) == (2, 0)
    for job_id in ids:
        assert stored(cfg, job_id)["status"] == "completed"
        assert events_of(cfg, job_id) == ["job.enqueued", "job.completed"]


async def test_a_failing_bypassed_job_is_retried_by_the_pool_as_any_job(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    _, cfg, registry, recorder = setup(own_redis, tmp_path)
    async with running_api(cfg, roles=("api", "worker"), registry=registry) as api:
        body = {"type": "recorder", "priority": "critical", "bypass": True, "max_retries": 1,
                "data": {"fail": True}}  # fmt: skip
        r = await api.post(f"{PREFIX}/enqueue", json=body)
        assert r.status_code == 201 and r.json()["ran"] == "bypass", r.text
        job_id = r.json()["job_id"]
        failed = await api.wait_status(job_id, "failed", limit=20)
        assert failed["job"]["attempts"] == 2 and failed["job"]["retry_count"] == 1
        assert recorder.runs == [job_id, job_id]
    kinds = await trio.to_thread.run_sync(events_of, cfg, job_id)
    assert kinds == ["job.enqueued", "job.started", "job.retrying", "job.started", "job.failed"]


def test_landing_a_finished_job_twice_changes_nothing(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    """A crash between land.lua and the spool's removal: the replay sends it again."""
    server = own_redis()
    cfg = make_config(server.url, "inline", tmp_path / "state")
    engine = Engine.build(cfg, daemon=False)
    try:
        row = engine.ops.prepare({"type": "noop", "idempotency_key": "k-1"})
        done = Finished("completed", "host:1", 1_000, 2_000, result='{"ok":true}')
        text = finished_encoder(done)(row)
        assert finished_of(text) == done
        land = engine.link.run_sync
        first = land(land_finished, engine.scripts, text, 500, done)
        again = land(land_finished, engine.scripts, text, 500, done)
        assert first == (True, row.id) and again == (False, row.id)
        job = engine.link.run_sync(engine.ops.get, row.id)
        assert job is not None and job.status.value == "completed"
        assert job.result == {"ok": True}
        # Its idempotency key names it: a new job with that key is that job.
        [dup] = engine.link.run_sync(engine.ops.enqueue_rows, [
            engine.ops.prepare({"type": "noop", "idempotency_key": "k-1"})])  # fmt: skip
        assert dup.duplicate and dup.job_id == row.id
    finally:
        engine.link.close()
    assert events_of(cfg, row.id) == ["job.enqueued", "job.completed"]


class CuttingServer:
    """A TCP server that reads what a client sends, then closes the connection: what a
    client sees when Redis was SIGKILLed after it received (and maybe ran) a command."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.received = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.sock.getsockname()[1]}/0"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                if conn.recv(65536):
                    self.received += 1

    def __enter__(self) -> CuttingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        self._thread.join(5)


def test_a_fallback_whose_enqueue_may_have_reached_redis_is_spooled_not_run_here(
    tmp_path: Path,
) -> None:
    mail = {"to": "ops@example.com", "subject": "Fleet Update", "body": "Status changed"}
    with CuttingServer() as server:
        cfg = api_config(make_config(server.url, "inline", tmp_path / "state"))
        with Client(cfg, name="web") as client:
            result = client.enqueue("email_notification", mail, fallback="sync")
    # Redis received the enqueue and may have run it: running the e-mail here as well
    # could send it twice. Spooled instead: the replay finds it in Redis or enqueues it.
    assert server.received >= 1
    assert not isinstance(result, InlineResult) and result.status == "spooled"
    assert not list((Path(cfg.state_dir) / "outbox").glob("*.eml"))


async def test_a_job_run_in_the_api_process_holds_the_artifact_limits(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    """The API's own runs (sync fallback, bypass) write artifacts within `[artifacts]`
    limits, as the pool's do."""
    server = own_redis(aof=True)
    cfg = api_config(make_config(server.url, "inline", tmp_path / "state",
                                 artifacts={"job_max_bytes": 1000}))  # fmt: skip
    registry = build_registry(cfg)
    registry.register(Recorder(), source="tests")
    async with running_api(cfg, roles=("api",), registry=registry) as api:
        server.kill()
        over = {"type": "recorder", "data": {"artifact": 2000}, "fallback": "sync"}
        r = await api.post(f"{PREFIX}/enqueue", json=over)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "failed" and "job_max_bytes" in r.json()["error"]
        fits = {"type": "recorder", "data": {"artifact": 500}, "fallback": "sync"}
        r = await api.post(f"{PREFIX}/enqueue", json=fits)
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
