"""The admin commands, none of which touches Redis: `config show|check`, `plugins`
(installed plugins, their job types and schemas), `token` (mint an admin API token) and
`keygen` (a new [encryption] data key).

`token` imports the API's auth module (PyJWT and `cryptography`: ~0.12 s measured)
inside its function, so the other commands do not pay for it at start-up; so do
`plugins` (plugin discovery, the job model: ~0.1 s) and `keygen` (`cryptography`). These
imports close no cycle (tests/test_architecture.py checks).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from fleetd.cli.common import duration, fail, print_json

if TYPE_CHECKING:
    from fleetd.config import Config

__all__ = ["add_parsers", "config", "keygen", "plugins", "token"]

MAX_TTL = 3650 * 86_400.0  # 10 years


def add_parsers(sub: Any) -> None:
    conf = sub.add_parser("config", help="show or check the configuration")
    conf.add_argument("action", choices=["show", "check"])

    plug = sub.add_parser("plugins", help="installed plugins, their job types and schemas")
    plug.add_argument("--json", action="store_true")

    tok = sub.add_parser("token", help="mint an admin API token (HS* secret of [auth])")
    tok.add_argument("--company", help="bind the token to this company_id")
    tok.add_argument("--ttl", default="1h", help="lifetime, e.g. 15m, 1h, 30d (default 1h)")
    tok.add_argument("--subject", default="fleetd-cli", help="the token's sub (default fleetd-cli)")

    kg = sub.add_parser("keygen", help="print a new data key for [encryption] keys")
    kg.add_argument("--id", default=None, help="key id (default: k<UTC date and time>)")


def config(cfg: Config, a: argparse.Namespace) -> int:
    from fleetd.config import dump_toml

    if a.action == "show":
        print(dump_toml(cfg, redact=True), end="")
    else:
        print(f"configuration OK ({cfg.source or 'defaults'})")
    return 0


def plugins(cfg: Config, a: argparse.Namespace) -> int:
    from fleetd.config.durations import format_duration
    from fleetd.engine import build_registry
    from fleetd.plugins.discovery import describe

    body = describe(build_registry(cfg))
    if a.json:
        print_json(body)
        return 0
    for p in body["plugins"]:
        where = "core" if p["source"] == "core" else p["module"]
        print(f"{p['name']}  {p['distribution']} {p['version']}  ({where})")
        for jt in p["job_types"]:
            d = jt["defaults"]
            print(
                f"  {jt['type']:<24} priority {d['priority']}, max_retries {d['max_retries']}, "
                f"timeout {format_duration(d['timeout'])}"
                + (f"  {jt['description']}" if jt["description"] else "")
            )
            schema = jt["schema"] or {}
            required = set(schema.get("required", ()))
            if fields := [f + ("*" if f in required else "") for f in schema.get("properties", {})]:
                print(f"  {'':<24} data: {', '.join(fields)}  (* required)")
        if p["schedules"]:
            print(f"  default schedules: {', '.join(p['schedules'])}")
    for d in body["disabled"]:
        print(f"disabled: {d['name']} ({d['kind'].replace('_', ' ')})")
    return 0


def token(cfg: Config, a: argparse.Namespace) -> int:
    from fleetd.api.auth import mint_token

    ttl = duration("--ttl", a.ttl)
    if not 1 <= ttl <= MAX_TTL:
        # Under a second the token is expired when minted (exp counts whole seconds);
        # beyond years its exp is past what JWT libraries turn into a date.
        fail(f"--ttl: must be from 1s to 3650d, got {a.ttl}")
    try:
        token, path, generated = mint_token(cfg, company_id=a.company, ttl=ttl, subject=a.subject)
    except ValueError as exc:
        fail(str(exc))
    if generated:
        print(f"fleetd: no [auth] secret configured: generated one into {path} (mode 0600)",
              file=sys.stderr)  # fmt: skip
    print(token)
    return 0


def keygen(a: argparse.Namespace) -> int:
    from fleetd.jobs.sealing import SealError, format_key, new_key

    key_id = a.id or time.strftime("k%Y%m%d%H%M%S", time.gmtime())
    try:
        print(format_key(key_id, new_key()))
    except SealError as exc:
        fail(f"--id: {exc}")
    return 0
