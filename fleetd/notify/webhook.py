"""A notification's webhook call: one signed POST (blocking; run it in a thread).

The body is the delivery's JSON, byte for byte the same on every retry; the header
`X-Fleetd-Signature: sha256=<hex>` is HMAC-SHA256 of those bytes with the rule's
`webhook_secret`, so a receiver checks it with `hmac.compare_digest` before trusting
the body. `X-Fleetd-Delivery` is the delivery's id (the same on every retry: a
receiver may drop a repeat), `X-Fleetd-Event` the event's kind. Any 2xx is success.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from typing import Any

__all__ = ["SIGNATURE_HEADER", "encode", "post", "sign"]

SIGNATURE_HEADER = "X-Fleetd-Signature"


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: str, data: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def post(url: str, secret: str, delivery_id: str, body: dict[str, Any], timeout: float) -> None:
    """Raises OSError (a refused connection, a timeout, a non-2xx answer)."""
    data = encode(body)
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "fleetd",
        SIGNATURE_HEADER: sign(secret, data), "X-Fleetd-Delivery": delivery_id,
        "X-Fleetd-Event": str(body.get("event", ""))})  # fmt: skip
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        resp.read()
        if not 200 <= resp.status < 300:
            raise urllib.error.HTTPError(url, resp.status, "not 2xx", resp.headers, None)
