"""`fleetd run`: the daemon in the foreground, with `--roles` overlaid on the config.

The daemon's modules are imported inside the function (~20 ms measured, and more for
the API role, which imports quart and hypercorn itself): the other commands never need
them. The import closes no cycle (tests/test_architecture.py checks).
"""

from __future__ import annotations

import argparse
from typing import Any

from fleetd.cli.common import fail
from fleetd.config import Config

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("--roles", help="comma-separated: worker,scheduler,api (default: config)")


def run(cfg: Config, a: argparse.Namespace) -> int:
    import dataclasses

    import trio

    from fleetd.runtime.daemon import Daemon
    from fleetd.runtime.log import configure_logging

    if a.roles:
        roles = tuple(r.strip() for r in a.roles.split(",") if r.strip())
        bad = sorted(set(roles) - {"worker", "scheduler", "api"})
        if bad or not roles:
            fail(
                f"--roles: unknown role(s) {', '.join(bad) or '(none given)'}; "
                "use worker, scheduler, api"
            )
        cfg = dataclasses.replace(cfg, daemon=dataclasses.replace(cfg.daemon, roles=roles))
    configure_logging(cfg.daemon.log_level, cfg.daemon.log_format)
    daemon = Daemon(cfg, config_path=cfg.source, tune_gc=True)
    trio.run(daemon.run)
    return 0
