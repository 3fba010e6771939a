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


def _module_imports(path: Path) -> set[str]:
    """Full dotted names of the pixibuild modules `path` imports (top level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.startswith("pixibuild")}


FETCHER = {"pixibuild.store.fetch", "pixibuild.store.session"}


def test_nothing_after_verify_can_download() -> None:
    """pack/, install/, oci/ and the graph's step code read verified blobs from paths they are
    given: none of them imports the fetcher (or the fetch nodes' session)."""
    lib = REPO / "pixibuild"
    files = [*(lib / "pack").rglob("*.py"), *(lib / "install").rglob("*.py"), *(lib / "oci").rglob("*.py"),
             lib / "graph" / "steps.py"]
    offenders = {str(p.relative_to(REPO)): sorted(_module_imports(p) & FETCHER) for p in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_pack_does_not_import_the_installer() -> None:
    """Packing copies archives; it never installs them (inject reads records with conda/archive)."""
    offenders = {str(p.relative_to(REPO)): sorted(n for n in _module_imports(p) if n.startswith("pixibuild.install"))
                 for p in (REPO / "pixibuild" / "pack").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_library_module_lives_in_a_stage_folder() -> None:
    """The tree shows the pipeline: only the package's face, the CLI and the error types sit at the top."""
    top = sorted(p.name for p in (REPO / "pixibuild").glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "cli.py", "errors.py"]
