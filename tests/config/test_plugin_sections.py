"""Config sections declared by plugins (hook fleetd_config_sections): a third-party
plugin installed from a dist-info declares `[pager]`; its keys are typed, checked with
the core sections (every error at once), overridden from the environment, dumped and
shown by `fleetd config show`; a disabled plugin's section is accepted unchecked;
broken declarations name their plugin. Also: the built-ins own [email] and [data], and
loading the config imports no heavy library and nothing of the jobs package."""

from __future__ import annotations

import ast
import copy
import dataclasses
import os
import pickle
import subprocess
import sys
import textwrap
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import fleetd_env
from daemons import run_cli
from fleetd_plugins.email import EmailConfig
from fleetd_plugins.fleetdata.config import DataConfig

from fleetd import ConfigSection, setting
from fleetd.config import Config, ConfigError, config_to_dict, dump_toml, load_config
from fleetd.config.plugin_sections import declared_sections

REPO = Path(__file__).resolve().parents[2]

PAGER = """
from dataclasses import dataclass

from fleetd import ConfigSection, hookimpl, setting


@dataclass(frozen=True)
class PagerConfig:
    url: str = setting("", "where pages go; '' = nowhere")
    retries: int = setting(3, "attempts per page", min=0, max=10)
    timeout: float = setting(5.0, "time limit of one page", kind="duration", above=0)
    token: str = setting("", "API token of the pager service", secret=True)
    channels: tuple[str, ...] = setting(("ops",), "channels paged", min=1, unique=True)


@hookimpl
def fleetd_config_sections():
    return [ConfigSection("pager", PagerConfig)]
"""


def install(site: Path, name: str, source: str) -> str:
    """A one-module plugin laid out as pip would (module + dist-info with its entry
    point) in `site`; returns the module's unique name."""
    module = f"fp_cfg_{name}_{uuid.uuid4().hex[:8]}"
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[fleetd.plugins]\n{name} = {module}\n")
    return module


