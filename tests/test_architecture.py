"""The doors between the four packages, import cycles and lint, checked on every test run.

``lint-imports`` (import-linter's CLI) checks the contracts in ``pyproject.toml``; a copy of
the tree with one forbidden import added shows that it does fail. Cycles are found with grimp,
the import-graph library import-linter is built on; it counts imports inside functions too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["models", "hvqeval", "study_app", "analysis"]

# Cycles another change on the way removes (the demo becomes a package); removed at merge.
KNOWN_CYCLES: set[tuple[str, str]] = set()

# Files whose lint findings their own pending changes clean up; emptied at merge.
LINT_PENDING = [
    "analysis/",
    "study_app/",
    "benchmarks/study_load.py",
    "hvqeval/metrics/",
    "hvqeval/results.py",
    "hvqeval/commands/report.py",
    "hvqeval/commands/study.py",
    "models/config.py",
    "tests/analysis/",
    "tests/study_app/",
    "tests/hvqeval/test_metrics_*.py",
]


def _tool(name: str) -> str:
    """The console script installed next to this interpreter (or on PATH)."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; pip install -e '.[test]'")
    return found


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    # grimp imports nothing, but it finds the packages through sys.path: put `root` first.
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [_tool("lint-imports"), "--no-cache"], cwd=root, env=env, capture_output=True, text=True
    )


def test_lint_imports_keeps_every_contract():
    result = _lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout
    assert "Contracts: 5 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("file", "line", "contract"),
    [
        ("models/ema.py", "import hvqeval.errors", "models imports none of"),
        ("analysis/plots.py", "import torch", "study_app and analysis import no torch"),
        (
            "hvqeval/sample_set.py",
            "import study_app.errors",
            "only the CLI layer of hvqeval imports study_app and analysis",
        ),
        (
            "hvqeval/reconstruction.py",
            "import models.checkpoint",
            "outside models only its public face is imported",
        ),
    ],
)
def test_lint_imports_fails_on_a_forbidden_import(tmp_path, file, line, contract):
    for name in PACKAGES:
        shutil.copytree(
            REPO_ROOT / name,
            tmp_path / name,
            ignore=shutil.ignore_patterns("__pycache__", "static", "templates"),
        )
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    assert _lint_imports(tmp_path).returncode == 0  # the copy itself keeps the contracts
    target = tmp_path / file
    target.write_text(target.read_text() + f"\n{line}  # a deliberate violation\n")

    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if " BROKEN" in row]
    assert len(broken) == 1 and broken[0].startswith(contract), result.stdout
    assert f"{file[:-3].replace('/', '.')} -> {line.split()[1]}" in result.stdout


def import_cycles(package: str) -> set[tuple[str, str]]:
    """Pairs (a, b) of modules of ``package`` where a imports b and b leads back to a."""
    graph = grimp.build_graph(package)
    cycles = set()
    for module in graph.find_descendants(package) | {package}:
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.chain_exists(importer=imported, imported=module):
                cycles.add(tuple(sorted((module, imported))))
    return cycles


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles_between_modules(package):
    assert import_cycles(package) <= KNOWN_CYCLES


def test_cycle_finder_sees_a_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "cyclic"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyclic import b\n")
    (pkg / "b.py").write_text(
        "def f():\n    from cyclic import a  # inside a function still counts\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("cyclic") == {("cyclic.a", "cyclic.b")}


def test_ruff_check_is_clean():
    exclude = ",".join(LINT_PENDING)
    result = subprocess.run(
        [_tool("ruff"), "check", "--no-cache", "--extend-exclude", exclude, "."],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
