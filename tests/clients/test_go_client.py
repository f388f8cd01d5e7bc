"""The Go client (clients/go) against a live daemon and a real Redis.

`gofmt -l` and `go vet ./...` check the sources; `go test ./...` runs the client's own
tests with FLEETD_URL and tokens pointing at a `fleetd run` subprocess (every role) on
the shared test redis-server under this test's namespace, so each client call meets
the real API; then the spec's two examples run with `go run` against such a daemon and
what they did is read back over HTTP.

Go is Debian's golang-go (1.19; `.ci/run` installs it): without `go` on the PATH these
tests are skipped, saying so. The client uses the standard library only, and the tests
prove it: GOPROXY=off (no module can be downloaded), GOTOOLCHAIN=local, GOENV=off and a
private GOCACHE/GOPATH, with no HOME, so a fresh CI machine running as root behaves
like a developer's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import pytest
from api_client import PREFIX, SECRET, token
from conftest import fleetd_env
from daemons import Fleet, settings

from fleetd.config import Config

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "go"
GO = shutil.which("go")
pytestmark = pytest.mark.skipif(
    GO is None,
    reason="`go` is not on the PATH: install Debian's golang-go (.ci/run does) to test it",
)

# A cold build of the client, its tests and the standard library parts it needs takes
# ~10 s on an idle 2-core machine; 5 min only passes when something is stuck.
GO_TIMEOUT = 300.0
# The company of the company-bound token, and of the examples' jobs: the fleet-data
# plugin's reports look a company's data up by UUID.
COMPANY = "3f0c2a7e-1b2c-4d5e-8f90-123456789abc"
# Heartbeats every 500 ms instead of 2 s: the worker-metrics test sees its job sooner.
FAST_HEARTBEAT = settings(daemon_heartbeat_interval="500ms")


@pytest.fixture(scope="module")
def go_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of every `go` command: PATH only from the caller's, a build cache
    shared by this module's tests (the standard library is compiled once), nothing to
    download and no per-user configuration."""
    root = tmp_path_factory.mktemp("go")
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GOCACHE": str(root / "cache"),
        "GOPATH": str(root / "path"),
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-mod=readonly",
        "GOENV": "off",
        # No C compiler needed: net and os/user in pure Go.
        "CGO_ENABLED": "0",
    }


def go(
    env: Mapping[str, str], *args: str, extra: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    assert GO is not None
    return subprocess.run(
        [GO, *args],
        cwd=CLIENT_DIR,
        env={**env, **(extra or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=GO_TIMEOUT,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    command = " ".join(str(a) for a in done.args[1:])
    assert done.returncode == 0, (
        f"go {command}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


@pytest.fixture
def daemon_url(config: Config, fleet: Fleet) -> Iterator[str]:
    """A `fleetd run` (api, worker, scheduler) that accepts the test tokens; its URL."""
    # The spec's report example runs on the demo fleet ([data] demo: no platform database)
    demo = {"FLEETD_DATA_DEMO": "true"}
    fleet.start(fleetd_env(config) | settings(auth_secret=SECRET) | FAST_HEARTBEAT | demo)
    yield fleet.api_url(config.state_dir)


def live_env(url: str) -> dict[str, str]:
    return {
        "FLEETD_URL": url,
        "FLEETD_TOKEN": token(subject="go-tester"),
        "FLEETD_COMPANY": COMPANY,
        "FLEETD_COMPANY_TOKEN": token(COMPANY, subject="go-tenant"),
    }


def test_go_sources_are_formatted_and_vet_clean(go_env: dict[str, str]) -> None:
    gofmt = shutil.which("gofmt") or str(Path(str(GO)).resolve().with_name("gofmt"))
    done = subprocess.run(
        [gofmt, "-l", "."], cwd=CLIENT_DIR, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout == "", f"not gofmt-formatted:\n{done.stdout}"
    ok(go(go_env, "vet", "./..."))
    # Standard library only: the module requires nothing.
    assert "require" not in (CLIENT_DIR / "go.mod").read_text()


def live_test_names() -> list[str]:
    """The live Go tests, from live*_test.go."""
    names: list[str] = []
    for path in sorted(CLIENT_DIR.glob("live*_test.go")):
        names += re.findall(r"^func (TestLive\w+)\(", path.read_text(), re.MULTILINE)
    return names


def test_go_test_passes_against_a_live_daemon(go_env: dict[str, str], daemon_url: str) -> None:
    out = ok(go(go_env, "test", "-count=1", "-v", "./...", extra=live_env(daemon_url)))
    names = live_test_names()
    assert len(names) >= 8, names
    # Each live test ran against the daemon: passed, not skipped.
    for name in names:
        assert f"--- PASS: {name} " in out, f"{name} did not pass\n{out}"
    assert "--- SKIP" not in out, out
    assert "--- PASS: TestRetries503AfterRetryAfterThenSucceeds " in out


def test_go_test_alone_skips_the_live_tests(go_env: dict[str, str]) -> None:
    out = ok(go(go_env, "test", "-count=1", "-v", "-run", "TestLive", "./..."))
    for name in live_test_names():
        assert f"--- SKIP: {name} " in out, out
    assert "FLEETD_URL is not set" in out


def run_example(
    go_env: dict[str, str], url: str, name: str, args: Sequence[str]
) -> subprocess.CompletedProcess[str]:
    return go(
        go_env,
        "run",
        f"./examples/{name}",
        *args,
        extra={"FLEETD_URL": url, "FLEETD_TOKEN": token(subject="go-example")},
    )


def test_the_spec_examples_run_against_a_live_daemon(
    go_env: dict[str, str], daemon_url: str
) -> None:
    who = ["-company", COMPANY, "-user", "u-42"]
    out = ok(run_example(go_env, daemon_url, "enqueue_report", [*who, "-wait", "60s"]))
    match = re.fullmatch(r"enqueued report job (job_\w+) \(pending\)\njob \1 completed\n", out)
    assert match, out
    headers = {"Authorization": f"Bearer {token()}"}
    with httpx.Client(base_url=daemon_url + PREFIX, headers=headers, timeout=10) as http:
        job = http.get(f"/{match[1]}").json()["job"]
        assert job["type"] == "report_generation" and job["status"] == "completed"
        assert job["company_id"] == COMPANY and job["user_id"] == "u-42"
        assert job["priority"] == 5
        assert job["data"]["report_type"] == "fleet_summary"
        assert (job["data"]["start_date"], job["data"]["end_date"]) == ("2024-01-01", "2024-01-31")

        out = ok(run_example(go_env, daemon_url, "scheduled_job", who))
        created = re.fullmatch(
            r"created scheduled job (\S+) \(maintenance_reminder @weekly\), next run (\S+)\n", out
        )
        assert created, out
        schedule = http.get(f"/scheduled/{created[1]}").json()["scheduled_job"]
        assert schedule["name"] == "Weekly Maintenance Check" and schedule["is_active"] is True
        assert schedule["company_id"] == COMPANY and schedule["user_id"] == "u-42"
        assert schedule["data"] == {"maintenance_type": "routine_check"}
        assert schedule["priority"] == 5 and schedule["schedule"] == "@weekly"
        assert schedule["next_run"].startswith(created[2].removesuffix("Z"))

        # Run again: names are unique per company, so it reports the one it made.
        out = ok(run_example(go_env, daemon_url, "scheduled_job", who))
        assert out == f"scheduled job {created[1]} already exists, next run {created[2]}\n"
        listed = http.get("/scheduled").json()["scheduled_jobs"]
        ours = [s["id"] for s in listed if s.get("company_id") == COMPANY]
        assert ours == [created[1]]
