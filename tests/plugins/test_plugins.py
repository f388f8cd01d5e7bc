"""Plugins: discovery through real entry points (dist-info folders on sys.path, or a
package pip-installed outside the source tree), [plugins] disable, the start-up errors
(duplicate job type, broken plugin, broken handler), lifecycle hooks, default
schedules, `fleetd plugins`, and the rule that plugins import only fleetd's public API."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import fleetd_env
from daemons import Fleet, cli_json, run_cli
from pool import running_pool, wait_status

from fleetd import PluginError
from fleetd.config import Config
from fleetd.engine import Engine, build_registry
from fleetd.jobs.handlers import DuplicateJobType
from fleetd.jobs.model import JobStatus, ValidationError
from fleetd.plugins.discovery import default_schedules, describe

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "plugins"


def make_plugin(site: Path, name: str, source: str, dist: str | None = None) -> str:
    """Install a one-module plugin into `site` the way pip would lay it out (a module
    and a dist-info with its entry point); returns the module's (unique) name."""
    module = f"fp_{name}_{uuid.uuid4().hex[:8]}"
    dist = dist or f"fleetd-test-{name}"
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[fleetd.plugins]\n{name} = {module}\n")
    return module


HANDLER = """
from fleetd import HandlerDefaults, JobHandler, hookimpl

class Handler(JobHandler):
    job_type = {job_type!r}
    schema = {{"type": "object", "properties": {{"n": {{"type": "integer"}}}},
              "required": ["n"], "additionalProperties": False}}
    defaults = HandlerDefaults(priority=10)

    async def run(self, ctx, data):
        return {{"double": data["n"] * 2, "plugin": {name!r}}}

@hookimpl
def fleetd_handlers():
    return [Handler()]
"""


def handler_plugin(site: Path, name: str, job_type: str) -> str:
    return make_plugin(site, name, HANDLER.format(name=name, job_type=job_type))


def with_site(env: dict[str, str], site: Path) -> dict[str, str]:
    """`env` with `site` first on the import path (before what PYTHONPATH already held)."""
    return env | {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))}


def with_disable(cfg: Config, *names: str) -> Config:
    import dataclasses

    return dataclasses.replace(cfg, plugins=dataclasses.replace(cfg.plugins, disable=names))


# -- discovery -------------------------------------------------------------------------


def test_builtins_come_through_the_entry_point_group(config: Config) -> None:
    registry = build_registry(config)
    assert registry.types() == [
        "data_cleanup", "data_export", "email_notification", "maintenance_reminder", "noop",
        "report_generation",
    ]  # fmt: skip
    assert registry.source("report_generation") == "fleetdata"
    assert registry.source("email_notification") == "email"
    body = describe(registry)
    email = next(p for p in body["plugins"] if p["name"] == "email")
    assert (email["distribution"], email["module"]) == ("fleetd", "fleetd_plugins.email")
    assert email["source"] == "entry point fleetd.plugins: email = fleetd_plugins.email"
    [jt] = email["job_types"]
    assert jt["defaults"] == {
        "priority": 5,
        "max_retries": 3,
        "timeout": 60.0,
        "sync_fallback": True,
    }
    assert jt["schema"]["required"] == ["to", "subject", "body"]


