"""Python projects built from source: a conda `python` that is this machine's real interpreter, conda
packages made from real backend wheels, a local PEP 503 simple index, and project trees for flit-core,
hatchling and setuptools — the material of the wheel-building tests, all local.

The `python` package is a venv in conda clothing: `pyvenv.cfg` names the interpreter running the tests
and `bin/pythonX.Y` execs it under its own path, so `sys.prefix` is the installed environment and
its `lib/pythonX.Y/site-packages` is what it imports (the corpus has no real CPython conda package).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Sequence

import pytest
from packaging.utils import parse_wheel_filename

from pixibuild.conda.platforms import current_subdir
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.demo.condapkg import PackageSpec, PkgFile, locked_record, write_channel
from pixibuild.demo.lockwriter import write_lock

PY = "%d.%d" % sys.version_info[:2]
PY_FULL = "%d.%d.%d" % sys.version_info[:3]
BASE_PYTHON = os.path.realpath(sys._base_executable)
BACKENDS = ("flit_core", "hatchling", "setuptools", "wheel")


def python_spec(subdir: str) -> PackageSpec:
    """conda `python` = this machine's interpreter (see the module docstring)."""
    wrapper = (f'#!/bin/bash\nexec -a "$(cd "$(dirname "$0")" && pwd)/python{PY}" {BASE_PYTHON} "$@"\n').encode()
    cfg = f"home = {os.path.dirname(BASE_PYTHON)}\ninclude-system-site-packages = false\nversion = {PY_FULL}\n"
    return PackageSpec(
        name="python", version=PY_FULL, build="h0_test_cpython", subdir=subdir,
        files=[PkgFile(f"bin/python{PY}", wrapper, mode=0o755), PkgFile("bin/python", symlink=f"python{PY}"),
               PkgFile("bin/python3", symlink=f"python{PY}"), PkgFile("pyvenv.cfg", cfg.encode()),
               PkgFile(f"lib/python{PY}/site-packages/README.txt", b"site-packages of the test python\n")])


def conda_from_wheel(wheel: Path, conda_name: str) -> PackageSpec:
    """A noarch python conda package with a wheel's files (as conda-forge repackages PyPI projects)."""
    name, version, _b, _t = parse_wheel_filename(wheel.name)
    files = []
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if not info.is_dir():
                files.append(PkgFile(f"site-packages/{info.filename}", zf.read(info)))
    return PackageSpec(name=conda_name, version=str(version), build="pyh_test_0", subdir="noarch", noarch="python",
                       depends=["python"], files=files, extra_info={})


def download_backends(dest: Path) -> Path:
    """The backend wheels (and their dependencies) via `pip download` — from pip's configured index
    and cache; skipped when that fails locally, a failure in CI."""
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(dest),
                           *BACKENDS], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        message = f"cannot download build backends with pip: {proc.stderr.strip()[-300:]}"
        if os.environ.get("PIXIBUILD_REQUIRE_TOOLS"):
            pytest.fail(message)
        pytest.skip(message)
    return dest


def write_simple_index(wheels_dir: Path, root: Path) -> Path:
    """A PEP 503 index of `wheels_dir` under `root/simple/`, files in `root/files/`; returns root."""
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    by_name: dict[str, list[Path]] = {}
    for wheel in sorted(wheels_dir.glob("*.whl")):
        target = files / wheel.name
        if not target.exists():
            target.write_bytes(wheel.read_bytes())
        by_name.setdefault(str(parse_wheel_filename(wheel.name)[0]), []).append(target)
    for name, paths in by_name.items():
        links = "".join(f'<a href="../../files/{p.name}#sha256={hashlib.sha256(p.read_bytes()).hexdigest()}">'
                        f"{p.name}</a>\n" for p in paths)
        page = root / "simple" / name / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    (root / "simple" / "index.html").write_text(
        "<!DOCTYPE html><html><body>\n" + "".join(f'<a href="{n}/">{n}</a>\n' for n in sorted(by_name))
        + "</body></html>\n")
    return root


BUILD_SYSTEMS = {
    "flit": '[build-system]\nrequires = ["flit_core>=3.2,<5"]\nbuild-backend = "flit_core.buildapi"\n',
    "hatchling": '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n',
    "setuptools": '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n',
}


def write_source(root: Path, name: str, *, backend: str = "flit", version: str = "0.1.0",
                 extra_files: dict[str, str] | None = None, extra_toml: str = "") -> Path:
    """A minimal PEP 621 project `name` at `root` with a module, a data file and a console script."""
    module = name.replace("-", "_")
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        BUILD_SYSTEMS[backend]
        + f'\n[project]\nname = "{name}"\nversion = "{version}"\ndescription = "test project {name}"\n'
        + 'requires-python = ">=3.8"\n'
        + f'\n[project.scripts]\n{name}-hello = "{module}:main"\n' + extra_toml)
    pkg = root / module
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text(f'"""{name}."""\n\n\ndef main():\n    print("hello from {name}")\n')
    (pkg / "data.txt").write_text("data\n")
    for rel, text in (extra_files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def conda_channel(root: Path, extra: Sequence[PackageSpec] = (), subdirs: Sequence[str] = ()) -> dict[str, dict[str, CondaRecord]]:
    """A channel with the test python (for this machine's platform and `subdirs`) and `extra` packages;
    returns subdir → name → locked record."""
    specs = [(python_spec(s), ".conda") for s in dict.fromkeys([current_subdir(), *subdirs])]
    specs += [(s, ".conda") for s in extra]
    write_channel(specs, root)
    records: dict[str, dict[str, CondaRecord]] = {}
    for spec, fmt in specs:
        path = root / spec.subdir / f"{spec.dist_name}{fmt}"
        records.setdefault(spec.subdir, {})[spec.name] = locked_record(spec, path)
    return records


def write_project_lock(project: Path, environments: dict, *, channel: Path, indexes: Sequence[str]) -> Path:
    return write_lock(project / "pixi.lock", environments, channels=[channel.resolve().as_uri()], indexes=indexes)


def pypi_source(name: str, location: str, version: str = "0.1.0", editable: bool = False) -> PypiRecord:
    return PypiRecord(name=name, version=version, location=location, editable=editable,
                      is_path="://" not in location)
