"""Peak memory of data_export: exporting N GPS points must add less than 100 MB.

Owns: filling a fleet database with one demo company and exactly N GPS points (plausible
tracks of its vehicles, bulk-inserted: COPY on PostgreSQL), then, for each format, a
fresh Python process that runs the real `data_export` handler (fleetd.testing's
Harness: a real JobContext and artifact store) and reports how much its peak resident
memory grew during the export: the kernel's high-water mark (VmHWM) is reset through
/proc/self/clear_refs just before the job and read right after it, minus the resident
size (VmRSS) at that moment. Imports (fleetd, psycopg, openpyxl) happen before the
baseline: they cost the same for ten rows or ten million.

    .venv/bin/python bench/export_memory.py                      # 1,000,000 points, SQLite
    .venv/bin/python bench/export_memory.py --backend both       # SQLite and PostgreSQL
    .venv/bin/python bench/export_memory.py --points 200000 --formats csv,xlsx
    .venv/bin/python bench/export_memory.py --sandboxed --formats csv   # in a child process

PostgreSQL: a throwaway database `fleetd_bench_<hex>` on --pg-server (default
postgresql://postgres@127.0.0.1:5432), created from the `test` database and dropped at
the end. One line per format: `export_<backend>_<format>: <growth> MB peak growth (rows,
seconds, file size)`, and a last `target:` line. The suite's
tests/fleetd_plugins/test_fleetdata_exports.py runs the same measurement on 200,000 points.
`--sandboxed` runs each export in a process sandbox instead (as `data_export` runs in a
daemon by default): the peak growth of the measuring process (the daemon's side) and the
child's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DEFAULT_POINTS = 1_000_000
TARGET_MB = 100.0
FORMATS = ("csv", "json", "xlsx")
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
# One point per 10 s per vehicle (a dense telematics unit), ten vehicles driving.
INTERVAL_S = 10
VEHICLES = 10


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


# -- filling ------------------------------------------------------------------------------


def fill(url: str, points: int) -> dict[str, Any]:
    from fleetd_plugins.fleetdata.demo import DemoSpec, write_demo
    from fleetd_plugins.fleetdata.source import FleetData

    source = FleetData(url)
    db = source.connect()
    started = time.monotonic()
    try:
        source.create_schema(db)
        spec = DemoSpec(companies=1, vehicles=VEHICLES, days=1, seed=42, gps_interval_s=600)
        write_demo(db, spec)
        company = db.value("SELECT id FROM companies ORDER BY created_at LIMIT 1")
        vehicles = [r["id"] for r in db.all("SELECT id FROM vehicles ORDER BY id")]
        db.execute("DELETE FROM gps_tracks")
        n = db.insert_rows(
            "gps_tracks",
            ("company_id", "vehicle_id", "trip_id", "recorded_at", "latitude", "longitude",
             "speed_kmh", "heading"),
            _points(company, vehicles, points),
        )  # fmt: skip
        db.commit()
    finally:
        db.close()
    return {"points": n, "seconds": round(time.monotonic() - started, 1)}


def _points(company: str, vehicles: list[str], n: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(7)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    state = [[53.55 + rng.uniform(-0.1, 0.1), 9.99 + rng.uniform(-0.1, 0.1), 0.0] for _ in vehicles]
    for i in range(n):
        v = i % len(vehicles)
        lat, lon, heading = state[v]
        heading = (heading + rng.gauss(0, 15)) % 360
        speed = max(0.0, rng.gauss(45, 15))
        step = speed * INTERVAL_S / 3600
        lat += step * math.cos(math.radians(heading)) / 111.32
        lon += step * math.sin(math.radians(heading)) / (111.32 * math.cos(math.radians(lat)))
        state[v] = [lat, lon, heading]
        at = start + timedelta(seconds=(i // len(vehicles)) * INTERVAL_S)
        yield (company, vehicles[v], None, at.strftime("%Y-%m-%dT%H:%M:%SZ"), round(lat, 6),
               round(lon, 6), round(speed, 1), int(heading))  # fmt: skip


# -- measuring (in a fresh process) -------------------------------------------------------


def measure(url: str, fmt: str, work: Path) -> dict[str, Any]:
    import dataclasses

    import openpyxl  # noqa: F401 - imported before the baseline, like everything else
    import psycopg  # noqa: F401
    import trio
    from fleetd_plugins import email
    from fleetd_plugins.fleetdata import plugin
    from fleetd_plugins.fleetdata.config import DataConfig

    from fleetd.config import Config
    from fleetd.testing import Harness

    cfg = Config.default()
    cfg = dataclasses.replace(
        cfg, daemon=dataclasses.replace(cfg.daemon, state_dir=str(work / "state"))
    ).with_section(dataclasses.replace(cfg.section(DataConfig), url=url))
    handlers = [*plugin.fleetd_handlers(cfg), *email.fleetd_handlers(cfg)]
    with Harness(handlers, tmp_path=work, config=cfg) as h:
        # Warm up the machinery (first connection, thread pool, scripts) on a tiny export.
        trio.run(lambda: h.run("data_export", {"export_type": "vehicles", "format": fmt}))
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        baseline = _status_kb("VmRSS")
        started = time.monotonic()
        result = trio.run(lambda: h.run("data_export", {"export_type": "gps_tracks",
                                                        "format": fmt}))  # fmt: skip
        seconds = time.monotonic() - started
        peak = _status_kb("VmHWM")
    [artifact] = result["artifacts"]
    return {
        "format": fmt,
        "rows": result["rows"],
        "baseline_mb": round(baseline / 1024, 1),
        "peak_mb": round(peak / 1024, 1),
        "growth_mb": round((peak - baseline) / 1024, 1),
        "seconds": round(seconds, 1),
        "file_mb": round(artifact["size"] / 2**20, 1),
    }


def measure_sandboxed(url: str, fmt: str, work: Path) -> dict[str, Any]:
    """The same export in a `process` sandbox (fleetd.runtime.sandbox), as a daemon runs
    it by default: this process plays the daemon; the child is a warm sandbox child
    (fleetd.runtime.sandbox_children). Reports the daemon's peak growth and the
    child's peak RSS (VmHWM)."""
    import dataclasses

    import trio
    from fleetd_plugins.fleetdata import plugin
    from fleetd_plugins.fleetdata.config import DataConfig

    from fleetd.backend.codec import ClaimedJob
    from fleetd.config import Config
    from fleetd.runtime.sandbox import Sandbox

    cfg = Config.default()
    cfg = dataclasses.replace(
        cfg, daemon=dataclasses.replace(cfg.daemon, state_dir=str(work / "state"))
    ).with_section(dataclasses.replace(cfg.section(DataConfig), url=url))
    [handler] = [h for h in plugin.fleetd_handlers(cfg) if h.job_type == "data_export"]
    policy = handler.defaults.policy()
    sandbox = Sandbox(cfg.isolation, work / "artifacts")

    class Progress:  # the daemon's side of ctx.progress: nothing to record here
        job: Any = None

        async def progress(self, percent: float, message: str = "") -> bool:
            return True

    ctx: Any = Progress()

    def job(n: int) -> ClaimedJob:
        return ClaimedJob(f"job{n}", "data_export", {}, 5, 1, 0, 0, None, None, None, (), 0, "")

    async def run() -> dict[str, Any]:
        async with trio.open_nursery() as nursery:
            await nursery.start(sandbox.run, [policy])
            warm = await sandbox.run_process(
                policy, handler, job(0), {"export_type": "vehicles", "format": fmt}, ctx
            )
            assert warm.result is not None, warm.error
            Path("/proc/self/clear_refs").write_text("5")  # noqa: ASYNC240 - before the clock
            baseline = _status_kb("VmRSS")
            started = time.monotonic()
            out = await sandbox.run_process(
                policy, handler, job(1), {"export_type": "gps_tracks", "format": fmt}, ctx
            )
            seconds = time.monotonic() - started
            peak = _status_kb("VmHWM")
            children = _children_hwm_kb()
            nursery.cancel_scope.cancel()
        assert out.result is not None, out.error
        result = json.loads(out.result)
        return {"format": fmt, "rows": result["rows"], "seconds": round(seconds, 1),
                "daemon_growth_mb": round((peak - baseline) / 1024, 1),
                "child_peak_mb": round(max(children, default=0) / 1024, 1)}  # fmt: skip

    return trio.run(run)