def test_a_third_party_plugin_is_found_and_runs(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    handler_plugin(site, "doubler", "double")
    monkeypatch.syspath_prepend(str(site))
    registry = build_registry(config)
    assert "double" in registry
    info = next(p for p in describe(registry)["plugins"] if p["name"] == "doubler")
    assert (info["distribution"], info["version"]) == ("fleetd-test-doubler", "1.2.3")
    assert info["job_types"][0]["defaults"]["priority"] == 10


@pytest.mark.parametrize("name", ["doubler", "double"])
def test_disable_by_plugin_or_job_type(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    handler_plugin(tmp_path / "site", "doubler", "double")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    registry = build_registry(with_disable(config, name, "noop", "fleetdata"))
    assert registry.types() == ["email_notification"]
    disabled = describe(registry)["disabled"]
    assert {"name": "noop", "kind": "plugin"} in disabled
    assert any(d["name"] == name for d in disabled)


def test_two_plugins_claiming_one_job_type_name_both(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler_plugin(tmp_path / "site", "first", "shared")
    handler_plugin(tmp_path / "site", "second", "shared")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(DuplicateJobType, match="'shared' is claimed by both 'first' and 'second'"):
        build_registry(config)
    assert "shared" in build_registry(with_disable(config, "second"))


BROKEN: dict[str, tuple[str, str]] = {
    "import": ("import no_such_module_anywhere\n", "failed to load: ModuleNotFoundError"),
    "raises": (
        "from fleetd import hookimpl\n@hookimpl\ndef fleetd_handlers():\n    raise KeyError('x')\n",
        "fleetd_handlers raised KeyError",
    ),
    "unmarked": ("def fleetd_handlers():\n    return []\n", "not marked with @fleetd.hookimpl"),
    "unknown_hook": (
        "from fleetd import hookimpl\n@hookimpl\ndef fleetd_handler():\n    return []\n",
        "unknown hook 'fleetd_handler'",
    ),
    "bad_signature": (
        "from fleetd import hookimpl\n@hookimpl\ndef fleetd_handlers(cfg):\n    return []\n",
        "failed to load: PluginValidationError",
    ),
    "not_a_list": (
        "from fleetd import hookimpl\n@hookimpl\ndef fleetd_handlers():\n    return 'x'\n",
        "must return a list, got str",
    ),
    "sync_run": (
        "from fleetd import JobHandler, hookimpl\n"
        "class H(JobHandler):\n    job_type = 'h'\n    def run(self, ctx, data): return {}\n"
        "@hookimpl\ndef fleetd_handlers():\n    return [H()]\n",
        "H (h) needs `async def run(self, ctx, data)`",
    ),
    "bad_schema": (
        "from fleetd import JobHandler, hookimpl\n"
        "class H(JobHandler):\n    job_type = 'h'\n"
        "    schema = {'type': 'object', 'properties': {'u': {'format': 'hostname'}}}\n"
        "    async def run(self, ctx, data): return {}\n"
        "@hookimpl\ndef fleetd_handlers():\n    return [H()]\n",
        "h: schema uses format(s) 'hostname' that fleetd does not check",
    ),
    "wrapper": (
        "from fleetd import hookimpl\n@hookimpl(wrapper=True)\ndef fleetd_job_started(job):\n"
        "    return (yield)\n",
        "fleetd_job_started cannot be a wrapper",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_plugin_stops_start_up_naming_it(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    source, expected = BROKEN[case]
    make_plugin(tmp_path / "site", "culprit", source)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(PluginError) as info:
        build_registry(config)
    assert "plugin 'culprit'" in str(info.value) and expected in str(info.value)
    assert "\n" not in str(info.value)
    build_registry(with_disable(config, "culprit"))  # disabling it is the way out


def test_fleetdata_without_the_builtins_extra_names_what_to_install(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules: the library is not importable (as when it is not installed).
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(PluginError) as info:
        build_registry(config)
    message = str(info.value)
    assert message.startswith("plugin 'fleetdata': ") and "\n" not in message
    assert "needs psycopg, not installed: install 'fleetd[builtins]'" in message
    assert "openpyxl" not in message  # only what is missing
    build_registry(with_disable(config, "fleetdata"))  # or turn it off


def test_one_plugin_name_from_two_packages_is_an_error(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_plugin(tmp_path / "a", "twin", HANDLER.format(name="a", job_type="t1"), "fleetd-a")
    make_plugin(tmp_path / "b", "twin", HANDLER.format(name="b", job_type="t2"), "fleetd-b")
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    with pytest.raises(PluginError, match="plugin name 'twin' is registered twice"):
        build_registry(config)


def test_an_unknown_name_in_disable_is_reported(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    build_registry(with_disable(config, "emial"))
    assert "'emial' names no installed plugin or job type" in caplog.text


# -- the command line ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("duplicate", "job type 'noop' is claimed by both 'noop' and 'dupe'"),
        ("broken", "plugin 'broken' (fp_broken_"),
    ],
)
def test_start_up_errors_are_one_line_exit_2(
    config: Config, tmp_path: Path, case: str, expected: str
) -> None:
    site = tmp_path / "site"
    if case == "duplicate":
        handler_plugin(site, "dupe", "noop")
    else:
        make_plugin(site, "broken", "raise RuntimeError('boom at import')\n")
    env = with_site(fleetd_env(config), site)
    for args in (["plugins"], ["enqueue", "noop"], ["run"]):
        done = run_cli(env, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        assert expected in done.stderr
    done = run_cli(env | {"FLEETD_PLUGINS_DISABLE": "dupe,broken"}, "plugins")
    assert done.returncode == 0, done.stderr


def test_schema_violations_are_listed_on_one_line(config: Config, engine: Engine) -> None:
    done = run_cli(
        fleetd_env(config),
        "enqueue",
        "email_notification",
        "--data",
        json.dumps({"to": ["ok@example.com", "nope"], "body": 3, "bcc": "x@", "extra": 1}),
    )
    assert done.returncode == 2
    assert done.stderr == (
        "fleetd: invalid job: data.bcc: 'x@' is not a valid e-mail address (There must be "
        "something after the @-sign.); data.body: must be a string; data.extra: unknown field; "
        "data.subject: is required; data.to[1]: 'nope' is not a valid e-mail address (An "
        "email address must have an @-sign.)\n"
    )
    assert engine.link.run_sync(engine.ops.stats)["total"] == 0


def test_bulk_enqueue_prefixes_each_field_error(config: Config) -> None:
    engine = Engine.build(config, daemon=False)
    try:
        with pytest.raises(ValidationError) as info:
            engine.ops.prepare_many(
                [{"type": "noop"}, {"type": "email_notification", "data": {"to": "a@example.com"}}]
            )
    finally:
        engine.close()
    assert [str(e) for e in info.value.errors] == [
        "jobs[1].data.body: is required",
        "jobs[1].data.subject: is required",
    ]


def test_fleetd_plugins_text_and_json(config: Config) -> None:
    env = fleetd_env(config)
    body = cli_json(env, "plugins", "--json")
    assert [p["name"] for p in body["plugins"]] == ["noop", "email", "fleetdata"]
    text = run_cli(env, "plugins").stdout
    assert "email  fleetd 0.1.0  (fleetd_plugins.email)" in text
    assert "email_notification       priority 5, max_retries 3, timeout 1m" in text
    assert "data: to*, cc, bcc, reply_to, subject*, body*, html  (* required)" in text


# -- lifecycle hooks -------------------------------------------------------------------

HOOKS = """
from fleetd import hookimpl

CALLS = []

@hookimpl
def fleetd_job_started(job):
    CALLS.append(("started", job.id, job.attempts))

@hookimpl
def fleetd_job_finished(job, result):
    CALLS.append(("finished", job.id, result))

@hookimpl
def fleetd_job_failed(job, error, will_retry):
    CALLS.append(("failed", job.id, error, will_retry))
"""

RAISING = """
from fleetd import hookimpl

@hookimpl
def fleetd_job_started(job):
    raise RuntimeError("a broken hook")

@hookimpl
def fleetd_job_failed(job):
    raise RuntimeError("another broken hook")
"""


async def test_lifecycle_hooks_run_and_a_raising_hook_breaks_nothing(
    config: Config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    module = make_plugin(tmp_path / "site", "watcher", HOOKS)
    make_plugin(tmp_path / "site", "clumsy", RAISING)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    registry = build_registry(config)
    assert registry.hooks is not None
    calls: list[Any] = sys.modules[module].CALLS
    async with running_pool(config, registry) as (engine, _):
        ok = await engine.queue.enqueue({"type": "noop", "data": {"n": 1}})
        flaky = await engine.queue.enqueue(
            {"type": "noop", "data": {"fail_attempts": 1}, "max_retries": 1}
        )
        doomed = await engine.queue.enqueue(
            {"type": "noop", "data": {"fail_attempts": 5}, "max_retries": 0}
        )
        await wait_status(engine, ok.job_id, JobStatus.COMPLETED)
        await wait_status(engine, flaky.job_id, JobStatus.COMPLETED)
        await wait_status(engine, doomed.job_id, JobStatus.FAILED)
        with trio.fail_after(5):
            while len(calls) < 8:
                await trio.sleep(0.02)
    assert ("finished", ok.job_id, {"echo": {"n": 1}}) in calls
    assert ("started", flaky.job_id, 1) in calls and ("started", flaky.job_id, 2) in calls
    failed = sorted(c for c in calls if c[0] == "failed")
    assert failed == sorted(
        [
            ("failed", flaky.job_id, "RuntimeError: noop: failing attempt 1 of 1 on request", True),
            (
                "failed",
                doomed.job_id,
                "RuntimeError: noop: failing attempt 1 of 5 on request",
                False,
            ),
        ]
    )
    assert "plugin 'clumsy': fleetd_job_started raised (ignored)" in caplog.text
    assert "plugin 'clumsy': fleetd_job_failed raised (ignored)" in caplog.text


def test_no_hooks_means_none_for_the_worker(config: Config) -> None:
    assert build_registry(config).hooks is None


# -- default schedules -----------------------------------------------------------------

SCHEDULES = """
from fleetd import hookimpl

@hookimpl
def fleetd_default_schedules(config):
    return {schedules!r}
"""


def schedules_plugin(site: Path, name: str, schedules: list[dict[str, Any]]) -> None:
    make_plugin(site, name, SCHEDULES.format(schedules=schedules))


def test_default_schedules_are_checked_and_normalised(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedules_plugin(
        tmp_path / "site",
        "sched",
        [
            {"name": "nightly-noop", "job_type": "noop", "schedule": "@daily"},
            {
                "name": "weekly-mail",
                "job_type": "email_notification",
                "schedule": "@weekly",
                "data": {"to": "ops@example.com", "subject": "Weekly", "body": "Hi"},
                "priority": "high",
                "timezone": "Europe/Berlin",
            },
        ],
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    registry = build_registry(with_disable(config, "fleetdata"))  # its own: test_fleetdata_*
    assert registry.plugins is not None
    assert default_schedules(registry.plugins) == [
        {"name": "nightly-noop", "job_type": "noop", "data": {}, "schedule": "@daily",
         "priority": 5, "timezone": "UTC"},
        {"name": "weekly-mail", "job_type": "email_notification",
         "data": {"to": "ops@example.com", "subject": "Weekly", "body": "Hi"},
         "schedule": "@weekly", "priority": 10, "timezone": "Europe/Berlin"},
    ]  # fmt: skip
    # A schedule of a disabled job type is dropped, not an error.
    registry = build_registry(with_disable(config, "noop", "fleetdata"))
    assert registry.plugins is not None
    assert [s["name"] for s in default_schedules(registry.plugins)] == ["weekly-mail"]


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ({"name": "x", "job_type": "nope", "schedule": "@daily"}, "unknown job type 'nope'"),
        (
            {"name": "x", "job_type": "email_notification", "schedule": "@daily", "data": {}},
            "data.body: is required",
        ),
        ({"name": "x", "job_type": "noop", "schedule": ""}, "'schedule' must be a non-empty"),
        ({"name": "x", "job_type": "noop", "schedule": "1h", "timezone": "Mars/Base"}, "timezone"),
        ({"name": "x", "job_type": "noop", "schedule": "1h", "every": 2}, "unknown key(s) every"),
        ({"name": "x", "job_type": "noop", "schedule": "1h", "priority": 99}, "from 1 to 20"),
    ],
)
def test_bad_default_schedules_name_the_plugin(
    config: Config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    schedule: dict[str, Any],
    expected: str,
) -> None:
    schedules_plugin(tmp_path / "site", "sched", [schedule])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(PluginError, match="plugin 'sched': default schedule 'x'") as info:
        build_registry(config)
    assert expected in str(info.value)


def test_one_schedule_name_in_two_plugins_is_an_error(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("one", "two"):
        schedules_plugin(
            tmp_path / "site", name, [{"name": "n", "job_type": "noop", "schedule": "1h"}]
        )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(PluginError, match="'n' is defined by both 'one' and 'two'"):
        build_registry(config)


# -- plugins import only fleetd's public API --------------------------------------------


def _fleetd_imports(path: Path) -> list[str]:
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("fleetd.") and node.module != "fleetd.testing":
                bad.append(f"{path.name}: from {node.module} import ...")
        elif isinstance(node, ast.Import):
            bad += [
                f"{path.name}: import {a.name}" for a in node.names if a.name.startswith("fleetd.")
            ]
    return bad


def test_plugins_import_only_the_public_api() -> None:
    files = sorted((PLUGINS / "fleetd_plugins").rglob("*.py"))
    files += sorted((PLUGINS / "example" / "fleetd_example").rglob("*.py"))
    assert len(files) >= 4
    assert [bad for f in files for bad in _fleetd_imports(f)] == []
    # and the pin itself works
    probe = Path(__file__)
    assert "test_plugins.py: from fleetd.config import ..." in _fleetd_imports(probe)


def test_the_public_api_exports_what_plugins_use() -> None:
    import fleetd

    used = set()
    for f in sorted(PLUGINS.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "fleetd":
                used |= {a.name for a in node.names}
    assert used and used <= set(fleetd.__all__)


# -- acceptance: a plugin pip-installed from outside the source tree --------------------


@pytest.mark.slow
def test_example_plugin_installed_with_pip_lists_runs_and_disables(
    config: Config, tmp_path: Path, engine: Engine
) -> None:
    source = tmp_path / "src" / "example"
    shutil.copytree(PLUGINS / "example", source, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    env = with_site(fleetd_env(config), site)

    listed = cli_json(env, "plugins", "--json")
    example = next(p for p in listed["plugins"] if p["name"] == "example")
    assert example["distribution"] == "fleetd-example-plugin"
    assert example["job_types"][0]["type"] == "trip_costs"
    assert str(site) in subprocess.run(
        [sys.executable, "-c", "import fleetd_example; print(fleetd_example.__file__)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip

    bad = run_cli(env, "enqueue", "trip_costs", "--data", '{"fuel_price": -1}')
    assert bad.returncode == 2 and "data.fuel_price: must be more than 0" in bad.stderr

    fleet = Fleet(tmp_path / "fleet")
    try:
        fleet.start(env)
        data = {"fuel_price": 1.5, "consumption_l_per_100km": 8,
                "trips": [{"vehicle_id": "v1", "distance_km": 250}]}  # fmt: skip
        done = run_cli(env, "enqueue", "trip_costs", "--data", json.dumps(data), "--wait", "--json")
        assert done.returncode == 0, done.stderr
        job = json.loads(done.stdout)["job"]
        assert (job["status"], job["priority"], job["max_retries"]) == ("completed", 1, 2)
        assert job["result"]["cost"] == 30.0
        [artifact] = job["result"]["artifacts"]
        csv_file = Path(artifact["path"])
        assert csv_file.parent == config.state_dir / "artifacts" / job["id"]
        assert csv_file.read_text().splitlines()[1] == "v1,250,20.0,30.0"
    finally:
        for proc in fleet.procs:
            proc.stop()

    off = env | {"FLEETD_PLUGINS_DISABLE": "example"}
    listed = cli_json(off, "plugins", "--json")
    assert "example" not in [p["name"] for p in listed["plugins"]]
    assert {"name": "example", "kind": "plugin"} in listed["disabled"]
    refused = run_cli(off, "enqueue", "trip_costs", "--data", json.dumps(data))
    assert refused.returncode == 2 and "unknown job type 'trip_costs'" in refused.stderr

    # The plugin's own tests pass against the installed copy, outside this repository.
    own = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:trio",
         "--rootdir", str(source), str(source / "tests")],
        env=env, cwd=source, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert own.returncode == 0, own.stdout + own.stderr
    assert "4 passed" in own.stdout
