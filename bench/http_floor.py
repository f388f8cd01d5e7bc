"""What fleetd's HTTP stack allows one process on this machine, with no fleetd code.

Owns: serving, on hypercorn's trio worker (as `fleetd run` does) and a free loopback
port, either a bare ASGI app that reads the body and answers a fixed 201, or a minimal
quart-trio view that parses the JSON body and answers it; then loading it with `wrk`
exactly as bench/http_enqueue.py loads fleetd's enqueue (the same body, 50 keep-alive
connections, a warm-up first) and printing requests/s and the server's CPU per request.
fleetd's own share of a request is its figure from http_enqueue.py minus the quart one
here.

Prints one `name: value unit` line per figure; `#` lines say how.

Run: `.venv/bin/python bench/http_floor.py [--seconds S] [--connections C]` (needs
`wrk`: `apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from http_enqueue import BODY, DEFAULT_CONNECTIONS, WARMUP_SECONDS, cpu_seconds

APPS = ("bare", "quart")

# Run as `python http_floor.py --serve KIND PORT`: the server half, in its own process.
SERVER = """
import sys, trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import request
from quart_trio import QuartTrio

app = QuartTrio("floor")


@app.post("/enqueue")
async def enqueue():
    body = await request.get_json()
    return {"job_id": "job_floor", "status": "pending", "fields": len(body)}, 201


async def bare(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 201,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"job_id":"job_floor"}'})


config = Config()
config.bind = ["127.0.0.1:" + sys.argv[2]]
config.accesslog = config.errorlog = None
trio.run(serve, bare if sys.argv[1] == "bare" else app, config)
"""

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the {port} server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the server did not listen")


def wrk(url: str, connections: int, seconds: float, script: Path) -> tuple[int, float]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if match is None or "Non-2xx" in out:
        raise SystemExit(f"unexpected wrk output:\n{out}")
    return int(match[1]), float(match[2]) / (1000 if match[3] == "ms" else 1)


def measure(kind: str, a: argparse.Namespace, workdir: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, kind, str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_listening(port, proc)
        script = workdir / "post.lua"
        script.write_text(WRK_SCRIPT.format(body=json.dumps(json.dumps(BODY))))  # a Lua string
        url = f"http://127.0.0.1:{port}/enqueue"
        wrk(url, a.connections, WARMUP_SECONDS, script)
        cpu0 = cpu_seconds(proc.pid)
        requests, wall = wrk(url, a.connections, a.seconds, script)
        cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"# {kind}: {a.connections} connections, {requests} requests in {wall:.1f} s via wrk, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"http_floor_{kind}_rate: {requests / wall:,.0f} requests/s")
    print(f"http_floor_{kind}_cpu: {cpu / requests * 1e3:.3f} ms/request "
          f"({cpu / wall:.0%} of one core)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    p.add_argument("--seconds", type=float, default=8.0)
    a = p.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    print(f"# cpus {os.cpu_count()}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="fleetd-http-floor-") as tmp:
        for kind in APPS:
            measure(kind, a, Path(tmp))


if __name__ == "__main__":
    main()
