"""fleetd.spool against a real redis-server: the spool file (order, caps, mode, a
corrupted file set aside), and replay — in order, each job once, each replay audited
once, also when the replaying process is SIGKILLed between Redis and the removal.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import fleetd_env, make_config
from redis_server import RedisServerFactory

from fleetd.audit.reader import AuditReader
from fleetd.audit.store import AuditCaps, AuditStore
from fleetd.backend.codec import JobRow, decode_row, encode_row
from fleetd.backend.redis_link import RedisUnavailable
from fleetd.config import Config
from fleetd.engine import Engine
from fleetd.jobs.model import JobStatus
from fleetd.spool import SPOOL_FILE, JobSpool, SpoolError, SpoolFull, replay_all, replay_pass


def rows(engine: Engine, n: int, **fields: object) -> list[JobRow]:
    return [engine.ops.prepare({"type": "noop", "data": {"n": i}, **fields}) for i in range(n)]


def spool_of(tmp_path: Path, **caps: int) -> JobSpool:
    return JobSpool(
        tmp_path / SPOOL_FILE,
        max_jobs=caps.get("max_jobs", 1000),
        max_bytes=caps.get("max_bytes", 1 << 20),
    )


def audit_replays(engine: Engine) -> list[dict[str, object]]:
    found, _ = engine.link.run_sync(lambda c: AuditReader(engine.keys).read(c, limit=1000))
    return [e for e in reversed(found) if e["action"] == "job.replay"]


def store(engine: Engine) -> AuditStore:
    return AuditStore(engine.keys, engine.scripts, AuditCaps(10_000, 10_000, 10_000))


def test_rows_come_back_in_order_and_byte_for_byte(engine: Engine, tmp_path: Path) -> None:
    spool = spool_of(tmp_path)
    late = "2099-01-01T00:00:00Z"
    made = rows(engine, 5, tags=["a", "b"], priority="high", timeout=12.5, run_at=late)
    spool.add(made[:2], door="http", subject="alice")
    spool.add(made[2:], door="cli", subject="cli:bob")
    head = spool.head(10)
    assert [j.job_id for j in head] == [r.id for r in made]
    assert [decode_row(j.row) for j in head] == made
    assert [encode_row(decode_row(j.row)) for j in head] == [encode_row(r) for r in made]
    assert (head[0].door, head[0].subject, head[4].subject) == ("http", "alice", "cli:bob")
    assert spool.depth() == (5, sum(len(j.row.encode()) for j in head))
    assert stat.S_IMODE(spool.path.stat().st_mode) == 0o600
    assert spool.get(made[3].id) == head[3] and spool.get("job_nope") is None


def test_caps_refuse_the_whole_call_and_keep_what_was_there(engine: Engine, tmp_path: Path) -> None:
    spool = spool_of(tmp_path, max_jobs=3)
    spool.add(rows(engine, 2), door="http", subject="a")
    with pytest.raises(SpoolFull, match="2 jobs"):
        spool.add(rows(engine, 2), door="http", subject="a")  # all or none
    assert spool.depth()[0] == 2
    spool.add(rows(engine, 1), door="http", subject="a")
    small = spool_of(tmp_path / "b", max_bytes=300)
    with pytest.raises(SpoolFull, match="bytes"):
        small.add(rows(engine, 3), door="http", subject="a")
    assert small.depth() == (0, 0)


def test_a_corrupted_spool_is_set_aside_reported_and_never_dropped(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / SPOOL_FILE
    path.write_bytes(b"this is not an SQLite database, it was damaged" * 100)
    spool = spool_of(tmp_path)
    made = rows(engine, 1)
    spool.add(made, door="http", subject="a")  # works: a new spool beside the old one
    [aside] = spool.set_aside()
    assert aside.read_bytes().startswith(b"this is not an SQLite")  # kept as it was
    assert "cannot be read" in caplog.text and str(aside) in caplog.text
    assert spool.depth()[0] == 1


def test_a_spool_with_a_damaged_header_is_kept_whole_for_the_operator(
    engine: Engine, tmp_path: Path
) -> None:
    spool = spool_of(tmp_path)
    made = rows(engine, 3)
    spool.add(made, door="http", subject="a")
    spool.close()
    # Damage the header's magic: SQLite no longer opens it as a database.
    data = bytearray(spool.path.read_bytes())
    data[:16] = b"garbage-garbage!"
    spool.path.write_bytes(bytes(data))
    again = spool_of(tmp_path)
    assert again.depth()[0] == 0  # nothing readable through a broken header...
    [aside] = again.set_aside()  # ...but the file is kept, its rows in it
    assert all(r.id.encode() in aside.read_bytes() for r in made)


def test_replay_sends_in_order_each_once_and_audits_each(engine: Engine, tmp_path: Path) -> None:
    spool = spool_of(tmp_path)
    made = rows(engine, 7)
    spool.add(made, door="client", subject="client:web")
    done = engine.link.run_sync(lambda c: replay_pass(c, spool, engine.ops, store(engine), 5))
    assert (done.landed, done.duplicates) == (5, 0)
    sent, _ = engine.link.run_sync(lambda c: replay_all(c, spool, engine.ops, store(engine), 5))
    assert sent == 2 and spool.depth() == (0, 0)
    jobs = [engine.link.run_sync(engine.ops.get, r.id) for r in made]
    assert all(j is not None and j.status is JobStatus.PENDING for j in jobs)
    [part] = engine.link.run_sync(lambda c: c.zrange(engine.keys.queue, 0, -1))  # one type
    queue = engine.link.run_sync(lambda c: c.zrange(engine.keys.ready(part), 0, -1))
    assert queue == [r.id for r in made]  # FIFO as spooled
    entries = audit_replays(engine)
    assert [e["target"] for e in entries] == [r.id for r in made]
    assert {(e["door"], e["subject"], e["outcome"]) for e in entries} == {
        ("client", "client:web", "ok")
    }


def test_a_replay_sent_again_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    spool = spool_of(tmp_path)
    made = rows(engine, 3, idempotency_key="k-1")[:1] + rows(engine, 2)
    spool.add(made, door="http", subject="a")
    first = engine.link.run_sync(lambda c: engine.ops.enqueue_rows(c, made))
    assert [r.duplicate for r in first] == [False, False, False]
    # As after a crash between Redis and the removal: the same rows again.
    done = engine.link.run_sync(lambda c: replay_pass(c, spool, engine.ops, store(engine), 10))
    assert (done.landed, done.duplicates) == (0, 3)
    assert engine.link.run_sync(engine.ops.stats)["total"] == 3


REPLAY_AND_DIE = textwrap.dedent(
    """
    import os, signal, sys
    from fleetd.config import load_config
    from fleetd.engine import Engine
    from fleetd.spool import JobSpool, replay_pass

    def die(self, seqs):  # Redis has the batch; the process dies before the removal
        os.kill(os.getpid(), signal.SIGKILL)

    JobSpool.remove = die
    engine = Engine.build(load_config(), daemon=False)
    engine.link.run_sync(lambda c: replay_pass(
        c, engine.spool, engine.ops, engine.audit.trail.store, 100))
    """
)


def test_sigkill_between_redis_and_the_removal_still_lands_each_job_once(
    config: Config, engine: Engine
) -> None:
    spool = engine.spool
    assert spool is not None
    made = rows(engine, 4)
    spool.add(made, door="cli", subject="cli:ops")
    env = {**fleetd_env(config), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    died = subprocess.run([sys.executable, "-c", REPLAY_AND_DIE], env=env, timeout=60, check=False)
    assert died.returncode == -9
    assert spool.depth()[0] == 4  # still spooled: the removal never ran
    assert engine.link.run_sync(engine.ops.stats)["pending"] == 4  # but Redis has them
    sent, _ = engine.link.run_sync(lambda c: replay_all(c, spool, engine.ops, store(engine), 100))
    assert sent == 4 and spool.depth()[0] == 0
    assert engine.link.run_sync(engine.ops.stats)["total"] == 4
    assert [e["target"] for e in audit_replays(engine)] == [r.id for r in made]


def test_a_second_replayer_waits_its_turn(engine: Engine, tmp_path: Path) -> None:
    spool = spool_of(tmp_path)
    spool.add(rows(engine, 2), door="http", subject="a")
    other = spool_of(tmp_path)
    with other.replaying() as mine:
        assert mine
        done = engine.link.run_sync(lambda c: replay_pass(c, spool, engine.ops, store(engine), 9))
        assert not done.ran and spool.depth()[0] == 2
    done = engine.link.run_sync(lambda c: replay_pass(c, spool, engine.ops, store(engine), 9))
    assert done.landed == 2


async def test_a_pass_that_sends_nothing_still_tells_whether_redis_answers(
    own_redis: RedisServerFactory, tmp_path: Path
) -> None:
    """With the lock held by another process, a pass sends no job; with Redis gone it
    must still fail as Redis away, so the link (and an enqueue waiting for the spool to
    empty) learns it, instead of taking the pass for an answer."""
    server = own_redis()
    engine = Engine.build(make_config(server.url, "nothing-sent", tmp_path / "state"), daemon=False)
    try:
        spool = spool_of(tmp_path)
        spool.add(rows(engine, 2), door="http", subject="a")
        passing = functools.partial(replay_pass, spool=spool, ops=engine.ops,
                                    audit=store(engine), batch=9)  # fmt: skip
        with spool_of(tmp_path).replaying() as mine:
            assert mine  # "another process" holds the lock
            done = await engine.link.call(passing)
            assert not done.ran and not engine.link.down
            server.stop()
            with pytest.raises(RedisUnavailable):
                await engine.link.call(passing)
            assert engine.link.down
        assert spool.depth()[0] == 2
    finally:
        engine.close()


def test_a_locked_spool_is_refused_not_set_aside(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fleetd.spool.file.BUSY_TIMEOUT_MS", 50)
    spool = spool_of(tmp_path)
    spool.add(rows(engine, 1), door="http", subject="a")
    holder = sqlite3.connect(spool.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, for a long while
    try:
        late = spool_of(tmp_path)
        with pytest.raises(SpoolError, match="locked"):
            late.add(rows(engine, 1), door="http", subject="a")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert late.set_aside() == []  # a lock is not damage: nothing renamed
    late.add(rows(engine, 1), door="http", subject="a")
    assert late.depth()[0] == 2


def test_an_idempotency_key_already_spooled_answers_its_job(engine: Engine, tmp_path: Path) -> None:
    spool = spool_of(tmp_path)
    [first] = rows(engine, 1, idempotency_key="order-1", company_id="acme")
    _, dups = spool.add([first], door="http", subject="a")
    assert dups == {}
    again = rows(engine, 1, idempotency_key="order-1", company_id="acme")
    other = rows(engine, 1, idempotency_key="order-1", company_id="acme:eu")
    twice = rows(engine, 2, idempotency_key="order-2", company_id="acme")
    _, dups = spool.add([*again, *other, *twice], door="http", subject="a")
    assert {n: job_id for n, (job_id, _) in dups.items()} == {0: first.id, 3: twice[0].id}
    # Per company; within one call too.
    assert [j.job_id for j in spool.head(10)] == [first.id, other[0].id, twice[0].id]


def test_a_company_holds_at_most_its_share_of_each_cap(engine: Engine, tmp_path: Path) -> None:
    spool = JobSpool(tmp_path / SPOOL_FILE, max_jobs=10, max_bytes=1 << 20, company_share=0.5)
    spool.add(rows(engine, 5, company_id="A"), door="http", subject="a")
    with pytest.raises(SpoolFull, match="company 'A' holds 5 jobs"):
        spool.add(rows(engine, 1, company_id="A"), door="http", subject="a")
    # All or none: a call with a company over its share stores nothing of the others.
    with pytest.raises(SpoolFull):
        spool.add(rows(engine, 1, company_id="B") + rows(engine, 1, company_id="A"),
                  door="http", subject="b")  # fmt: skip
    assert spool.depth()[0] == 5
    spool.add(rows(engine, 4, company_id="B") + rows(engine, 1), door="http", subject="b")
    assert spool.depth()[0] == 10
    # Bytes too: one company's large rows are held to half the byte cap.
    big = JobSpool(tmp_path / "big" / SPOOL_FILE, max_jobs=100, max_bytes=8000,
                   company_share=0.5)  # fmt: skip
    data = {"blob": "x" * 2500}
    big.add(rows(engine, 1, company_id="A", data=data), door="http", subject="a")
    with pytest.raises(SpoolFull, match="bytes of the spool"):
        big.add(rows(engine, 1, company_id="A", data=data), door="http", subject="a")
    big.add(rows(engine, 1, company_id="B", data=data), door="http", subject="b")


def test_company_totals_follow_removals_and_are_counted_for_an_older_spool(
    engine: Engine, tmp_path: Path
) -> None:
    spool = JobSpool(tmp_path / SPOOL_FILE, max_jobs=10, max_bytes=1 << 20, company_share=0.5)
    spool.add(rows(engine, 5, company_id="A"), door="http", subject="a")
    spool.remove([j.seq for j in spool.head(2)])  # replayed: room for two more
    spool.add(rows(engine, 2, company_id="A"), door="http", subject="a")
    with pytest.raises(SpoolFull):
        spool.add(rows(engine, 1, company_id="A"), door="http", subject="a")
    spool.close()
    # A spool written before the company totals were kept: counted when opened.
    with sqlite3.connect(tmp_path / SPOOL_FILE) as db:
        db.execute("DELETE FROM company_totals")
        db.execute("DELETE FROM meta WHERE name = 'company_totals'")
    db.close()
    again = JobSpool(tmp_path / SPOOL_FILE, max_jobs=10, max_bytes=1 << 20, company_share=0.5)
    with pytest.raises(SpoolFull, match="company 'A' holds 5 jobs"):
        again.add(rows(engine, 1, company_id="A"), door="http", subject="a")
    again.add(rows(engine, 5, company_id="B"), door="http", subject="b")
