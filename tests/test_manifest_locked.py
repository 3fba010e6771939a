"""Manifest reading and the `--locked` check: synthetic manifests, and every real manifest+lock pair
of the corpus (pixi wrote those locks from those manifests, so they must pass — except where the
lock's own platform list shows it is stale)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import CORPUS, require_corpus
from pixibuild.errors import InputError
from pixibuild.inputs.lockfile import read_lock
from pixibuild.inputs.locked import check_locked
from pixibuild.inputs.manifest import find_manifest, read_manifest
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.demo.lockwriter import write_lock

MANIFEST = """\
[workspace]
name = "shop"
channels = ["conda-forge"]
platforms = ["linux-64", "osx-arm64"]

[dependencies]
python = "3.12.*"
zlib = { version = ">=1.3", build = "h*" }

[target.unix.dependencies]
openssl = ">=3"

[target.osx-arm64.dependencies]
libcxx = "*"

[pypi-dependencies]
requests = ">=2.30"

[feature.test.dependencies]
pytest = ">=8"
python = "3.12.1"

[feature.test.pypi-dependencies]
hypothesis = "*"

[feature.lint]
platforms = ["linux-64"]
dependencies = { ruff = "*" }

[environments]
test = { features = ["test"], solve-group = "main" }
lint = { features = ["lint"], no-default-feature = true }

[tool.pixibuild]
image = { base = "scratch" }
"""


def _conda(name: str, version: str, build: str = "h0_0", subdir: str = "linux-64") -> CondaRecord:
    url = f"https://conda.anaconda.org/conda-forge/{subdir}/{name}-{version}-{build}.conda"
    return CondaRecord(url=url, file_name=url.rsplit("/", 1)[1], subdir=subdir, name=name, version=version,
                       build=build, build_number=0, sha256="ab" * 32)


def _wheel(name: str, version: str) -> PypiRecord:
    return PypiRecord(name=name, version=version, sha256="cd" * 32,
                      location=f"https://files.pythonhosted.org/packages/{name}-{version}-py3-none-any.whl")


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    (tmp_path / "pixi.toml").write_text(MANIFEST)
    base = [_conda("python", "3.12.1"), _conda("zlib", "1.3.1", "h4ab18f5_1"), _conda("openssl", "3.3.0")]
    osx = [_conda(r.name, r.version, r.build, "osx-arm64") for r in base] + [_conda("libcxx", "18.1", "h0_0", "osx-arm64")]
    write_lock(tmp_path / "pixi.lock", {
        "default": {"linux-64": base + [_wheel("requests", "2.32.3")], "osx-arm64": osx + [_wheel("requests", "2.32.3")]},
        "test": {"linux-64": base + [_conda("pytest", "8.2.0"), _wheel("requests", "2.32.3"),
                                     _wheel("hypothesis", "6.100.0")],
                 "osx-arm64": osx + [_conda("pytest", "8.2.0", "h0_0", "osx-arm64"),
                                     _wheel("requests", "2.32.3"), _wheel("hypothesis", "6.100.0")]},
        "lint": {"linux-64": [_conda("ruff", "0.5.0")]},
    })
    return tmp_path


def test_manifest_model(shop: Path) -> None:
    m = read_manifest(shop)
    assert (m.name, m.path, m.lock_path) == ("shop", shop / "pixi.toml", shop / "pixi.lock")
    assert m.channels == ["conda-forge"] and m.platforms == ["linux-64", "osx-arm64"]
    assert sorted(m.environments) == ["default", "lint", "test"]
    assert m.environments["test"].features == ("test", "default") and m.environments["test"].solve_group == "main"
    assert m.environment_platforms("lint") == ["linux-64"]
    assert m.dependencies("default", "osx-arm64") == {
        "python": "3.12.*", "zlib": {"version": ">=1.3", "build": "h*"}, "openssl": ">=3", "libcxx": "*"}
    assert m.dependencies("test", "linux-64")["python"] == "3.12.1"  # the feature overrides default
    assert m.dependencies("lint", "linux-64") == {"ruff": "*"}
    assert m.pypi_dependencies("test", "linux-64") == {"requests": ">=2.30", "hypothesis": "*"}
    assert m.tool == {"image": {"base": "scratch"}}
    assert m.section_hash("test", "linux-64") == read_manifest(shop / "pixi.toml").section_hash("test", "linux-64")
    assert m.section_hash("test", "linux-64") != m.section_hash("default", "linux-64")


def test_locked_passes_for_every_environment(shop: Path) -> None:
    m, lock = read_manifest(shop), read_lock(shop / "pixi.lock")
    for env in m.environments:
        for platform in m.environment_platforms(env):
            check_locked(m, lock, env, platform)


@pytest.mark.parametrize("edit,expected", [
    (('python = "3.12.*"', 'python = ">=3.13"'), "python >=3.13 but lock has 3.12.1 h0_0"),
    (('build = "h*"', 'build = "py*"'), "zlib >=1.3 py* but lock has 1.3.1 h4ab18f5_1"),
    (('libcxx = "*"', 'libcxx = "*"\nllvm = "*"'), "missing conda package llvm"),
    (('requests = ">=2.30"', 'requests = "<2"'), "requests <2 but lock has 2.32.3"),
    (('requests = ">=2.30"', 'requests = "*"\nrich = "*"'), "missing pypi package rich"),
    (('channels = ["conda-forge"]', 'channels = ["bioconda"]'), "channels ['https://conda.anaconda.org/bioconda']"),
])
def test_locked_reports_what_is_not_satisfied(shop: Path, edit: tuple[str, str], expected: str) -> None:
    manifest = shop / "pixi.toml"
    assert edit[0] in MANIFEST
    manifest.write_text(MANIFEST.replace(edit[0], edit[1]))
    with pytest.raises(InputError) as error:
        check_locked(read_manifest(shop), read_lock(shop / "pixi.lock"), "default", "osx-arm64")
    message = str(error.value)
    assert expected in message and "\n" not in message
    assert message.startswith(f"{shop / 'pixi.lock'}: --locked: ")


def test_locked_missing_environment_and_platform(shop: Path) -> None:
    m, lock = read_manifest(shop), read_lock(shop / "pixi.lock")
    with pytest.raises(InputError, match="no platform 'osx-arm64'"):
        check_locked(m, lock, "lint", "osx-arm64")  # not a platform of that environment
    (shop / "pixi.toml").write_text(MANIFEST.replace("[environments]\n", "[environments]\ndocs = []\n"))
    with pytest.raises(InputError, match="no environment 'docs' in lock"):
        check_locked(read_manifest(shop), lock, "docs", "linux-64")


def test_pyproject_manifest(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("""\
[project]
name = "webapp"
dependencies = ["flask>=3", "gunicorn; sys_platform == 'linux'"]

