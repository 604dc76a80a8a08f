"""The four packages import from this repository, and the CLI is wired up."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hvqeval import __version__
from hvqeval.cli import cli

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["models", "hvqeval", "study_app", "analysis"]


@pytest.mark.parametrize("name", PACKAGES)
def test_package_imports_from_this_repository(name):
    # A generic name like `models` could be shadowed by another installed distribution;
    # this fails loudly if the imported package is not the one in this checkout.
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().parent == REPO_ROOT / name


@pytest.mark.parametrize("name", PACKAGES)
def test_no_other_top_level_package_of_the_same_name_on_sys_path(name):
    others = []
    for entry in sys.path:
        candidate = Path(entry or ".").resolve() / name / "__init__.py"
        if candidate.is_file() and candidate.parent != REPO_ROOT / name:
            others.append(str(candidate))
    assert not others, f"another '{name}' package is importable: {others}"


def test_version_and_help_of_every_command():
    runner = CliRunner()
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output

    def walk(group, path):
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
        for name, sub in getattr(group, "commands", {}).items():
            walk(sub, [*path, name])

    walk(cli, [])


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "hvqeval", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and __version__ in result.stdout


def test_command_table_lists_every_command_module():
    import pkgutil

    import hvqeval.commands
    from hvqeval.cli import COMMANDS

    modules = {
        f"hvqeval.commands.{m.name}" for m in pkgutil.iter_modules(hvqeval.commands.__path__)
    }
    assert set(COMMANDS.values()) == modules
    assert all(module.rsplit(".", 1)[1] == name for name, module in COMMANDS.items())


def test_metrics_command_starts_without_the_web_app_or_torch():
    # The command table imports a command's module only when it runs; user-error types are read
    # from the modules already loaded, so `hvqeval metrics` loads neither Flask nor the study app.
    code = (
        "import sys; from hvqeval.cli import cli\n"
        "try: cli(['metrics', '--help'])\n"
        "except SystemExit as e: assert e.code == 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('flask', 'study_app', 'analysis', 'torch'))\n"
        "assert not loaded, loaded"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0, result.stderr
