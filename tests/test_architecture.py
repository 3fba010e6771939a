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


def test_wheel_ships_the_rule_set_as_pixibuild_rules(tmp_path: Path) -> None:
    """A user's two-line dodo.py imports `pixibuild.rules` from the installed wheel."""
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("pixibuild-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"pixibuild/rules/{p.name}" for p in (REPO / "rules").glob("*.py")}
    expected |= {f"pixibuild/{p.relative_to(REPO / 'pixibuild').as_posix()}" for p in (REPO / "pixibuild").rglob("*.py")}
    assert expected - names == set()
