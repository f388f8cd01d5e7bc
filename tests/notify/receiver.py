"""A real webhook receiver for the notification tests: http.server on loopback in a
thread, checking each request's HMAC signature the way a user's receiver would."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = "s3cret-for-the-notify-tests"


@dataclass
class Received:
    delivery: str
    event: str
    body: dict[str, Any]
    signed: bool  # the signature matched the body
    answered: int
    received: float = 0.0  # time.time() when it was read


@dataclass
class Receiver:
    url: str = ""
    fail_next: int = 0  # answer 500 to this many requests, then 200
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.answered == 200]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            want = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
            signed = hmac.compare_digest(want, self.headers.get("X-Fleetd-Signature", ""))
            with receiver.lock:
                code = 500 if receiver.fail_next > 0 else 200
                receiver.fail_next -= code == 500
                delivery = self.headers.get("X-Fleetd-Delivery", "")
                event = self.headers.get("X-Fleetd-Event", "")
                receiver.requests.append(
                    Received(delivery, event, json.loads(raw), signed, code, time.time())
                )
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def webhook_receiver(fail_next: int = 0) -> Iterator[Receiver]:
    receiver = Receiver(fail_next=fail_next)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
