"""Events WebSocket fan-out benchmark: one daemon, many subscribers, real job events.

Owns: starting a throwaway redis-server (tests/redis_server.py, a free 127.0.0.1 port)
and one `fleetd run --roles api,worker` subprocess; connecting `--subscribers`
trio-websocket clients from `--clients` separate processes (so client CPU is never
counted as the daemon's); producing about `--rate` events/s for `--seconds` by
enqueueing `noop` jobs at a paced rate (each job makes three events: enqueued, started,
completed; the worker runs in the same daemon); then printing

- delivery latency p50/p99/max: the event's `ts` (Redis time in the script that appended
  it) to the moment a client parsed the frame holding it, over every event of a sample
  of subscribers (`--sample` per client process);
- events delivered per subscriber vs appended, events/s delivered in all, frames per
  subscriber, and sessions closed early (1013: fell behind; the client does not resume
  here, so a closed session stops counting);
- the daemon's CPU % over the producing window (/proc: user + system; one core = 100 %).

Subscribers ask for batch frames (`?batch=1`: a JSON array of the events that queued
while the previous frame was sent) unless `--single` (one event per frame).

Run: `.venv/bin/python bench/ws_fanout.py [--subscribers 1000 --rate 1000 --seconds 10]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path

import trio
from trio_websocket import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from daemons import Fleet, cpu_seconds, wait_for
from redis_server import RedisServer

from fleetd.api.auth import mint_token
from fleetd.cli_events import connect
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


def client_process(
    url: str, token: str, count: int, sample: int, ready: Connection, stop_at: Connection
) -> None:
    """`count` subscribers; report (latencies of `sample` of them, events and frames per
    subscriber, early closes) through `ready` once `stop_at` says when to stop. (Events
    of unsampled subscribers are counted without parsing — `{"id":` opens each event —
    as the clients' CPU competes with the daemon's.)"""

    async def main() -> None:
        latencies: list[float] = []
        events = [0] * count
        frames = [0] * count
        closed = 0
        limiter = trio.Semaphore(CONNECT_PARALLEL)
        connected = trio.Event()
        up = 0

        async def subscriber(i: int) -> None:
            nonlocal up, closed
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
            except ConnectionClosed:
                closed += 1

        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(subscriber, i)
            await connected.wait()
            ready.send("up")
            stop_wall = await trio.to_thread.run_sync(stop_at.recv)
            await trio.sleep(max(0.0, stop_wall - time.time()))
            nursery.cancel_scope.cancel()
        ready.send((latencies, events, frames, closed))

    trio.run(main)


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
    p.add_argument("--clients", type=int, default=4, help="client processes")
    p.add_argument("--sample", type=int, default=25, help="subscribers timed per process")
    p.add_argument("--buffer", type=int, default=1000, help="[events] buffer")
    p.add_argument("--single", action="store_true", help="one event per frame (no ?batch=1)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
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
        try:
            daemon = fleet.start(env, "--roles", "api,worker")
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
            ctx = multiprocessing.get_context("spawn")
            per = [
                a.subscribers // a.clients + (i < a.subscribers % a.clients)
                for i in range(a.clients)
            ]
            pipes, procs = [], []
            for n in per:
                ready_r, ready_w = ctx.Pipe(duplex=False)
                stop_r, stop_w = ctx.Pipe(duplex=False)
                proc = ctx.Process(
                    target=client_process, args=(url, token, n, a.sample, ready_w, stop_r)
                )
                proc.start()
                pipes.append((ready_r, stop_w))
                procs.append(proc)
            for ready_r, _ in pipes:
                assert ready_r.recv() == "up"
            mode = "single" if a.single else "batch"
            print(f"# {a.subscribers} subscribers ({mode} frames) up in {a.clients} client "
                  f"processes; producing {a.rate:g} events/s for {a.seconds:g}s")  # fmt: skip
            engine = Engine.build(cfg, daemon=False)
            stop_wall = time.time() + a.seconds + DRAIN
            for _, stop_w in pipes:
                stop_w.send(stop_wall)
            jobs = int(a.rate * a.seconds / EVENTS_PER_JOB)
            interval = EVENTS_PER_JOB / a.rate
            cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
            noop = {"type": "noop", "data": {}}
            for n in range(jobs):
                engine.link.run_sync(engine.ops.enqueue_rows, [engine.ops.prepare(noop)])
                pause = t0 + (n + 1) * interval - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            produce_s = time.monotonic() - t0
            cpu = (cpu_seconds(daemon.pid) - cpu0) / produce_s * 100
            latencies: list[float] = []
            events: list[int] = []
            frames: list[int] = []
            closed = 0
            for ready_r, _ in pipes:
                lat, ev, fr, cl = ready_r.recv()
                latencies += lat
                events += ev
                frames += fr
                closed += cl
            for proc in procs:
                proc.join(10)
            appended = jobs * EVENTS_PER_JOB
            engine.close()
            print(
                f"events_appended: {appended}  (in {produce_s:.1f} s: {appended / produce_s:.0f}/s)"
            )
            print(
                f"events_per_subscriber: median {statistics.median(events):.0f}, min {min(events)}"
                f"  (delivered in all: {sum(events) / produce_s:.0f}/s)"
            )
            print(
                f"frames_per_subscriber: median {statistics.median(frames):.0f}"
                f"  ({statistics.median(events) / max(1.0, statistics.median(frames)):.1f}"
                " events per frame)"
            )
            print(f"sessions_closed_early: {closed}  (1013: fell behind)")
            print(f"latency_p50: {pct(latencies, 0.5):.1f} ms")
            print(f"latency_p99: {pct(latencies, 0.99):.1f} ms")
            worst = max(latencies, default=float("nan"))
            print(f"latency_max: {worst:.1f} ms  ({len(latencies)} events timed)")
            print(f"daemon_cpu: {cpu:.0f} %  (user+system while producing; 100 % = one core)")
        finally:
            fleet.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