[project.optional-dependencies]
test = ["pytest"]

[dependency-groups]
docs = ["sphinx>=7"]

[tool.pixi.workspace]
channels = ["conda-forge"]
platforms = ["linux-64"]

[tool.pixi.dependencies]
python = ">=3.12"

[tool.pixi.pypi-dependencies]
webapp = { path = ".", editable = true }

[tool.pixi.environments]
test = ["test"]
docs = ["docs"]

[tool.pixibuild]
entrypoint = ["webapp"]
""")
    m = read_manifest(tmp_path)
    assert m.path == tmp_path / "pyproject.toml" and m.name == "webapp"
    assert m.tool == {"entrypoint": ["webapp"]}
    pypi = m.pypi_dependencies("test", "linux-64")
    assert pypi["flask"] == ">=3" and pypi["pytest"] == "*" and pypi["webapp"] == {"path": ".", "editable": True}
    assert pypi["gunicorn"]["marker"] == 'sys_platform == "linux"'
    assert m.pypi_dependencies("docs", "linux-64")["sphinx"] == ">=7"


def test_pyproject_without_tool_pixi_is_not_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    with pytest.raises(InputError, match="no pixi.toml"):
        find_manifest(tmp_path)


def _corpus_pairs() -> list[str]:
    index = CORPUS / "locks" / "INDEX.tsv"
    if not index.exists():
        return ["<corpus missing>"]
    with index.open(newline="") as handle:
        rows = [row["dir"] for row in csv.DictReader(handle, delimiter="\t")]
    return [d for d in rows if (CORPUS / "locks" / d / "pixi.toml").exists()
            or (CORPUS / "locks" / d / "pyproject.toml").exists()]


@pytest.mark.corpus
@pytest.mark.parametrize("lock_dir", _corpus_pairs())
def test_corpus_locks_satisfy_their_manifests(lock_dir: str) -> None:
    directory = require_corpus("locks", lock_dir)
    try:
        manifest = read_manifest(directory)
    except InputError as exc:
        assert "no pixi.toml, or pyproject.toml with [tool.pixi]" in str(exc)  # a plain pyproject
        return
    lock = read_lock(directory / "pixi.lock")
    checked = 0
    for env in manifest.environments:
        if env not in lock.environments:
            continue
        for platform in manifest.environment_platforms(env):
            if lock.platforms and platform not in lock.platforms:
                # stale lock (written for other platform names): --locked must refuse it
                with pytest.raises(InputError, match=f"lock has no platform '{platform}'"):
                    check_locked(manifest, lock, env, platform)
                continue
            if "non-satisfiability" in lock_dir:  # pixi's own examples of locks it refuses
                with pytest.raises(InputError, match="--locked"):
                    check_locked(manifest, lock, env, platform)
                continue
            check_locked(manifest, lock, env, platform)
            checked += 1
    assert checked or not lock.environments or "non-satisfiability" in lock_dir
