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

    import shutil

    # build from a copy: setuptools leaves build/lib/ behind, which must not shadow the repo's code
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "cache", "examples",
                                                                 "__pycache__", "*.egg-info", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path), str(source)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("pixibuild-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"pixibuild/rules/{p.name}" for p in (REPO / "rules").glob("*.py")}
    expected |= {f"pixibuild/{p.relative_to(REPO / 'pixibuild').as_posix()}" for p in (REPO / "pixibuild").rglob("*.py")}
    expected |= {"pixibuild/pack/executable_header.sh", "pixibuild/pack/executable_header.ps1"}  # package data
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


def _folder_imports() -> dict[str, set[str]]:
    """Stage folder → the other top-level parts of pixibuild its modules import."""
    out: dict[str, set[str]] = {}
    for path in (REPO / "pixibuild").rglob("*.py"):
        parts = path.relative_to(REPO / "pixibuild").parts
        if len(parts) == 1:
            continue
        names = {n.split(".")[1] for n in _module_imports(path) if n.count(".") >= 1}
        out.setdefault(parts[0], set()).update(names - {parts[0]})
    return out


def test_readme_architecture_table_says_what_each_folder_may_import() -> None:
    """The README's table is the house plan: every stage folder is in it, and its modules import
    nothing the table does not allow (so data flows one way: no folder imports a later stage)."""
    import re

    readme = (REPO / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)/` \| [^|]+ \| ([^|]+) \|$", readme, re.M))
    actual = _folder_imports()
    assert set(actual) <= set(rows), f"folders missing from the README table: {set(actual) - set(rows)}"
    for folder, imports in actual.items():
        allowed = {n.strip() for n in rows[folder].split(",")}
        if "every folder above" in rows[folder]:
            continue
        imports = {n for n in imports if not n.startswith("__")}  # pixibuild.__version__
        assert imports - allowed == set(), f"{folder}/ imports {imports - allowed} beyond the README"


def _module_constants() -> dict[tuple[str, str], list[str]]:
    """(NAME, value source) → the library modules that assign that UPPER_CASE name at module level."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in (REPO / "pixibuild").rglob("*.py"):
        for node in ast.parse(path.read_text(), str(path)).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            for target in targets:
                typing_name = isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "TypeVar"
                if isinstance(target, ast.Name) and target.id.isupper() and node.value is not None and not typing_name:
                    key = (target.id, ast.unparse(node.value))
                    found.setdefault(key, []).append(str(path.relative_to(REPO)))
    return found


def test_no_constant_is_defined_twice() -> None:
    """One home per fact: a constant with the same name and value in two modules drifts apart the day
    one of them changes (PACK_FORMAT_VERSION once lived in the pack writer and the reader)."""
    twice = {f"{name} = {value}": paths for (name, value), paths in _module_constants().items() if len(paths) > 1}
    assert twice == {}


def test_benchmarks_do_not_edit_sys_path() -> None:
    """Benchmarks import the installed pixibuild and their own benchlib, never a path hack."""
    offenders = [p.name for p in (REPO / "bench").glob("*.py") if "sys.path.insert" in p.read_text()]
    assert offenders == []
