"""Which locked PyPI entries are built, from what (the corpus's real `pypi: .`/`./subdir`/`git+https`
entries), and the source-tree identity that keys a wheel."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import require_tool
from pixibuild.conda.records import PypiRecord
from pixibuild.errors import InputError
from pixibuild.inputs.lockfile import read_lock
from pixibuild.pypi.sources import GitSource, SdistSource, TreeSource, parse_git_url, source_of
from pixibuild.pypi.tree import copy_snapshot, snapshot
from pixibuild.errors import BuildError


def test_git_urls_as_pixi_locks_them() -> None:
    sha = "c7c13f18a5af4c64c649881b2fe8dbd72a519c32"
    assert parse_git_url(f"git+https://github.com/encode/httpx.git?rev={sha}#{sha}") == GitSource(
        "https://github.com/encode/httpx.git", sha, sha, "")
    sub = parse_git_url("git+https://github.com/ihnorton/pixi.git?subdirectory=tests%2Fdata%2Fx&rev=ihn%2Ffix#"
                        "86fd30aa3baa9bde1491fb1468f767b93f3d5009")
    assert (sub.url, sub.rev, sub.subdirectory) == ("https://github.com/ihnorton/pixi.git", "ihn/fix", "tests/data/x")
    assert parse_git_url("git+https://h/r.git@v1.0#" + "a" * 40).rev == "v1.0"
    old = parse_git_url("git+https://github.com/psf/requests.git@0106aced5faa299e6ede89d1230bd6784f2c3660")
    assert (old.url, old.commit) == ("https://github.com/psf/requests.git", "0106aced5faa299e6ede89d1230bd6784f2c3660")
    with pytest.raises(InputError, match="full commit hash"):
        parse_git_url("git+https://h/r.git#main")
    with pytest.raises(InputError, match="inside the repository"):
        parse_git_url("git+https://h/r.git?subdirectory=../x#" + "a" * 40)


def test_corpus_pypi_sources_are_classified(corpus_locks: Path) -> None:
    """Every PyPI entry of every corpus lock: a wheel (shipped), or a tree/sdist/git source with a
    parseable location; a source directory the corpus does not carry is a one-line InputError."""
    seen = {"tree": 0, "git": 0, "sdist": 0, "wheel": 0}
    for lock_path in sorted(corpus_locks.glob("*/pixi.lock")):
        try:
            lock = read_lock(lock_path)
        except InputError:
            continue
        for env in lock.environments.values():
            for platform in env.platforms:
                for record in env.pypi_packages(platform):
                    try:
                        source = source_of(record, lock_path.parent)
                    except InputError as exc:
                        assert "does not exist" in str(exc) and "\n" not in str(exc), exc
                        seen["tree"] += 1
                        continue
                    if source is None:
                        seen["wheel"] += 1
                    elif isinstance(source, GitSource):
                        assert record.location.endswith(("#" + source.commit, "@" + source.commit))
                        seen["git"] += 1
                    elif isinstance(source, SdistSource):
                        seen["sdist"] += 1
                    else:
                        assert isinstance(source, TreeSource)
                        seen["tree"] += 1
    print(seen)
    assert seen["git"] >= 5 and seen["tree"] >= 19 and seen["wheel"] > 100, seen


def test_local_paths(tmp_path: Path) -> None:
    (tmp_path / "libs" / "common").mkdir(parents=True)
    assert source_of(PypiRecord("c", "1", "./libs/common", is_path=True), tmp_path) == TreeSource(
        (tmp_path / "libs" / "common").resolve())
    assert isinstance(source_of(PypiRecord("f", "1", "./foo.tar.gz", is_path=True), tmp_path), SdistSource)
    assert source_of(PypiRecord("w", "1", "./w-1-py3-none-any.whl", is_path=True), tmp_path) is None
    with pytest.raises(InputError, match="does not exist"):
        source_of(PypiRecord("m", "1", "./missing", is_path=True, editable=True), tmp_path)


def _tree(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("A = 1\n")
    (root / ".gitignore").write_text("*.log\nbuild/\n")
    (root / "pkg" / "x.log").write_text("ignored\n")
    (root / "build").mkdir()
    (root / "build" / "out.txt").write_text("ignored\n")
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"\0")
    return root


def test_walked_tree_honours_gitignore(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t")
    snap = snapshot(root)
    assert snap.method == "walk" and [f.rel for f in snap.files] == [".gitignore", "pkg/__init__.py"]
    digest = snap.digest
    (root / "pkg" / "y.log").write_text("still ignored\n")
    assert snapshot(root).digest == digest
    (root / "pkg" / "__init__.py").write_text("A = 2\n")
    assert snapshot(root).digest != digest


def test_git_tree_is_tracked_plus_uncommitted(tmp_path: Path) -> None:
    require_tool("git")
    root = _tree(tmp_path / "g")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", *args], cwd=root, check=True, env=env, capture_output=True)
    snap = snapshot(root)
    assert snap.method == "git" and [f.rel for f in snap.files] == [".gitignore", "pkg/__init__.py"]
    (root / "pkg" / "__init__.py").write_text("A = 3\n")  # uncommitted edit
    (root / "pkg" / "new.py").write_text("B = 1\n")  # untracked, not ignored
    edited = snapshot(root)
    assert edited.digest != snap.digest and "pkg/new.py" in [f.rel for f in edited.files]
    # the build copies exactly the snapshot, and catches a file changed since
    copy_snapshot(edited, tmp_path / "copy")
    assert (tmp_path / "copy" / "pkg" / "__init__.py").read_text() == "A = 3\n"
    assert not (tmp_path / "copy" / "build").exists()
    (root / "pkg" / "new.py").write_text("B = 2\n")
    with pytest.raises(BuildError, match="changed while the build was planned"):
        copy_snapshot(edited, tmp_path / "copy2")


def test_a_file_url_is_decoded_once(tmp_path) -> None:
    """`file:///…/a%2520b` names the directory `a%20b` (a percent sign in its name), not `a b`."""
    from pixibuild.conda.records import PypiRecord
    from pixibuild.pypi.sources import TreeSource, source_of

    odd = tmp_path / "a%20b"
    odd.mkdir()
    (odd / "pyproject.toml").write_text('[project]\nname = "odd"\nversion = "1"\n')
    url = odd.as_uri()
    assert "%2520" in url
    source = source_of(PypiRecord("odd", "1", url), tmp_path)
    assert isinstance(source, TreeSource) and source.path == odd
