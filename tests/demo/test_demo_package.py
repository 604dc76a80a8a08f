"""The demo package's modules depend one way: __init__ -> steps -> cuts, report -> quality -> studies -> threads, plan."""

from __future__ import annotations

import ast
from pathlib import Path

import hvqeval.demo

ORDER = [
    "plan",
    "threads",
    "studies",
    "quality",
    "report",
    "cuts",
    "steps",
    "__init__",
]  # each may import only those before it


def _demo_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):  # imports inside functions count too
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("hvqeval.demo.")
        ):
            found.add(node.module.rsplit(".", 1)[1])
        elif isinstance(node, ast.Import):
            found |= {
                a.name.rsplit(".", 1)[1] for a in node.names if a.name.startswith("hvqeval.demo.")
            }
    return found


def test_modules_import_only_the_ones_below_them():
    folder = Path(hvqeval.demo.__file__).parent
    assert sorted(p.stem for p in folder.glob("*.py")) == sorted(ORDER)
    for rank, name in enumerate(ORDER):
        imported = _demo_imports(folder / f"{name}.py")
        assert imported <= set(ORDER[:rank]), f"{name} imports {imported - set(ORDER[:rank])}"


def test_plan_needs_no_torch():
    import subprocess
    import sys

    code = "import sys, hvqeval.demo.plan; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
