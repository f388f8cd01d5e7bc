"""The outage test: a steady stream of HTTP and fleetd.client enqueues (mixed priorities)
while redis-server is SIGKILLed for OUTAGE (20 s) and restarted from its AOF, and the
daemon is SIGKILLed once during the outage and replaced by another on its state
directory. Some HTTP jobs are critical with `bypass` (started on the daemon at once),
some HTTP and client jobs are e-mails with `fallback: sync` (run by whoever received
them while the queue is unavailable); the HTTP stream also cancels delayed jobs (more
mutations to audit, refused with 503 during the outage).

Afterwards: every acknowledged job (200 run here, 201, 202 `spooled`) completed exactly
once — one `job.completed` event each; the bypassed jobs answered during the outage ran
during it; the jobs run inline were never run again (no `job.started`), are completed
and wrote their e-mail; and the audit log holds every mutation: each acknowledged job's
`job.enqueue` exactly once (and its `job.replay` when it was spooled), each answered
HTTP call's entry with its status, however the daemon was killed.

Every wait is on a condition, bounded; the only sleep is the outage itself.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_client import PREFIX, SECRET, api_config, auth
from conftest import fleetd_env, make_config
from daemons import Fleet, FleetdProcess, settings, wait_for
from redis_server import RedisServerFactory

from fleetd.audit.reader import AuditReader
from fleetd.backend.redis_link import RedisUnavailable
from fleetd.client import Client
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.runtime.inline import InlineResult

# The acceptance: Redis SIGKILLed for 20 s.
OUTAGE = 20.0
# Bounds of the waits for the stream to show each phase (a loaded 2-core box answers
# dozens of requests a second; these only matter when something is stuck).
PHASE_TIMEOUT = 8.0
PRIORITIES = ("low", "normal", "high", "critical")
MAIL = {"to": "ops@example.com", "subject": "Fleet Update", "body": "Status changed"}
# Jobs enqueued with a run_at an hour away, cancelled by the HTTP stream (one request
# in five, one job at a time until it answers 200): enough that some are left to be
# refused during the outage.
DELAYED = 40


@dataclasses.dataclass(frozen=True)
class Ack:
    job_id: str
    door: str  # http | client
    kind: str  # plain | bypass | sync (what was asked)
    code: int  # HTTP status (the client's: 0)
    status: str  # the answer's status: pending, processing, spooled, completed…
    ran: str  # the answer's `ran`: bypass or sync when it ran (or started) at once
    at: float  # time.monotonic() when the answer came


class Stream:
    """Enqueues from two threads, one HTTP and one client, until stopped: every answer
    noted (acknowledged jobs, and every HTTP answer for the audit check)."""

    def __init__(self, fleet: Fleet, cfg: Config, delayed: list[str]) -> None:
        self.fleet, self.cfg = fleet, cfg
        self.acks: list[Ack] = []
        self.answered: Counter[tuple[str, int, str | None]] = Counter()  # (action, code, target)
        self.unanswered = 0  # HTTP requests that may have reached a daemon killed under them
        self.to_cancel = list(delayed)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=f) for f in (self._http, self._client)]

    def _ack(self, ack: Ack) -> None:
        with self._lock:
            self.acks.append(ack)

    def since(self, t: float, **match: object) -> list[Ack]:
        with self._lock:
            acks = list(self.acks)
        return [a for a in acks if a.at >= t and all(getattr(a, k) == v for k, v in match.items())]

    def _post(self, http: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response | None:
        try:
            url = self.fleet.api_url(self.cfg.state_dir)
            return http.request(method, f"{url}{PREFIX}{path}", headers=auth(), **kw)
        except httpx.ConnectError:
            return None  # refused before sending: no daemon there (killed, not started)
        except httpx.HTTPError:
            with self._lock:
                self.unanswered += 1  # sent, no answer: the daemon died under it
            return None

    def _http(self) -> None:
        n = 0
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                n += 1
                if n % 5 == 2 and self.to_cancel:
                    job_id = self.to_cancel[0]
                    r = self._post(http, "DELETE", f"/{job_id}")
                    if r is not None:
                        self.answered["job.cancel", r.status_code, job_id] += 1
                        if r.status_code == 200:
                            self.to_cancel.pop(0)
                    continue
                kind = "bypass" if n % 8 == 3 else "sync" if n % 8 == 5 else "plain"
                body: dict[str, Any] = {"type": "noop", "data": {"n": n},
                                        "priority": PRIORITIES[n % 4]}  # fmt: skip
                if kind == "bypass":  # critical: started on the daemon at once
                    body.update(priority="critical", bypass=True)
                elif kind == "sync":  # run here while the queue is unavailable (outbox mode)
                    body = {"type": "email_notification", "data": MAIL, "fallback": "sync"}
                r = self._post(http, "POST", "/enqueue", json=body)
                if r is None:
                    time.sleep(0.05)
                    continue
                answer = r.json()
                ok = r.status_code in (200, 201, 202)
                self.answered["job.enqueue", r.status_code, answer["job_id"] if ok else None] += 1
                if ok:
                    ran = answer.get("ran") or ""
                    self._ack(Ack(answer["job_id"], "http", kind, r.status_code,
                                  answer["status"], ran, time.monotonic()))  # fmt: skip
                time.sleep(0.01)

    def _client(self) -> None:
        with Client(self.cfg, name="outage") as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                kind = "sync" if n % 6 == 4 else "plain"
                try:
                    if kind == "sync":
                        result = client.enqueue("email_notification", MAIL, fallback="sync")
                    else:
                        result = client.enqueue("noop", {"c": n}, priority=PRIORITIES[n % 4])
                except RedisUnavailable:
                    continue  # not acknowledged (and audited as refused)
                ran = "sync" if isinstance(result, InlineResult) else ""
                self._ack(Ack(result.job_id, "client", kind, 0, result.status, ran,
                              time.monotonic()))  # fmt: skip
                time.sleep(0.01)

    def __enter__(self) -> Stream:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(60)


@dataclasses.dataclass
class Outcome:
    completed: Counter[str]  # job.completed events per job id
    started: Counter[str]  # job.started events per job id
    audit: Counter[tuple[str, str, str, int]]  # (action, door, target, status)
    jobs: dict[str, dict[str, str]]  # job hashes of the ids asked for


def read_outcome(cfg: Config, ids: list[str]) -> Outcome:
    engine = Engine.build(cfg, daemon=False)
    try:

        def read(c: Any) -> Outcome:
            completed: Counter[str] = Counter()
            started: Counter[str] = Counter()
            for _, f in c.xrange(engine.keys.events, count=1_000_000):
                if f["type"] == "job.completed":
                    completed[f["job_id"]] += 1
                elif f["type"] == "job.started":
                    started[f["job_id"]] += 1
            entries, _ = AuditReader(engine.keys).read(c, limit=100_000)
            audit = Counter(
                (e["action"], e["door"], e["target"] or "", e["status"]) for e in entries
            )
            pipe = c.pipeline(transaction=False)
            for j in ids:
                pipe.hgetall(engine.keys.job(j))
            return Outcome(completed, started, audit, dict(zip(ids, pipe.execute(), strict=True)))

        return engine.link.run_sync(read)
    finally:
        engine.link.close()  # not engine.close(): this reader must not replay the spools


def enqueue_delayed(url: str) -> list[str]:
    run_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    out = []
    for _ in range(DELAYED):
        r = httpx.post(f"{url}{PREFIX}/enqueue", json={"type": "noop", "run_at": run_at},
                       headers=auth(), timeout=10)  # fmt: skip
        assert r.status_code == 201, r.text
        out.append(r.json()["job_id"])
    return out


def kinds(acks: list[Ack]) -> set[tuple[str, str]]:
    """(door, what happened) of each answer: spooled, queued, or ran / started at once."""
    return {(a.door, a.ran or ("spooled" if a.status == "spooled" else "queued")) for a in acks}


@pytest.mark.slow
def test_every_acknowledged_job_completes_exactly_once_across_an_outage(
    own_redis: RedisServerFactory, tmp_path: Path, fleet: Fleet
) -> None:
    server = own_redis(aof=True)  # appendfsync always: an acknowledged write is on disk
    cfg = api_config(make_config(server.url, "outage", tmp_path / "state"))
    env = {
        **fleetd_env(cfg),
        **settings(auth_secret=SECRET, worker_lease="2s", maintenance_interval="200ms"),
        **settings(redis_reconnect_max_backoff="500ms", spool_replay_interval="200ms"),
    }
    first = fleet.start(env, name="first")
    delayed = enqueue_delayed(fleet.api_url(cfg.state_dir))

    def phase(stream: Stream, since: float, want: set[tuple[str, str]], what: str) -> None:
        wait_for(lambda: want <= kinds(stream.since(since)), PHASE_TIMEOUT,
                 f"{what}: {sorted(want - kinds(stream.since(since)))}", fleet.tails)  # fmt: skip

    with Stream(fleet, cfg, delayed) as stream:
        up = {("http", "queued"), ("http", "bypass"), ("client", "queued")}
        phase(stream, 0, up, "answers with Redis up")
        killed_at = time.monotonic()
        killed_ms = int(time.time() * 1000)
        server.kill()
        down = {("http", "spooled"), ("http", "bypass"), ("http", "sync"),
                ("client", "spooled"), ("client", "sync")}  # fmt: skip
        phase(stream, killed_at, down, "answers of the first daemon during the outage")
        first.kill()  # SIGKILL during the outage: its spools stay on disk
        replaced_at = time.monotonic()
        second: FleetdProcess = fleet.start(env, name="second", ready=False)  # Redis is away
        want = {("http", "spooled"), ("http", "bypass"), ("http", "sync")}
        phase(stream, replaced_at, want, "answers of the second daemon during the outage")
        time.sleep(max(0.0, killed_at + OUTAGE - time.monotonic()))  # the outage itself
        assert stream.since(replaced_at, door="http"), "the second daemon answered nothing"
        restarted_ms, restarted_at = int(time.time() * 1000), time.monotonic()
        server.start()  # from the AOF
        back = time.monotonic()
        second.wait_ready()
        phase(stream, back, {("http", "queued"), ("client", "queued")}, "answers after")
        wait_for(lambda: stream.since(back, door="http", kind="bypass", code=201),
                 PHASE_TIMEOUT, "a bypass started with Redis back", fleet.tails)  # fmt: skip
        wait_for(lambda: not stream.to_cancel, 60, "the delayed jobs cancelled", fleet.tails)
    acks = stream.acks
    assert len({a.job_id for a in acks}) == len(acks)
    ids = [a.job_id for a in acks]

    def settled() -> bool:
        got = read_outcome(cfg, ids)
        return all(got.completed[j] for j in ids)

    wait_for(settled, 90, f"{len(ids)} acknowledged jobs to complete", fleet.tails, 0.5)

    def audited() -> Outcome | None:
        got = read_outcome(cfg, ids)
        spooled = [a for a in acks if a.status == "spooled" or a.code == 200]
        missing = [a for a in acks if not got.audit["job.enqueue", a.door, a.job_id, a.code]]
        missing += [a for a in spooled if not got.audit["job.replay", a.door, a.job_id, 0]]
        return None if missing else got

    got = wait_for(audited, 30, "every acknowledged job's audit entries", fleet.tails, 0.5)
    assert got is not None  # wait_for returns a truthy value

    # Exactly once, whatever was killed when.
    assert {j: got.completed[j] for j in ids if got.completed[j] != 1} == {}
    # Ran (or started) at once: the bypassed jobs answered during the outage ran during
    # it; every job run inline was never run again and is completed (with its e-mail).
    inline = [a for a in acks if a.code == 200 or (a.door == "client" and a.ran)]
    assert {a.kind for a in inline} == {"bypass", "sync"}
    for a in inline:
        job = got.jobs[a.job_id]
        assert (a.status, job["status"], got.started[a.job_id]) == ("completed",) * 2 + (0,), a
        if a.kind == "bypass" and a.at < restarted_at:  # later: the spool still diverted
            assert killed_ms <= int(job["completed_at"]) <= restarted_ms, (a, job)
        if a.kind == "sync":
            assert (cfg.state_dir / "outbox" / f"{a.job_id}.eml").exists(), a
    # The audit log: each acknowledged enqueue once (and its replay once), each answered
    # HTTP call (enqueues refused included, cancels) with its status; a request whose
    # daemon was killed under it may be recorded without having been answered.
    for a in acks:
        assert got.audit["job.enqueue", a.door, a.job_id, a.code] == 1, a
        if a.status == "spooled" or a.code == 200 or (a.door == "client" and a.ran):
            assert got.audit["job.replay", a.door, a.job_id, 0] == 1, a
    extra = 0
    for (action, code, target), n in stream.answered.items():
        recorded = got.audit[action, "http", target or "", code]
        assert recorded >= n, (action, code, target, recorded, n)
        extra += recorded - n
    assert extra <= stream.unanswered, (extra, stream.unanswered)
    assert any(code == 503 for (action, code, _) in stream.answered if action == "job.cancel")
    assert "ERROR fleetd.spool" not in fleet.tails()