@pytest.fixture
def pager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The pager plugin installed on the import path; its site folder."""
    site = tmp_path / "site"
    install(site, "pager", PAGER)
    monkeypatch.syspath_prepend(str(site))
    return site


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleetd.toml"
    path.write_text(text)
    return path


def errors_of(path: Path | None, env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env)
    return info.value.errors


def pager_values(cfg: Config) -> object:
    return cfg.plugin_sections["pager"]


# -- a third-party plugin's section -----------------------------------------------------


def test_good_values_load_typed(pager: Path, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[pager]\nurl = "https://page.example.com"\nretries = 5\ntimeout = "1m30s"\n'
        'channels = ["ops", "db"]\n',
    )
    section = pager_values(load_config(path, {}))
    assert type(section).__name__ == "PagerConfig"
    assert dataclasses.asdict(section) == {  # type: ignore[call-overload]
        "url": "https://page.example.com",
        "retries": 5,
        "timeout": 90.0,
        "token": "",
        "channels": ("ops", "db"),
    }
    cfg = load_config(path, {})
    assert cfg.section(type(section)) == section  # the plugin's typed accessor
    with pytest.raises(dataclasses.FrozenInstanceError):
        section.retries = 1  # type: ignore[attr-defined]


def test_defaults_without_a_file(pager: Path) -> None:
    section = pager_values(load_config(None, {}))
    assert (section.retries, section.channels) == (3, ("ops",))  # type: ignore[attr-defined]
    assert "pager" in Config.default().plugin_sections


def test_bad_values_are_reported_with_core_errors_at_once(pager: Path, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[worker]\nconcurrency = 0\n[pager]\nretries = 11\ntimeout = "0s"\nchannels = []\n'
        "retires = 2\n",
    )
    errors = errors_of(path, {"FLEETD_PAGER_URL": "x", "FLEETD_PAGER_RETRIES": "many"})
    assert errors == [
        "worker.concurrency: must be an integer from 1 to 10000, got 0",
        "pager.retries: must be an integer from 0 to 10, got 11",
        "pager.retries (from FLEETD_PAGER_RETRIES): must be an integer from 0 to 10, got 'many'",
        "pager.timeout: must be a duration greater than 0s, got '0s'",
        "pager.channels: must list at least 1 item(s)",
        "unknown key 'pager.retires' (did you mean 'pager.retries'?)",
    ]


def test_env_overrides_the_plugin_section(pager: Path, tmp_path: Path) -> None:
    path = write(tmp_path, "[pager]\nretries = 1\n")
    env = {
        "FLEETD_PAGER_RETRIES": "7",
        "FLEETD_PAGER_CHANNELS": "ops, fleet",
        "FLEETD_PAGER_TIMEOUT": "250ms",
    }
    section = pager_values(load_config(path, env))
    assert section.retries == 7  # type: ignore[attr-defined]
    assert section.channels == ("ops", "fleet")  # type: ignore[attr-defined]
    assert section.timeout == 0.25  # type: ignore[attr-defined]
    [error] = errors_of(None, {"FLEETD_PAGER_RETRYS": "1"})
    assert error == (
        "unknown environment variable 'FLEETD_PAGER_RETRYS' (did you mean 'FLEETD_PAGER_RETRIES'?)"
    )


def test_dump_shows_and_round_trips_the_plugin_section(pager: Path, tmp_path: Path) -> None:
    cfg = load_config(None, {"FLEETD_PAGER_TOKEN": "s3cret", "FLEETD_PAGER_RETRIES": "2"})
    assert config_to_dict(cfg)["pager"] == {
        "url": "",
        "retries": 2,
        "timeout": "5s",
        "token": "s3cret",
        "channels": ["ops"],
    }
    assert load_config(write(tmp_path, dump_toml(cfg)), {}) == cfg
    shown = tomllib.loads(dump_toml(cfg, redact=True))
    assert shown["pager"]["token"] == "***"
    assert list(shown)[-3:] == ["email", "data", "pager"]  # plugin sections after the core


def test_fleetd_config_show_lists_the_plugin_section(
    pager: Path, config: Config, tmp_path: Path
) -> None:
    env = fleetd_env(config)
    env |= {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(pager), env.get("PYTHONPATH")])),
        "FLEETD_PAGER_RETRIES": "4",
    }
    done = run_cli(env, "config", "show")
    assert done.returncode == 0, done.stderr
    assert tomllib.loads(done.stdout)["pager"]["retries"] == 4
    bad = run_cli(
        env | {"FLEETD_PAGER_RETRIES": "40", "FLEETD_WORKER_LEASE": "1"}, "config", "check"
    )
    assert bad.returncode == 2
    assert "pager.retries (from FLEETD_PAGER_RETRIES)" in bad.stderr
    assert "worker.lease (from FLEETD_WORKER_LEASE)" in bad.stderr


def test_a_disabled_plugins_section_is_accepted_unchecked(pager: Path, tmp_path: Path) -> None:
    path = write(tmp_path, '[plugins]\ndisable = ["pager"]\n[pager]\nretries = 99\nnope = 1\n')
    cfg = load_config(path, {"FLEETD_PAGER_RETRIES": "x"})
    assert "pager" not in cfg.plugin_sections and "pager" not in config_to_dict(cfg)
    # By environment too; and an unknown section is still refused.
    env = {"FLEETD_PLUGINS_DISABLE": "pager"}
    assert load_config(write(tmp_path, "[pager]\nretries = 99\n"), env).plugins.disable == (
        "pager",
    )
    assert errors_of(write(tmp_path, "[pagr]\n"), env) == ["unknown section 'pagr'"]


def test_without_the_plugin_the_section_is_unknown(tmp_path: Path) -> None:
    assert errors_of(write(tmp_path, "[pager]\nretries = 1\n"), {}) == ["unknown section 'pager'"]


def test_a_plugin_that_fails_to_import_is_named_by_unknown_section_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path / "site", "pager", "raise RuntimeError('boom at import')\n" + PAGER)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    [error] = errors_of(write(tmp_path, "[pager]\n"), {})
    assert error == (
        "unknown section 'pager' (plugin(s) 'pager' failed to load: `fleetd plugins` says why)"
    )
    # Disabled, it is the way out: its section is accepted under the plugin's name.
    assert load_config(write(tmp_path, '[plugins]\ndisable = ["pager"]\n[pager]\n'), {})


BROKEN = {
    "not_a_section": ("return [{'name': 'x'}]", "expected a fleetd.ConfigSection, got dict"),
    "core_name": (
        "return [ConfigSection('worker', S)]",
        "plugin 'culprit': [worker] is a core section of fleetd",
    ),
    "bad_name": ("return [ConfigSection('My-Section', S)]", "section name 'My-Section' must be"),
    "not_frozen": ("return [ConfigSection('c', Loose)]", "schema Loose must be frozen"),
    "no_setting": ("return [ConfigSection('c', Bare)]", "n is not declared with fleetd.setting"),
    "bad_default": ("return [ConfigSection('c', Low)]", "the default of n must be an integer"),
    "bad_type": ("return [ConfigSection('c', Floaty)]", "type is not str, int, bool"),
    "raises": ("raise KeyError('k')", "fleetd_config_sections raised KeyError: 'k'"),
    "not_a_list": ("return 'c'", "fleetd_config_sections must return a list"),
}
BROKEN_MODULE = """
from dataclasses import dataclass
from fleetd import ConfigSection, hookimpl, setting

@dataclass(frozen=True)
class S:
    n: int = setting(1, "n")

@dataclass
class Loose:
    n: int = setting(1, "n")

@dataclass(frozen=True)
class Bare:
    n: int = 1

@dataclass(frozen=True)
class Low:
    n: int = setting(0, "n", min=1)

@dataclass(frozen=True)
class Floaty:
    n: float = setting(0.5, "n")

@hookimpl
def fleetd_config_sections():
    {body}
