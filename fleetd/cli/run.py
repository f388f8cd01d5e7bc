"""`fleetd run`: the daemon in the foreground, with `--roles` and `--processes` overlaid
on the config. With more than one process it runs the supervisor
(fleetd.runtime.supervisor), which starts each child as `fleetd run --supervisor <pid>`
(options hidden from --help: only the supervisor passes them).

The daemon's modules are imported inside the function (~20 ms measured, and more for
the API role, which imports quart and hypercorn itself): the other commands never need
them. The import closes no cycle (tests/test_architecture.py checks).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from fleetd.cli.common import fail

if TYPE_CHECKING:
    from fleetd.config import Config

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run the daemon")
    p.add_argument("--roles", help="comma-separated: worker,scheduler,api (default: config)")
    p.add_argument(
        "--processes",
        metavar="N",
        help='daemon processes to supervise, or "auto" = one per core (default: config)',
    )
    # Set by the supervisor for its children: its pid, and the listening sockets it
    # bound for [http] listen (same order) as inherited file descriptors.
    p.add_argument("--supervisor", type=int, help=argparse.SUPPRESS)
    p.add_argument("--listen-fds", default="", help=argparse.SUPPRESS)


def _overlay(cfg: Config, a: argparse.Namespace) -> Config:
    import dataclasses

    from fleetd.config import DaemonConfig
    from fleetd.config.settings import convert, section_keys

    daemon = cfg.daemon
    if a.roles:
        roles = tuple(r.strip() for r in a.roles.split(",") if r.strip())
        bad = sorted(set(roles) - {"worker", "scheduler", "api"})
        if bad or not roles:
            fail(
                f"--roles: unknown role(s) {', '.join(bad) or '(none given)'}; "
                "use worker, scheduler, api"
            )
        daemon = dataclasses.replace(daemon, roles=roles)
    if a.processes is not None:
        # Checked exactly as FLEETD_DAEMON_PROCESSES would be.
        kind, meta = section_keys(DaemonConfig)["processes"]
        value, error = convert(kind, meta, a.processes, True)
        if error:
            fail(f"--processes: {error}")
        daemon = dataclasses.replace(daemon, processes=value)
    return dataclasses.replace(cfg, daemon=daemon)


def _listen_fds(text: str) -> tuple[int, ...]:
    fds = [fd.strip() for fd in text.split(",") if fd.strip()]
    if not all(fd.isdigit() and int(fd) < 2**31 for fd in fds):
        fail(f"--listen-fds: not a comma-separated list of file descriptors: {text!r}")
    return tuple(map(int, fds))


def run(cfg: Config, a: argparse.Namespace) -> int:
    import trio

    from fleetd.runtime.daemon import Daemon
    from fleetd.runtime.log import configure_logging
    from fleetd.runtime.supervisor import Supervisor, resolve_processes

    cfg = _overlay(cfg, a)
    configure_logging(cfg.daemon.log_level, cfg.daemon.log_format)
    processes = resolve_processes(cfg.daemon.processes)
    if a.supervisor is None and processes > 1:
        return trio.run(Supervisor(cfg, processes).run)
    fds = _listen_fds(a.listen_fds)
    if a.supervisor is not None and not 0 < a.supervisor < 2**31:
        fail(f"--supervisor: not a process id: {a.supervisor}")
    daemon = Daemon(
        cfg, config_path=cfg.source, tune_gc=True, listen_fds=fds, supervisor_pid=a.supervisor
    )
    trio.run(daemon.run)
    return 0
