"""`fleetd events` (fleetd.cli.events) as a subprocess against `fleetd run` daemons:
the feed printed as JSON lines or human lines, Ctrl-C exits 0, a refused token or an
unreachable API is one line on stderr and exit 2, and a daemon restart is resumed
without losing the events of the jobs enqueued while it was down. Its reconnect
backoff is checked in-process, against an in-process daemon, with the waits recorded
instead of slept."""

from __future__ import annotations

import argparse
import gc
import io
import json
import math
import signal
import subprocess
import threading
from pathlib import Path
from queue import Empty, Queue
from typing import IO, Any

import pytest
import trio
import trio.lowlevel
from api_client import SECRET, api_config, running_api, token
from conftest import fleetd_env, make_config
from daemons import FLEETD, Fleet, run_cli, settings
from trio_websocket import ConnectionClosed, ConnectionRejected

from fleetd.cli.events import FEED_PATH, RETRY_FIRST, Tail, connect
from fleetd.config import Config

WAIT = 20.0


@pytest.fixture
def env(config: Config) -> dict[str, str]:
    return fleetd_env(config) | {"FLEETD_AUTH_SECRET": SECRET}


class TailProcess:
    """A running `fleetd events`; its stdout and stderr lines read by two threads."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [*FLEETD, "events", *args], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: Queue[str] = Queue()
        self.notices: Queue[str] = Queue()
        self.readers = [
            threading.Thread(target=_pump, args=(pipe, queue))
            for pipe, queue in ((self.proc.stdout, self.lines), (self.proc.stderr, self.notices))
        ]
        for reader in self.readers:
            reader.start()

    def following(self) -> None:
        """Wait until it is connected (its stderr says so)."""
        try:
            line = self.notices.get(timeout=WAIT)
        except Empty:
            raise AssertionError("fleetd events never connected") from None
        assert line.startswith("fleetd: events: following ws://"), line

    def next(self) -> str:
        try:
            return self.lines.get(timeout=WAIT).rstrip("\n")
        except Empty:
            raise AssertionError("no line from fleetd events") from None

    def events_of(self, job_id: str, last: str = "job.completed") -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while not out or out[-1]["type"] != last:
            frame = json.loads(self.next())
            if frame.get("job_id") == job_id:
                out.append(frame)
        return out

    def interrupt(self) -> int:
        """Ctrl-C; the exit code."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=WAIT)
        finally:
            self.proc.kill()
            for reader in self.readers:
                reader.join(WAIT)
            for pipe in (self.proc.stdout, self.proc.stderr):
                assert pipe is not None
                pipe.close()


def _pump(pipe: IO[str], queue: Queue[str]) -> None:
    for line in pipe:
        queue.put(line)


def enqueue(env: dict[str, str]) -> str:
    done = run_cli(env, "enqueue", "noop", "--json")
    assert done.returncode == 0, done.stderr
    job_id: str = json.loads(done.stdout)["job_id"]
    return job_id


def test_tails_the_feed_as_json_and_exits_0_on_ctrl_c(env: dict[str, str], fleet: Fleet) -> None:
    fleet.start(env, "--roles", "api,worker")
    tail = TailProcess(env, "--json", "--type", "noop")
    try:
        tail.following()
        assert json.loads(tail.next())["type"] == "subscribed"
        first = enqueue(env)
        kinds = [e["type"] for e in tail.events_of(first)]
        assert kinds == ["job.enqueued", "job.started", "job.completed"]
    finally:
        assert tail.interrupt() == 0


def test_human_lines_and_filters(env: dict[str, str], fleet: Fleet) -> None:
    fleet.start(env, "--roles", "api,worker")
    tail = TailProcess(env, "--status", "completed", "--token", token())
    try:
        tail.following()
        job_id = enqueue(env)
        line = tail.next()
        stamp, kind, shown_id, job_type, status = line.split()
        assert (kind, shown_id, job_type, status) == ("job.completed", job_id, "noop", "completed")
        assert stamp.endswith("Z")
    finally:
        assert tail.interrupt() == 0


def test_refused_token_and_unreachable_api_exit_2(env: dict[str, str], fleet: Fleet) -> None:
    fleet.start(env, "--roles", "api")
    done = run_cli(env, "events", "--token", "not-a-token")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("fleetd: events: refused (401)") and done.stderr.count("\n") == 1
    done = run_cli(env, "events", "--status", "done")
    assert done.returncode == 2 and "(422)" in done.stderr
    done = run_cli(env, "events", "--url", "http://127.0.0.1:1")
    assert done.returncode == 2 and "cannot connect" in done.stderr
    assert done.stderr.count("\n") == 1