def _children_hwm_kb() -> list[int]:
    """VmHWM of this process's children (the warm sandbox children)."""
    pids = []
    for task in Path("/proc/self/task").iterdir():
        pids += (task / "children").read_text().split()
    out = []
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out.append(int(line.split()[1]))
        except OSError:
            continue
    return out


# -- driver -------------------------------------------------------------------------------


def _run_measure(url: str, fmt: str, work: Path, sandboxed: bool = False) -> dict[str, Any]:
    extra = ["--sandboxed"] if sandboxed else []
    done = subprocess.run(
        [sys.executable, __file__, "--measure", fmt, "--url", url, "--work", str(work), *extra],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"measuring {fmt} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _pg_admin(server: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{server}/test", autocommit=True) as conn:
        conn.execute(sql)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=DEFAULT_POINTS)
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    p.add_argument("--formats", default=",".join(FORMATS))
    p.add_argument("--pg-server", default=PG_SERVER)
    p.add_argument("--url", help="(internal) the database to fill or export from")
    p.add_argument("--fill-only", action="store_true", help="(internal) fill --url and exit")
    p.add_argument("--measure", choices=FORMATS, help="(internal) measure one format")
    p.add_argument("--work", type=Path, help="(internal) work folder of --measure")
    p.add_argument("--sandboxed", action="store_true", help="run each export in a process sandbox")
    a = p.parse_args()
    if a.fill_only:
        print(json.dumps(fill(a.url, a.points)))
        return 0
    if a.measure:
        how = measure_sandboxed if a.sandboxed else measure
        print(json.dumps(how(a.url, a.measure, a.work)))
        return 0
    formats = [f.strip() for f in a.formats.split(",") if f.strip()]
    backends = ["sqlite", "postgresql"] if a.backend == "both" else [a.backend]
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="fleetd-export-bench-") as tmp:
        for backend in backends:
            db_name = f"fleetd_bench_{uuid.uuid4().hex[:8]}"
            if backend == "sqlite":
                url = f"sqlite:///{tmp}/bench.db"
            else:
                _pg_admin(a.pg_server, f"CREATE DATABASE {db_name}")
                url = f"{a.pg_server}/{db_name}"
            try:
                filled = fill(url, a.points)
                print(f"# {backend}: {filled['points']:,} GPS points written in "
                      f"{filled['seconds']} s", flush=True)  # fmt: skip
                for fmt in formats:
                    if a.sandboxed:
                        m = _run_measure(url, fmt, Path(tmp) / f"{backend}-{fmt}", True)
                        print(
                            f"export_sandboxed_{backend}_{fmt}: daemon peak growth "
                            f"{m['daemon_growth_mb']} MB, child peak RSS "
                            f"{m['child_peak_mb']} MB  ({m['rows']:,} rows in {m['seconds']} s)",
                            flush=True,
                        )
                        worst = max(worst, m["daemon_growth_mb"])
                        continue
                    m = _run_measure(url, fmt, Path(tmp) / f"{backend}-{fmt}")
                    worst = max(worst, m["growth_mb"])
                    print(
                        f"export_{backend}_{fmt}: {m['growth_mb']} MB peak growth  "
                        f"({m['rows']:,} rows in {m['seconds']} s, file {m['file_mb']} MB, "
                        f"RSS {m['baseline_mb']} -> {m['peak_mb']} MB)",
                        flush=True,
                    )
            finally:
                if backend == "postgresql":
                    _pg_admin(a.pg_server, f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
    verdict = "met" if worst < TARGET_MB else "MISSED"
    print(f"target: peak growth < {TARGET_MB:g} MB per export: {verdict} (worst {worst} MB)")
    return 0 if worst < TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