"""


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_declarations_name_their_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    body, expected = BROKEN[case]
    install(tmp_path / "site", "culprit", BROKEN_MODULE.format(body=body))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    [error] = errors_of(None, {})
    assert error.startswith("plugin 'culprit': ") and expected in error, error
    assert load_config(None, {"FLEETD_PLUGINS_DISABLE": "culprit"})  # the way out


def test_two_plugins_declaring_one_section(pager: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(pager, "pager2", PAGER)
    assert errors_of(None, {}) == ["section [pager] is declared by both 'pager' and 'pager2'"]


def test_sections_can_be_given_explicitly(tmp_path: Path) -> None:
    @dataclass(frozen=True)
    class Mine:
        level: int = setting(1, "a level", min=1, max=3)

    path = write(tmp_path, "[mine]\nlevel = 2\n")
    cfg = load_config(path, {}, sections=[ConfigSection("mine", Mine)])
    assert cfg.section(Mine) == Mine(level=2)
    # Only the given sections: the built-ins' [email] is then unknown.
    path = write(tmp_path, "[mine]\nlevel = 2\n[email]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {"FLEETD_MINE_LEVEL": "4"}, sections=[ConfigSection("mine", Mine)])
    assert info.value.errors == [
        "mine.level (from FLEETD_MINE_LEVEL): must be an integer from 1 to 3, got '4'",
        "unknown section 'email'",
    ]


# -- lazy_plugins: the CLI's commands that run no plugin code ------------------------------


def test_lazy_plugins_asks_them_only_when_the_config_names_a_section(
    pager: Path, tmp_path: Path
) -> None:
    # Core sections only: the same Config but for the plugin sections, which then answer
    # their defaults, the values a full load gives them; no plugin is asked (a broken
    # one would be an error otherwise).
    install(pager, "culprit", BROKEN_MODULE.format(body="return 3"))
    path = write(
        tmp_path,
        "[worker]\nconcurrency = 3\n[[notify]]\non = ['job.failed']\n"
        "webhook_url = 'https://h.example'\nwebhook_secret = 'sixteen-chars-long'\n",
    )
    env = {"FLEETD_REDIS_NAMESPACE": "lazy"}
    lazy = load_config(path, env, lazy_plugins=True)
    assert dict(lazy.plugin_sections) == {} and lazy.worker.concurrency == 3
    assert lazy.redis.namespace == "lazy" and len(lazy.notify) == 1
    full = load_config(path, env | {"FLEETD_PLUGINS_DISABLE": "culprit"})
    assert dataclasses.replace(full, plugin_sections={}, plugins=lazy.plugins) == lazy
    assert lazy.section(EmailConfig) == full.section(EmailConfig) == EmailConfig()
    assert errors_of(path, env)[0].startswith("plugin 'culprit': ")  # a full load asks
    # A plugin's table or variable, or an unknown one: the plugins are asked, and every
    # error is reported as by a full load.
    for text, more_env in (
        ("[pager]\nretries = 11\n", {}),
        ("", {"FLEETD_PAGER_RETRIES": "11"}),
        ("[pagr]\n", {}),
        ("stray = 1\n", {}),
    ):
        path = write(tmp_path, text)
        with pytest.raises(ConfigError) as lazy_info:
            load_config(path, env | more_env, lazy_plugins=True)
        assert lazy_info.value.errors == errors_of(path, env | more_env), text


# -- the built-ins own [email] and [data] -------------------------------------------------


def test_the_builtins_declare_email_and_data() -> None:
    found = declared_sections()
    assert found.owners == {"email": "email", "data": "fleetdata"}
    assert (found.sections["email"].schema, found.sections["data"].schema) == (
        EmailConfig,
        DataConfig,
    )
    cfg = Config.default()
    assert cfg.section(EmailConfig).mode == "outbox"
    assert cfg.section(DataConfig).export_batch == 5000


def test_section_and_with_section() -> None:
    cfg = Config.default()
    changed = cfg.with_section(dataclasses.replace(cfg.section(EmailConfig), port=2525))
    assert changed.section(EmailConfig).port == 2525 and cfg.section(EmailConfig).port == 0
    assert changed != cfg and changed.section(DataConfig) == cfg.section(DataConfig)
    # A Config made in code without plugin sections answers their defaults.
    assert Config().section(EmailConfig) == EmailConfig()
    with pytest.raises(KeyError):
        Config().with_section(EmailConfig())
    with pytest.raises(ValueError, match="core section"):
        Config(plugin_sections={"worker": EmailConfig()})
    # Read-only, and travels with the Config (copies, a pickle for another process).
    with pytest.raises(TypeError):
        changed.plugin_sections["email"] = EmailConfig()  # type: ignore[index]
    assert pickle.loads(pickle.dumps(changed)) == changed == copy.deepcopy(changed)


def test_loading_the_config_imports_no_heavy_library() -> None:
    probe = (
        "import sys; from fleetd.config import load_config; load_config(None, {}); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'psycopg', 'openpyxl', 'lxml'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert done.stdout == "[]\n"


def test_the_config_package_imports_nothing_of_the_jobs_package() -> None:
    bad = []
    for path in sorted((REPO / "fleetd" / "config").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fleetd."):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            bad += [f"{path.name}: {n}" for n in names if n.startswith(("fleetd.jobs", "fleetd_"))]
    assert bad == []