def test_resumes_across_a_daemon_restart(env: dict[str, str], fleet: Fleet) -> None:
    quick = env | settings(http_shutdown_timeout="1s")
    first = fleet.start(quick, "--roles", "api")
    tail = TailProcess(env, "--json")
    try:
        tail.following()
        before = enqueue(env)
        assert tail.events_of(before, "job.enqueued")[0]["type"] == "job.enqueued"
        first.send(signal.SIGTERM)
        assert first.wait_exit(WAIT) == 0
        # Enqueued while no daemon serves the feed: replayed after the reconnect.
        missed = enqueue(env)
        fleet.start(quick, "--roles", "api")
        tail.following()
        assert tail.events_of(missed, "job.enqueued")[0]["job_id"] == missed
    finally:
        assert tail.interrupt() == 0


class Lines(io.StringIO):
    """The in-process tail's stdout: each complete line onto a channel."""

    def __init__(self) -> None:
        super().__init__()
        self._send, self._receive = trio.open_memory_channel[str](math.inf)
        self._partial = ""

    def write(self, text: str) -> int:
        *done, self._partial = (self._partial + text).split("\n")
        for line in done:
            self._send.send_nowait(line)
        return len(text)

    async def next(self) -> dict[str, Any]:
        with trio.fail_after(WAIT):
            frame: dict[str, Any] = json.loads(await self._receive.receive())
            return frame


async def test_backoff_starts_over_only_once_an_event_arrives(
    redis_url: str, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config(redis_url, namespace, tmp_path / "state", events={"max_subscribers": 1})
    async with running_api(api_config(cfg)) as api, trio.open_nursery() as nursery:
        assert api.daemon.http is not None and api.daemon.http.state.hub is not None
        hub = api.daemon.http.state.hub
        args = argparse.Namespace(type=[], status=[], job=[], company=None, json=True,
                                  url=api.url, token=token())  # fmt: skip
        out = Lines()
        tail = Tail(cfg, args, out)
        waits: list[float] = []
        # After this many waits: (reached, go on).
        gates: dict[int, tuple[trio.Event, trio.Event]] = {}

        async def pause(seconds: float) -> None:
            waits.append(seconds)
            gate = gates.get(len(waits))
            if gate is not None:
                gate[0].set()
                await gate[1].wait()
            await trio.lowlevel.checkpoint()

        monkeypatch.setattr(tail, "_pause", pause)
        # The one subscriber slot is taken: each handshake is accepted and closed at once
        # (1013 too many subscribers), and the waits grow.
        gates[3] = (trio.Event(), trio.Event())
        url = api.url.replace("http://", "ws://") + FEED_PATH
        async with connect(url, token()) as holder:
            assert json.loads(await holder.get_message())["type"] == "subscribed"
            nursery.start_soon(tail.run)
            with trio.fail_after(WAIT):
                await gates[3][0].wait()
            assert waits == [RETRY_FIRST, 2 * RETRY_FIRST, 4 * RETRY_FIRST]
        gates[3][1].set()
        assert (await out.next())["type"] == "subscribed"
        job = await api.enqueue({"type": "noop", "data": {}})
        while (await out.next()).get("job_id") != job["job_id"]:
            pass
        # An event arrived: the next failure (the daemon refusing new sessions from now
        # on) waits the shortest time again, and the one after that longer.
        mark = len(waits)
        gates[mark + 2] = (trio.Event(), trio.Event())
        hub.close_all(1001, "server shutting down")
        with trio.fail_after(WAIT):
            await gates[mark + 2][0].wait()
        assert waits[mark:] == [RETRY_FIRST, 2 * RETRY_FIRST]
        nursery.cancel_scope.cancel()


async def test_connect_leaves_no_socket_open(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """trio-websocket 0.12 leaks the socket of a refused handshake and of a connection
    the server closed first; `connect` closes both. A leaked socket shows as a
    ResourceWarning when collected, which the test settings turn into a failure."""
    cfg = make_config(redis_url, namespace, tmp_path / "state", events={"max_subscribers": 1})
    async with running_api(api_config(cfg)) as api:
        feed = api.url.replace("http://", "ws://") + FEED_PATH
        with pytest.raises(ConnectionRejected):  # 422: an unknown status
            async with connect(feed + "?status=bogus", token()):
                pass
        async with connect(feed, token()) as holder:
            assert json.loads(await holder.get_message())["type"] == "subscribed"
            async with connect(feed, token()) as refused:  # over max_subscribers: 1013
                with pytest.raises(ConnectionClosed):
                    while True:
                        await refused.get_message()
        await trio.lowlevel.checkpoint()
        gc.collect()
