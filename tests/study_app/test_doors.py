"""The doors between the parts (DESIGN.md): the study app reads sample sets and SQL only and
imports neither torch, ``models`` nor ``hvqeval``; analysis never imports the study app (the CLI
layer reads a study database and hands analysis a DataFrame); no test helper ships in the app."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imported_packages(folder: str) -> dict[str, set[str]]:
    """Top-level packages each module of ``folder`` imports, anywhere in it (functions too)."""
    found = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    "folder, forbidden",
    [
        ("study_app", {"torch", "torchvision", "models", "hvqeval"}),
        ("analysis", {"study_app", "torch", "models", "hvqeval"}),
    ],
)
def test_a_part_imports_nothing_behind_its_doors(folder, forbidden):
    crossings = {
        module: sorted(names & forbidden)
        for module, names in _imported_packages(folder).items()
        if names & forbidden
    }
    assert not crossings


def test_creating_and_serving_a_study_loads_none_of_the_model_stack():
    code = (
        "import sys, study_app, study_app.create, study_app.export, study_app.server; "
        "from study_app import create_app; "
        "print(sorted(m for m in ('torch', 'models', 'hvqeval') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_no_test_helper_ships_in_the_app():
    names = [p.name for p in (ROOT / "study_app").rglob("*.py")]
    assert not [n for n in names if "test" in n or n in ("loadtest.py", "conftest.py")]
    sources = " ".join(p.read_text(encoding="utf-8") for p in (ROOT / "study_app").rglob("*.py"))
    assert (
        "socket.socket(" not in sources and "http.client" not in sources
    )  # no load generator inside
