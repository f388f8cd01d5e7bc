"""packaging/build.sh: the one-file binary and the .deb, built for real (slow, ~1 min),
once, in a fresh `git clone` of this repository's HEAD (commit first: uncommitted changes
are not in the clone) with no .venv: the script makes its own build environment.

The built `dist/fleetd` runs a daemon against the test redis-server with a plugin wheel
in its plugins directory (built here as a zip, as pip would), and a job of that
plugin's type completes through it; `fleetd plugins` lists the entry-point plugins
packed inside the binary. The .deb holds the binary, the unit, sysusers/tmpfiles
entries, the default config as a conffile, maintainer scripts that parse, and the
documentation: a machine-readable copyright file naming every bundled distribution's
license, their license files, README, CHANGELOG (and changelog.gz) and docs/*.md.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path

import daemons
import pytest
from conftest import fleetd_env
from daemons import Fleet, wait_for

from fleetd.config import Config

ROOT = Path(__file__).parents[2]
# The build, in the clone: ~15 s for the build venv (pip, setuptools, shiv), ~16 s of
# pip (wheels cached), ~4 s of shiv, ~3 s of dpkg-deb here; a cold pip cache, more.
BUILD_TIMEOUT = 600

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed"),
    pytest.mark.skipif(importlib.util.find_spec("shiv") is None, reason="shiv not installed"),
]

PLUGIN = """
from fleetd import HandlerDefaults, JobHandler, hookimpl

class Shout(JobHandler):
    job_type = "shout"
    description = "Upper-cases data.text (a plugin loaded from a wheel)"
    schema = {"type": "object", "properties": {"text": {"type": "string"}}}
    defaults = HandlerDefaults()

    async def run(self, ctx, data):
        return {"text": data["text"].upper()}

@hookimpl
def fleetd_handlers():
    return [Shout()]
