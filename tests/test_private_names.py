"""Nothing in the project overrides, assigns or calls a private (``_``-prefixed) name of a library.

A library's private names change without notice between releases; code that subclasses a
library class to replace ``_get_csrf_token``, or a name-mangled ``__schedule_expiry``, breaks
silently on the next release. Scanned: every ``.py`` file of models, hvqeval, study_app,
analysis, benchmarks and tests. Found by the syntax tree, so comments and strings do not count.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"models", "hvqeval", "study_app", "analysis", "benchmarks", "tests"}
# Libraries that patch the interpreter when imported (gevent's monkey-patching, via locust).
IMPORT_SIDE_EFFECTS = {"locust", "gevent"}
SCANNED = ("models", "hvqeval", "study_app", "analysis", "benchmarks", "tests")


def _library_names(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted origin of every name imported from outside the project and stdlib."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top not in PROJECT and top not in sys.stdlib_module_names:
                    names[(alias.asname or alias.name).split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            top = node.module.split(".")[0]
            if top not in PROJECT and top not in sys.stdlib_module_names:
                for alias in node.names:
                    names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _root(expr: ast.AST) -> str | None:
    while isinstance(expr, (ast.Attribute, ast.Call, ast.Subscript)):
        expr = expr.func if isinstance(expr, ast.Call) else expr.value
    return expr.id if isinstance(expr, ast.Name) else None


def _private(name: str) -> bool:
    """``_x`` and mangled ``_Class__x``; never dunders such as ``__init__``."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _library_class_has(dotted: str, name: str) -> bool:
    """True when the library class ``module.Class`` has attribute ``name`` (so defining it overrides)."""
    module, _, attribute = dotted.rpartition(".")
    if module.split(".")[0] in IMPORT_SIDE_EFFECTS:
        return False  # importing it would change this process; its subclasses define public names
    try:
        return hasattr(getattr(importlib.import_module(module), attribute), name)
    except Exception:  # noqa: BLE001 - not importable here (e.g. an optional extra)
        return False


def private_name_uses(source: str, where: str = "<source>") -> list[str]:
    """One line per override, assignment or call of a library's private name in ``source``, and
    per name-mangled ``_Class__x`` anywhere (reaching into another class's privates)."""
    tree = ast.parse(source)
    library = _library_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = [library[r] for base in node.bases if (r := _root(base)) in library]
            for item in node.body if bases else ():
                if (
                    isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and _private(item.name)
                    and (
                        "__" in item.name[1:]
                        or any(_library_class_has(b, item.name) for b in bases)
                    )
                ):
                    found.append(
                        f"{where}:{item.lineno} {node.name}.{item.name} overrides a private name "
                        f"of {bases[0]}"
                    )
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if (
                    isinstance(target, ast.Attribute)
                    and _private(target.attr)
                    and _root(target) in library
                ):
                    found.append(
                        f"{where}:{node.lineno} assigns {ast.unparse(target)}, a private name of "
                        f"{library[_root(target)]}"
                    )
        elif isinstance(node, ast.Call):
            func = node.func
            name = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            if _private(name) and _root(func) in library:
                found.append(
                    f"{where}:{node.lineno} calls {ast.unparse(func)}, a private name of "
                    f"{library[_root(func)]}"
                )
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and "__" in node.attr[1:]
            and not node.attr.endswith("__")
        ):
            found.append(
                f"{where}:{node.lineno} uses the name-mangled {node.attr} of another class"
            )
    return found


def _project_files() -> list[Path]:
    return sorted(p for folder in SCANNED for p in (ROOT / folder).rglob("*.py"))


def test_the_project_never_overrides_or_calls_private_library_names():
    found = [
        line
        for path in _project_files()
        for line in private_name_uses(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        # the CSRF subclass and the limits storage subclass of the old study app
        "from flask_wtf.csrf import CSRFProtect\nclass C(CSRFProtect):\n    def _get_csrf_token(self):\n        pass\n",
        (
            "from limits.storage import MemoryStorage\nclass M(MemoryStorage):\n"
            "    def _MemoryStorage__schedule_expiry(self):\n        self._MemoryStorage__expire_events()\n"
        ),
        "import limits\nlimits.storage._x = 1\n",
        "import sqlalchemy.orm\nsqlalchemy.orm._state_session(None)\n",
        "from flask_limiter import _extension\n_extension._check()\n",
    ],
)
def test_the_check_finds_private_names(source):
    assert private_name_uses(source)


@pytest.mark.parametrize(
    "source",
    [
        "from flask import Flask\nclass App(Flask):\n    def __init__(self):\n        super().__init__('x')\n",
        "class Mine:\n    def _helper(self):\n        return self._cache\n",
        "from sqlalchemy.orm import DeclarativeBase\nclass Base(DeclarativeBase):\n    pass\n",
        "import os\nos._exit(0)\n",  # the standard library documents os._exit
        "import torch\nclass Net(torch.nn.Module):\n    def _logits(self, x):\n        return x\n",  # its own name
    ],
)
def test_the_check_leaves_public_and_own_names_alone(source):
    assert not private_name_uses(source)
