"""Imports only point down: services and models know nothing of Flask or the web layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "scheduler"
FORBIDDEN = ("flask", "flask_sqlalchemy", "flask_login", "flask_wtf", "werkzeug", "scheduler.web")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


LOWER = sorted([*(PACKAGE / "services").glob("*.py"), *(PACKAGE / "models").glob("*.py")])


@pytest.mark.parametrize("path", LOWER, ids=lambda p: p.name)
def test_lower_layers_do_not_import_flask_or_the_web_layer(path):
    bad = {
        name
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    }
    assert bad == set(), f"{path.name} imports {bad}"


def test_only_jobs_knows_apscheduler():
    users = {
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if any(n.startswith("apscheduler") for n in _imports(p))
    }
    assert users <= {"jobs.py"}
