"""`fleetd` commands run in the test's own process (`fleetd.cli.main`), with the
test's config in the environment: for CLI tests that read exit code, stdout and stderr.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import fleetd_env

from fleetd.cli.commands import main
from fleetd.config import Config

CliRun = Callable[..., tuple[int, str, str]]


def cli_runner(
    config: Config,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> CliRun:
    """run(*args) → (exit code, stdout, stderr) of `fleetd <command> <args>`."""
    for key, value in fleetd_env(config).items():
        if key.startswith("FLEETD_"):
            monkeypatch.setenv(key, value)

    def run(*args: str) -> tuple[int, str, str]:
        code = main([command, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run
