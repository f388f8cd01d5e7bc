"""Events WebSocket fan-out benchmark: one daemon, many subscribers, real job events.

Owns: starting a throwaway redis-server (tests/redis_server.py, a free 127.0.0.1 port)
and one `fleetd run --roles api,worker` subprocess; connecting `--subscribers` clients
from `--clients` separate processes — Node.js (`--client node`, bench/ws_clients.mjs,
the default when `node` is on PATH: cheap per frame, so the clients are not the limit)
or trio-websocket (`--client python`); producing about `--rate` events/s for `--seconds`
by enqueueing `noop` jobs at a paced rate (each job makes three events: enqueued,
started, completed; the worker runs in the same daemon, or with `--worker separate` in
a second `--roles worker` daemon, so a busy fan-out cannot delay the jobs and their
events); then printing

- delivery latency p50/p99/max: the event's `ts` (Redis time in the script that appended
  it) to the moment a client parsed the frame holding it, over every event of a sample
  of subscribers (`--sample` per client process);
- events delivered per subscriber vs appended, events/s delivered in all, frames per
  subscriber, and sessions closed early by close code (1013: fell behind; the client
  does not resume here, so a closed session stops counting);
- CPU % over the producing window (/proc or Redis INFO: user + system; one core =
  100 %) of the daemon, of Redis, of the client processes and of this script (the
  producer): nothing is pinned, all share the machine's cores.

Subscribers ask for batch frames (`?batch=1`: a JSON array of the events that queued
while the previous frame was sent) unless `--single` (one event per frame).

Run: `.venv/bin/python bench/ws_fanout.py [--subscribers 1000 --rate 1000 --seconds 10]`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import cast

import trio
from trio_websocket import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from daemons import Fleet, cpu_seconds, wait_for
from redis_server import RedisServer

from fleetd.api.auth import mint_token
from fleetd.backend.redis_link import SyncClient
from fleetd.cli.events import connect
from fleetd.config import Config
from fleetd.engine import Engine

SECRET = "bench-secret-" + "x" * 60
FEED = "/api/v1/admin/jobs/events"
EVENTS_PER_JOB = 3
# Connections opened at once per client process: a burst of 1,000 handshakes would sit
# in the listen backlog; this keeps connecting quick and steady.
CONNECT_PARALLEL = 50
# After producing stops, clients keep reading this long for frames still in flight.
DRAIN = 3.0
NODE_CLIENT = Path(__file__).resolve().parent / "ws_clients.mjs"
NODE_WS = Path(__file__).resolve().parent / ".node" / "node_modules" / "ws"


@dataclasses.dataclass
class Results:
    """What the client processes saw, merged."""

    latencies: list[float] = dataclasses.field(default_factory=list)
    events: list[int] = dataclasses.field(default_factory=list)
    frames: list[int] = dataclasses.field(default_factory=list)
    closes: Counter[int] = dataclasses.field(default_factory=Counter)

    def add(self, latencies: list[float], events: list[int], frames: list[int],
            closes: dict[int, int]) -> None:  # fmt: skip
        self.latencies += latencies
        self.events += events
        self.frames += frames
        self.closes.update(closes)


def client_process(
    url: str, token: str, count: int, sample: int, ready: Connection, stop_at: Connection
) -> None:
    """`count` subscribers; report (latencies of `sample` of them, events and frames per
    subscriber, early closes by code) through `ready` once `stop_at` says when to stop.
    (Events of unsampled subscribers are counted without parsing — `{"id":` opens each event —
    as the clients' CPU competes with the daemon's.)"""

    async def main() -> None:
        latencies: list[float] = []
        events = [0] * count
        frames = [0] * count
        closes: Counter[int] = Counter()
        limiter = trio.Semaphore(CONNECT_PARALLEL)
        connected = trio.Event()
        up = 0

        async def subscriber(i: int) -> None:
            nonlocal up
            await limiter.acquire()
            try:
                async with connect(url, token) as ws:
                    json.loads(await ws.get_message())  # subscribed
                    limiter.release()
                    up += 1
                    if up == count:
                        connected.set()
                    while True:
                        raw = str(await ws.get_message())
                        now = time.time() * 1000
                        frames[i] += 1
                        if i >= sample:
                            events[i] += raw.count('{"id":') if raw[0] == "[" else 1
                            continue
                        body = json.loads(raw)
                        batch = body if isinstance(body, list) else [body]
                        events[i] += len(batch)
                        latencies.extend(now - ev["ts"] for ev in batch)
            except ConnectionClosed as exc:
                closes[exc.reason.code if exc.reason else 1006] += 1

        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(subscriber, i)
            await connected.wait()
            ready.send("up")
            stop_wall = await trio.to_thread.run_sync(stop_at.recv)
            await trio.sleep(max(0.0, stop_wall - time.time()))
            nursery.cancel_scope.cancel()
        ready.send((latencies, events, frames, dict(closes)))

    trio.run(main)


class PythonClients:
    """`client_process` × len(per), multiprocessing (spawn)."""

    def __init__(self, url: str, token: str, per: list[int], sample: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[tuple[Connection, Connection]] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for n in per:
            ready_r, ready_w = ctx.Pipe(duplex=False)
            stop_r, stop_w = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=client_process, args=(url, token, n, sample, ready_w, stop_r))
            proc.start()
            self.pipes.append((ready_r, stop_w))
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def wait_up(self) -> None:
        for ready_r, _ in self.pipes:
            assert ready_r.recv() == "up"

    def stop_at(self, wall: float) -> None:
        for _, stop_w in self.pipes:
            stop_w.send(wall)

    def results(self) -> Results:
        out = Results()
        for ready_r, _ in self.pipes:
            out.add(*ready_r.recv())
        for proc in self.procs:
            proc.join(10)
        return out

    def close(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()


class NodeClients:
    """bench/ws_clients.mjs × len(per): one JSON line when up, the stop time on stdin,
    one JSON line of results."""

    def __init__(self, url: str, token: str, per: list[int], sample: int, deflate: bool) -> None:
        flags = [] if NODE_WS.exists() else ["--experimental-websocket"]
        argv = ["node", *flags, str(NODE_CLIENT), "--url", url, "--token", token]
        argv += ["--sample", str(sample), "--parallel", str(CONNECT_PARALLEL)]
        argv += ["--deflate"] if deflate else []
        self.procs = [
            subprocess.Popen(
                [*argv, "--count", str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            for n in per
        ]
        self.kind = ""

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def _line(self, proc: subprocess.Popen[str]) -> dict[str, object]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"ws_clients.mjs exited ({proc.wait()}) without a report")
        body: dict[str, object] = json.loads(line)
        return body

    def wait_up(self) -> None:
        for proc in self.procs:
            self._line(proc)

    def stop_at(self, wall: float) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{wall * 1000:.0f}\n")
            proc.stdin.flush()

    def results(self) -> Results:
        out = Results()
        for proc in self.procs:
            body = self._line(proc)
            self.kind = str(body["client"])
            closes = cast(dict[str, int], body["closes"])
            out.add(
                cast(list[float], body["latencies"]),
                cast(list[int], body["events"]),
                cast(list[int], body["frames"]),
                {int(code): n for code, n in closes.items()},
            )
            proc.wait(10)
        return out

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def redis_cpu_seconds(redis: RedisServer) -> float:
    """used_cpu_user + used_cpu_sys of the redis-server (INFO cpu)."""
    info = redis.command("INFO", "cpu")
    text = info.decode() if isinstance(info, bytes) else str(info)
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def clients_cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--rate", type=float, default=1000.0, help="events/s to produce")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument(
        "--client",
        choices=("node", "python"),
        default="node" if shutil.which("node") else "python",
        help="subscriber implementation: bench/ws_clients.mjs or trio-websocket",
    )
    p.add_argument(
        "--clients", type=int, default=0, help="client processes (default: node 1, python 4)"
    )
    p.add_argument(
        "--deflate", action="store_true", help="node: offer permessage-deflate (as browsers do)"
    )
    p.add_argument(
        "--worker",
        choices=("same", "separate"),
        default="same",
        help="run the noop jobs in the subscribers' daemon (api,worker) or in a second one",
    )
    p.add_argument("--sample", type=int, default=25, help="subscribers timed per process")
    p.add_argument("--buffer", type=int, default=1000, help="[events] buffer")
    p.add_argument("--single", action="store_true", help="one event per frame (no ?batch=1)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    if a.client == "node" and shutil.which("node") is None:
        print("node is not on PATH: use --client python", file=sys.stderr)
        return 2
    n_clients = a.clients or (1 if a.client == "node" else 4)
    with (
        tempfile.TemporaryDirectory(prefix="fleetd-wsbench-") as tmp,
        RedisServer(Path(tmp) / "redis") as redis,
    ):
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETD_")}
        env |= {
            "FLEETD_REDIS_URL": redis.url,
            "FLEETD_REDIS_NAMESPACE": f"b{uuid.uuid4().hex[:8]}",
            "FLEETD_DAEMON_STATE_DIR": str(work / "state"),
            "FLEETD_HTTP_LISTEN": "127.0.0.1:0",
            "FLEETD_AUTH_SECRET": SECRET,
            "FLEETD_EVENTS_BUFFER": str(a.buffer),
            "FLEETD_EVENTS_MAX_SUBSCRIBERS": str(a.subscribers + 10),
            "FLEETD_CONFIG": str(Path(__file__).resolve().parent.parent / "tests/empty.toml"),
        }
        fleet = Fleet(work / "daemons")
        clients: PythonClients | NodeClients | None = None
        try:
            if a.worker == "separate":
                daemon = fleet.start(env, "--roles", "api")
                wenv = env | {"FLEETD_DAEMON_STATE_DIR": str(work / "worker-state")}
                worker_pid: int | None = fleet.start(wenv, "--roles", "worker", name="w").pid
            else:
                daemon = fleet.start(env, "--roles", "api,worker")
                worker_pid = None
            http = work / "state" / "http.json"

            def recorded() -> list[str]:
                urls: list[str] = json.loads(http.read_text())["urls"] if http.exists() else []
                return urls

            base = wait_for(recorded, 10, "http.json")[0]
            cfg = Config.default()
            namespace = env["FLEETD_REDIS_NAMESPACE"]
            cfg = dataclasses.replace(
                cfg,
                auth=dataclasses.replace(cfg.auth, secret=SECRET),
                redis=dataclasses.replace(cfg.redis, url=redis.url, namespace=namespace),
            )
            token = mint_token(cfg, ttl=3600)[0]
            url = base.replace("http://", "ws://") + FEED + ("" if a.single else "?batch=1")
            per = [
                a.subscribers // n_clients + (i < a.subscribers % n_clients)
                for i in range(n_clients)
            ]
            if a.client == "node":
                clients = NodeClients(url, token, per, a.sample, a.deflate)
            else:
                clients = PythonClients(url, token, per, a.sample)
            clients.wait_up()
            mode = "single" if a.single else "batch"
            print(f"# {a.subscribers} subscribers ({mode} frames) up in {n_clients} "
                  f"{a.client} client processes; producing {a.rate:g} events/s for "
                  f"{a.seconds:g}s")  # fmt: skip
            engine = Engine.build(cfg, daemon=False)
            stop_wall = time.time() + a.seconds + DRAIN
            clients.stop_at(stop_wall)
            jobs = int(a.rate * a.seconds / EVENTS_PER_JOB)
            interval = EVENTS_PER_JOB / a.rate

            def xlen(client: SyncClient) -> int:
                return int(client.xlen(engine.keys.events))

            len0 = engine.link.run_sync(xlen)
            cpu0 = cpu_seconds(daemon.pid)
            wcpu0 = cpu_seconds(worker_pid) if worker_pid else 0.0
            redis0, clients0 = redis_cpu_seconds(redis), clients_cpu_seconds(clients.pids)
            own0, t0 = time.process_time(), time.monotonic()
            noop = {"type": "noop", "data": {}}
            for n in range(jobs):
                engine.link.run_sync(engine.ops.enqueue_rows, [engine.ops.prepare(noop)])
                pause = t0 + (n + 1) * interval - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            produce_s = time.monotonic() - t0
            cpu = (cpu_seconds(daemon.pid) - cpu0) / produce_s * 100
            wcpu = (cpu_seconds(worker_pid) - wcpu0) / produce_s * 100 if worker_pid else 0.0
            redis_cpu = (redis_cpu_seconds(redis) - redis0) / produce_s * 100
            clients_cpu = (clients_cpu_seconds(clients.pids) - clients0) / produce_s * 100
            own_cpu = (time.process_time() - own0) / produce_s * 100
            time.sleep(max(0.0, stop_wall - time.time()))
            # What the subscribers could have got: the worker runs in the same daemon, so
            # started/completed events lag when the fan-out keeps it busy.
            in_stream = engine.link.run_sync(xlen) - len0
            res = clients.results()
            appended = jobs * EVENTS_PER_JOB
            engine.close()
            events, frames, latencies = res.events, res.frames, res.latencies
            kind = f" ({clients.kind})" if isinstance(clients, NodeClients) else ""
            print(f"clients: {a.client}{kind}, {n_clients} processes")
            print(
                f"events_appended: {appended}  (in {produce_s:.1f} s: {appended / produce_s:.0f}/s)"
            )
            print(f"events_in_stream_at_stop: {in_stream}  (the rest: jobs not yet run)")
            print(
                f"events_per_subscriber: median {statistics.median(events):.0f}, min {min(events)}"
                f"  (delivered in all: {sum(events) / produce_s:.0f}/s)"
            )
            print(
                f"frames_per_subscriber: median {statistics.median(frames):.0f}"
                f"  ({statistics.median(events) / max(1.0, statistics.median(frames)):.1f}"
                " events per frame)"
            )
            by_code = ", ".join(f"{c}: {n}" for c, n in sorted(res.closes.items())) or "none"
            print(
                f"sessions_closed_early: {res.closes.total()}"
                f"  (by code: {by_code}; 1013 = fell behind)"
            )
            print(f"latency_p50: {pct(latencies, 0.5):.1f} ms")
            print(f"latency_p99: {pct(latencies, 0.99):.1f} ms")
            worst = max(latencies, default=float("nan"))
            print(f"latency_max: {worst:.1f} ms  ({len(latencies)} events timed)")
            roles = "api" if worker_pid else "api,worker"
            print(f"daemon_cpu: {cpu:.0f} %  (--roles {roles}; user+system while producing; "
                  "100 % = one core)")  # fmt: skip
            if worker_pid:
                print(f"worker_daemon_cpu: {wcpu:.0f} %  (--roles worker)")
            print(f"redis_cpu: {redis_cpu:.0f} %")
            print(f"clients_cpu: {clients_cpu:.0f} %  (all client processes)")
            print(f"producer_cpu: {own_cpu:.0f} %  (this script, enqueueing)")
            print(f"cores: {os.cpu_count()}  (shared, nothing pinned)")
        finally:
            if clients is not None:
                clients.close()
            fleet.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
