"""Failure notifications: from a job failing for good to its signed webhook arriving.

Owns: a throwaway redis-server on a free 127.0.0.1 port (tests/redis_server.py; never
the machine's Redis on 6379), a webhook receiver on loopback that checks each
signature (tests/notify/receiver.py) and one `fleetd run --roles worker,api`
subprocess with one `[[notify]]` rule on `job.failed`; then N `noop` jobs that fail at
once (`fail_attempts`, `max_retries = 0`) are enqueued in one call.

Prints, per notification, the time from the `job.failed` event (Redis time, ms) to the
receiver reading the POST — the event hub's read, the outbox's fsync'd insert, the claim
in Redis and the POST — as p50 / p99, and the rate of the whole batch (notifications/s;
deliveries are sent one at a time). `#` lines say how; quote `/proc/loadavg`.

Run: `.venv/bin/python bench/notify.py [--jobs N]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "notify"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_enqueue import start_daemon
from receiver import SECRET, webhook_receiver
from redis_server import RedisServer

from fleetd.config import load_config
from fleetd.engine import Engine


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    n = parser.parse_args().jobs
    with tempfile.TemporaryDirectory() as tmp, webhook_receiver() as receiver:
        root = Path(tmp)
        redis = RedisServer(root / "redis")
        redis.start()
        rules = root / "notify.toml"
        rules.write_text(f'[[notify]]\non = "job.failed"\nwebhook_url = "{receiver.url}"\n'
                         f'webhook_secret = "{SECRET}"\n')  # fmt: skip
        proc, _url = start_daemon(redis.url, root / "state", "worker,api",
                                  {"FLEETD_CONFIG": str(rules)})  # fmt: skip
        try:
            env = {"FLEETD_REDIS_URL": redis.url, "FLEETD_REDIS_NAMESPACE": "bench",
                   "FLEETD_DAEMON_STATE_DIR": str(root / "client")}  # fmt: skip
            engine = Engine.build(load_config(rules, env=env), daemon=False)
            reqs = [{"type": "noop", "data": {"fail_attempts": 1}, "max_retries": 0}] * n
            engine.link.run_sync(engine.ops.enqueue_rows, engine.ops.prepare_many(reqs))
            start = time.monotonic()
            while len(receiver.delivered()) < n:
                if time.monotonic() - start > 120:
                    raise SystemExit(f"only {len(receiver.delivered())} of {n} delivered")
                time.sleep(0.01)
            got = receiver.delivered()
            lat = [(r.received - r.body["ts"] / 1000) * 1000 for r in got]
            span = max(r.received for r in got) - min(r.body["ts"] / 1000 for r in got)
            print(f"# {n} noop jobs failing at once, one rule, one daemon; every POST signed: "
                  f"{all(r.signed for r in got)}")  # fmt: skip
            print(f"notify_latency_p50: {pct(lat, 50):.1f} ms")
            print(f"notify_latency_p99: {pct(lat, 99):.1f} ms")
            print(f"notify_rate: {n / span:.0f} notifications/s")
            engine.close()
        finally:
            proc.terminate()
            proc.wait(30)
            redis.stop()


if __name__ == "__main__":
    main()
