"""Structural rules of the code base that reviews would otherwise have to catch by eye."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_library_never_imports_doit() -> None:
    """pixibuild/ is a plain library; only rules/ (and dodo.py) know about doit."""
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "pixibuild").rglob("*.py") if "doit" in _imports(p)]
    assert offenders == []


def test_library_never_imports_test_oracle() -> None:
    """py-rattler is a test oracle, never the engine."""
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "pixibuild").rglob("*.py") if "rattler" in _imports(p)]
    assert offenders == []
