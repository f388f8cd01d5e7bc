"""CLI start-up time: `fleetd --help`, `--version`, `stats` and `workers`, each run N
times as a fresh process, min / median / p90 / max wall time.

Owns: a throwaway redis-server on a free 127.0.0.1 port (tests/redis_server.py; never
the machine's Redis on 6379) and one `fleetd run --roles worker` daemon against it, so
`fleetd stats` does what an operator's does (config, Redis link, one script call). Each
command runs as `python -m fleetd.cli ARGS` with the environment the daemon has, so the
figure is the interpreter's start plus fleetd's imports plus the command's work.

Byte code is cached as in an installed fleetd (pip and the .deb compile it), but in
the scratch directory (PYTHONPYCACHEPREFIX), so no checkout is written to; one untimed
run per command fills the cache. Without the cache (PYTHONDONTWRITEBYTECODE=1, as some
shells set) each run also compiles every fleetd module it imports: ~60 ms more here.

Every process runs in a scratch directory: `python -m` puts the working directory first
on sys.path, which would otherwise win over PYTHONPATH.

`--baseline DIR` runs the same commands with another checkout first on PYTHONPATH
(`DIR:DIR/plugins`; e.g. a `git worktree` of main) and prints both: how much a change
saved. The two take turns, run by run (a burst of other work on a shared machine then
slows both alike). A command the baseline does not know (exit code not 0) is reported
as such.

Prints one `name: min / median / p90 / max ms` line per command and checkout, with the median
CPU time (user + system) of the process: on a busy machine the wall time mostly measures
the wait for a core, the CPU time much less so. `#` lines say how (with the load
average: other work on this machine shows there).
Run: `.venv/bin/python bench/cli_startup.py [--runs N] [--baseline DIR]`.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from redis_server import RedisServer

HERE = Path(__file__).resolve().parent.parent

# 20 runs: the median of a ~0.2 s command settles within ~5 ms on a quiet 2-core VM.
DEFAULT_RUNS = 20
COMMANDS = (
    ("help", ["--help"]), ("version", ["--version"]), ("stats", ["stats"]),
    ("workers", ["workers"]),
)  # fmt: skip
# The daemon is up when `fleetd stats` answers; a cold one starts in ~1 s, 30 s is slack
# for a loaded machine.
DAEMON_START_TIMEOUT = 30.0
# The goal for `fleetd stats` (#19).
STATS_GOAL_MS = 250.0


def checkout_env(base: dict[str, str], checkout: Path) -> dict[str, str]:
    return base | {"PYTHONPATH": f"{checkout}{os.pathsep}{checkout / 'plugins'}"}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_once(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float] | None:
    """Wall and CPU seconds of one run, or None when the command failed."""
    c0 = _children_cpu()
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "fleetd.cli", *argv], cwd=cwd, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    return None if done.returncode != 0 else (wall, _children_cpu() - c0)


def time_command(
    argv: list[str], checkouts: dict[str, dict[str, str]], runs: int, cwd: Path
) -> dict[str, tuple[list[float], list[float]] | None]:
    """Per checkout, the wall and CPU seconds of each run, or None when the command
    failed there. The checkouts take turns, run by run, so a burst of other work on the
    machine hits both alike."""
    for env in checkouts.values():  # fills the byte-code cache; not timed
        time_once(argv, env, cwd)
    out: dict[str, tuple[list[float], list[float]] | None] = {
        which: ([], []) for which in checkouts
    }
    for _ in range(runs):
        for which, env in checkouts.items():
            if (times := out[which]) is None:
                continue
            timed = time_once(argv, env, cwd)
            if timed is None:
                out[which] = None
                continue
            times[0].append(timed[0])
            times[1].append(timed[1])
    return out


def _p90(sorted_ms: list[float]) -> float:
    # The nearest-rank 90th percentile: of 20 runs, the 18th fastest.
    return sorted_ms[max(0, math.ceil(0.9 * len(sorted_ms)) - 1)]


def wait_for_daemon(
    env: dict[str, str], proc: subprocess.Popen[bytes], log: Path, cwd: Path
) -> None:
    deadline = time.monotonic() + DAEMON_START_TIMEOUT
    while True:
        workers = subprocess.run(
            [sys.executable, "-m", "fleetd.cli", "workers", "--json"],
            cwd=cwd, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if workers.returncode == 0 and '"daemon_id"' in workers.stdout:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"daemon did not start; see {log}")
        time.sleep(0.1)


def report(label: str, checkouts: dict[str, dict[str, str]], runs: int, cwd: Path) -> None:
    for name, argv in COMMANDS:
        for which, timed in time_command(argv, checkouts, runs, cwd).items():
            if timed is None:
                print(f"cli_{name}_{which}: fails (exit code not 0)")
                continue
            ms = sorted(t * 1000 for t in timed[0])
            cpu = statistics.median(t * 1000 for t in timed[1])
            print(
                f"cli_{name}_{which}: {ms[0]:.0f} / {statistics.median(ms):.0f} / "
                f"{_p90(ms):.0f} / {ms[-1]:.0f} ms  (min / median / p90 / max of {runs}), "
                f"CPU {cpu:.0f} ms median"
            )
            if name == "stats" and which == label:
                goal = "meets" if statistics.median(ms) < STATS_GOAL_MS else "misses"
                print(f"# stats median {goal} the goal of < {STATS_GOAL_MS:.0f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    p.add_argument("--baseline", type=Path, help="another checkout to compare against")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetd-cli-startup-") as tmp:
        workdir = Path(tmp)
        with RedisServer(workdir / "redis") as server:
            base = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith("FLEETD_") and k != "PYTHONDONTWRITEBYTECODE"
            }
            base |= {
                "PYTHONPYCACHEPREFIX": str(workdir / "pycache"),
                "FLEETD_CONFIG": str(HERE / "tests" / "empty.toml"),
                "FLEETD_REDIS_URL": server.url,
                "FLEETD_REDIS_NAMESPACE": "bench-cli",
                "FLEETD_DAEMON_STATE_DIR": str(workdir / "state"),
                "FLEETD_DAEMON_LOG_LEVEL": "warning",
            }
            checkouts = {"this": checkout_env(base, HERE)}
            if a.baseline:
                checkouts["baseline"] = checkout_env(base, a.baseline.resolve())
            log = workdir / "daemon.log"
            with log.open("ab") as out:
                daemon = subprocess.Popen(
                    [sys.executable, "-m", "fleetd.cli", "run", "--roles", "worker"],
                    cwd=workdir, env=checkouts["this"], stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )  # fmt: skip
            try:
                wait_for_daemon(checkouts["this"], daemon, log, workdir)
                print(
                    f"# {a.runs} runs per command, python {sys.version.split()[0]}, cpus "
                    f"{os.cpu_count()}, load average {os.getloadavg()[0]:.2f} before"
                )
                report("this", checkouts, a.runs, workdir)
                print(f"# load average {os.getloadavg()[0]:.2f} after")
            finally:
                daemon.terminate()
                daemon.wait(30)


if __name__ == "__main__":
    main()
