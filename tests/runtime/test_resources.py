"""Resource use per daemon: the meter's CPU %, RSS, open fds and trio loop lag, and
the same figures in a live daemon's heartbeat (GET worker/metrics) and on /metrics."""

from __future__ import annotations

import os
import time

import trio
from api_client import PREFIX, api_config, running_api

from fleetd.config import Config
from fleetd.runtime.resources import LAG_PROBE, ResourceMeter


def test_snapshot_reads_cpu_memory_and_files() -> None:
    meter = ResourceMeter()
    spent = time.process_time()
    while time.process_time() - spent < 0.2:  # burn CPU: the next figure is above 0
        pass
    with open(os.devnull, "rb"), open(os.devnull, "rb"):
        snap = meter.snapshot()
    assert snap["cpu_percent"] > 0
    assert snap["rss_bytes"] > 10 * 2**20
    # Two files opened here, plus stdin/stdout/stderr at least.
    assert snap["open_fds"] >= 5
    assert snap["loop_lag_ms"] == 0.0  # no probe ran


async def test_probe_sees_a_blocked_loop() -> None:
    meter = ResourceMeter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(meter.probe)
        await trio.sleep(LAG_PROBE / 2)
        time.sleep(0.35)  # noqa: ASYNC251 - the blocking call the probe must see
        await trio.sleep(LAG_PROBE * 2)
        nursery.cancel_scope.cancel()
    # The probe asked to wake at most LAG_PROBE after the block began.
    assert meter.snapshot()["loop_lag_ms"] >= (0.35 - LAG_PROBE) * 1000
    assert meter.snapshot()["loop_lag_ms"] == 0.0  # reset by the previous snapshot


async def test_a_daemon_reports_its_resources(config: Config) -> None:
    async with running_api(api_config(config), roles=("api", "worker")) as api:
        with trio.fail_after(10):
            while True:
                r = await api.get(f"{PREFIX}/worker/metrics")
                daemons = r.json()["daemons"]
                if daemons and "resources" in daemons[0]:
                    break
                await trio.sleep(0.05)
        [d] = daemons
        used = d["resources"]
        assert set(used) == {"cpu_percent", "rss_bytes", "open_fds", "loop_lag_ms"}
        assert used["rss_bytes"] > 10 * 2**20 and used["open_fds"] > 3
        text = (await api.get("/metrics")).text
        label = f'{{daemon="{d["daemon_id"]}"}}'
        lines = {ln.split(" ")[0]: float(ln.split(" ")[1]) for ln in text.splitlines()
                 if ln.startswith("fleetd_daemon_")}  # fmt: skip
        assert lines[f"fleetd_daemon_rss_bytes{label}"] > 10 * 2**20
        assert lines[f"fleetd_daemon_open_fds{label}"] > 3
        assert f"fleetd_daemon_cpu_percent{label}" in lines
        assert f"fleetd_daemon_loop_lag_seconds{label}" in lines