"""


def build_wheel(folder: Path) -> Path:
    """A pure-Python wheel of one module with a `fleetd.plugins` entry point."""
    wheel = folder / "fleetd_shout-1.0-py3-none-any.whl"
    info = "fleetd_shout-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("fleetd_shout.py", PLUGIN)
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: fleetd-shout\nVersion: 1.0\n")
        z.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        z.writestr(f"{info}/entry_points.txt", "[fleetd.plugins]\nshout = fleetd_shout\n")
        z.writestr(f"{info}/RECORD", "")
    return wheel


def binary(deb: Path, env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the one-file binary built next to `deb` (dist/fleetd)."""
    return subprocess.run(
        [str(deb.parent / "fleetd"), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb built by packaging/build.sh alone in a fresh clone (the binary is next
    to it, in the clone's dist/)."""
    clone = tmp_path_factory.mktemp("clone") / "fleetd"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    # Nothing of this checkout's environment: not its venv's interpreter, not its code.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "PYTHONPATH", "VIRTUAL_ENV")}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    assert not (clone / ".venv").exists()
    done = subprocess.run(
        ["bash", "packaging/build.sh"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (clone / "build" / "venv" / "bin" / "shiv").exists()
    [deb] = (clone / "dist").glob("fleetd_*.deb")
    return deb


def test_binary_runs_a_job_of_a_wheel_plugin(
    built: Path, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    build_wheel(plugins)
    env = fleetd_env(config) | {
        "FLEETD_PLUGINS_DIRECTORY": str(plugins),
        "SHIV_ROOT": str(tmp_path / "shiv"),  # as the unit's /var/cache/fleetd
    }
    env.pop("PYTHONPATH", None)
    env["PATH"] = "/usr/bin:/bin"  # the system python3, not the test venv's
    listed = binary(built, env, "plugins")
    assert listed.returncode == 0, listed.stderr
    # The built-ins come with their libraries (the builtins extra): fleetdata loads.
    for plugin_type in ("shout", "email_notification", "noop", "report_generation"):
        assert plugin_type in listed.stdout, listed.stdout

    monkeypatch.setattr(
        daemons, "FLEETD", [str(built.parent / "fleetd")]
    )  # `fleetd run` is the binary
    fleet = Fleet(tmp_path / "daemons")
    try:
        d = fleet.start(env)
        job = binary(built, env, "enqueue", "shout", "--data", '{"text": "hi"}', "--wait", "--json")
        assert job.returncode == 0, job.stderr + d.tail()
        body = json.loads(job.stdout)
        assert body["status"] == "completed" and body["job"]["result"]["text"] == "HI", body
        job_id = body["job"]["id"]
        wait_for(lambda: f"job {job_id} (shout) completed in" in d.log(), 5, "its log line")
    finally:
        fleet.close()


def test_binary_supervises_children_started_from_itself(
    built: Path, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # [daemon] processes = 2: the children are the same one-file binary, run again.
    env = fleetd_env(config) | {"SHIV_ROOT": str(tmp_path / "shiv")}
    env |= {"FLEETD_DAEMON_PROCESSES": "2"}
    env.pop("PYTHONPATH", None)
    env["PATH"] = "/usr/bin:/bin"
    monkeypatch.setattr(daemons, "FLEETD", [str(built.parent / "fleetd")])
    fleet = Fleet(tmp_path / "daemons")
    try:
        s = fleet.start(env, ready=False)
        wait_for(lambda: "supervisor ready:" in s.log(), 60, "the supervisor", s.tail)
        tasks = Path(f"/proc/{s.pid}/task").glob("*/children")
        children = [int(c) for t in tasks for c in t.read_text().split()]
        assert len(children) == 2, s.tail()
        for pid in children:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert argv[1].decode() == str(built.parent / "fleetd") and b"--supervisor" in argv, (
                argv
            )
        job = binary(built, env, "enqueue", "noop", "--wait", "--json")
        assert job.returncode == 0, job.stderr + s.tail()
        s.send(signal.SIGTERM)
        assert s.wait_exit(30) == 0
    finally:
        fleet.close()


def test_deb_contents(built: Path, tmp_path: Path) -> None:
    info = subprocess.run(
        ["dpkg-deb", "--info", str(built)], capture_output=True, text=True, check=False
    )
    assert info.returncode == 0, info.stderr
    for field in ("Package: fleetd", "Depends: python3 (>= 3.11)", "postinst", "prerm", "postrm"):
        assert field in info.stdout, info.stdout
    conffiles = subprocess.run(
        ["dpkg-deb", "--ctrl-tarfile", str(built)], capture_output=True, check=True
    ).stdout
    assert b"/etc/fleetd/fleetd.toml" in conffiles
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(built), str(root)], check=True)
    assert (root / "usr/bin/fleetd").read_bytes() == (built.parent / "fleetd").read_bytes()
    assert os.access(root / "usr/bin/fleetd", os.X_OK)
    unit = (root / "usr/lib/systemd/system/fleetd.service").read_text()
    assert unit == (ROOT / "systemd/fleetd.service").read_text()
    assert (root / "usr/lib/sysusers.d/fleetd.conf").exists()
    assert (root / "usr/lib/tmpfiles.d/fleetd.conf").exists()
    doc = root / "usr/share/doc/fleetd"
    clone = built.parent.parent  # what was built: HEAD, not this working tree
    shipped = {"README.md": clone / "README.md", "CHANGELOG.md": clone / "CHANGELOG.md"}
    shipped |= {p.name: p for p in (clone / "docs").glob("*.md")}
    assert len(shipped) >= 7 and "OPERATIONS.md" in shipped
    for name, source in shipped.items():
        assert (doc / name).read_bytes() == source.read_bytes(), name
    changelog = gzip.decompress((doc / "changelog.gz").read_bytes())
    assert changelog == (clone / "CHANGELOG.md").read_bytes()
    copyright_text = (doc / "copyright").read_text()
    assert copyright_text.startswith(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
    )
    assert "Files: *\nCopyright: FleetTracker Pro\nLicense: LicenseRef-Proprietary\n" in (
        copyright_text
    )
    # Every bundled distribution, with its version and license as its metadata says.
    listed = dict(re.findall(r"^ (\S+) (\S+): .*$", copyright_text, re.MULTILINE))
    for dist in ("redis", "trio", "pydantic", "cryptography", "psycopg", "openpyxl"):
        assert dist in listed, sorted(listed)
    assert "fleetd" not in listed and "shiv" not in listed  # itself; a build tool
    assert " redis " + listed["redis"] + ": MIT;" in copyright_text
    assert any((doc / "licenses" / "cryptography").iterdir())
    toml = (root / "etc/fleetd/fleetd.toml").read_text()
    assert 'url = "redis://127.0.0.1:6379/0"' in toml
    ctrl = tmp_path / "ctrl"
    subprocess.run(["dpkg-deb", "-e", str(built), str(ctrl)], check=True)
    for script in ("postinst", "prerm", "postrm"):
        assert os.access(ctrl / script, os.X_OK)
        subprocess.run(["sh", "-n", str(ctrl / script)], check=True)  # parses
