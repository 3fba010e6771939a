"""The installer's worker count changes speed, never the result: the same packages installed with
1 and with 4 workers give byte-identical trees, conda-meta and clobber records included."""

from __future__ import annotations

import os
from pathlib import Path

from pixibuild.install.environment import install_environment
from pixibuild.demo.condapkg import PackageSpec, PkgFile, locked_record, write_package


def _tree(root: Path) -> dict[str, tuple]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_file():
            out[rel] = ("file", st.st_mode & 0o777, path.read_bytes())
        else:
            out[rel] = ("dir",)
    return out


def test_one_and_four_workers_install_identical_trees(tmp_path: Path) -> None:
    specs = []
    for i in range(12):
        files = [PkgFile(f"share/p{i}/data{j}.txt", f"{i}-{j} @PREFIX@\n".encode(), prefix="text") for j in range(20)]
        files.append(PkgFile("share/common/clobbered.txt", f"from p{i}\n".encode()))  # every package clobbers
        files.append(PkgFile(f"lib/libp{i}.so", symlink=f"p{i}/real.so"))
        specs.append(PackageSpec(f"p{i}", "1.0", "0", depends=(f"p{i - 1}",) if i else (), files=files))
    packages = []
    for i, spec in enumerate(specs):
        path = write_package(spec, tmp_path / "pkgs", ".conda" if i % 2 else ".tar.bz2")
        packages.append((locked_record(spec, path), path))
    trees = []
    for jobs in (1, 4):
        target = tmp_path / f"j{jobs}" / "env"
        install_environment(packages, target, target_prefix="/opt/env", platform="linux-64", jobs=jobs)
        trees.append(_tree(target))
    assert trees[0] == trees[1]
    assert trees[0]["share/common/clobbered.txt"][2] == b"from p11\n"  # dependency order: the last wins


def test_file_under_an_earlier_packages_symlink_is_deterministic(tmp_path: Path) -> None:
    """Package b installs `lib64/libb.so`; package a (a dependency of b) installs `lib64` as a symlink
    to `lib`. Packages are linked one after the other in dependency order, so every run and every
    worker count gives the same tree (threads linking packages in any order used to fail at random
    with "a non-empty directory is installed at this path")."""
    a = PackageSpec("a", "1.0", "0", files=[PkgFile("lib/liba.so", b"a\n"), PkgFile("lib64", symlink="lib")])
    b = PackageSpec("b", "1.0", "0", depends=("a",), files=[PkgFile("lib64/libb.so", b"b\n")])
    packages = []
    for spec in (b, a):  # listed in the wrong order on purpose
        path = write_package(spec, tmp_path / "pkgs", ".conda")
        packages.append((locked_record(spec, path), path))
    trees = []
    for attempt, jobs in enumerate((1, 4, 4, 4)):
        target = tmp_path / f"t{attempt}" / "env"
        install_environment(packages, target, platform="linux-64", jobs=jobs)
        trees.append(_tree(target))
    assert all(tree == trees[0] for tree in trees)
    assert b"b\n" in [entry[2] for entry in trees[0].values() if entry[0] == "file"]


def test_files_put_through_a_clobbered_symlink_lose_with_it(tmp_path: Path) -> None:
    """a installs `lib64 -> lib`, a2 puts `lib64/y` through it, b replaces `lib64` by a file, c puts
    `lib64/x` under that: each later package wins its path, and what it displaced (the symlink,
    the file put through it, b's file) moves to __clobbers__ as rattler moves them."""
    specs = [PackageSpec("a", "1.0", "0", files=[PkgFile("lib/f", b"f\n"), PkgFile("lib64", symlink="lib")]),
             PackageSpec("a2", "1.0", "0", depends=("a",), files=[PkgFile("lib64/y", b"y\n")]),
             PackageSpec("b", "1.0", "0", depends=("a2",), files=[PkgFile("lib64", b"file b\n")]),
             PackageSpec("c", "1.0", "0", depends=("b",), files=[PkgFile("lib64/x", b"x\n")])]
    packages = []
    for spec in specs:
        path = write_package(spec, tmp_path / "pkgs", ".conda")
        packages.append((locked_record(spec, path), path))
    report = install_environment(packages, tmp_path / "env", platform="linux-64")
    tree = _tree(tmp_path / "env")
    assert tree["__clobbers__/a/lib64"] == ("link", "lib")
    assert tree["__clobbers__/a2/lib64/y"][2] == b"y\n" and "lib/y" not in tree
    assert tree["__clobbers__/b/lib64"][2] == b"file b\n"
    assert tree["lib64/x"][2] == b"x\n" and tree["lib/f"][2] == b"f\n"
    assert report.clobbered == {"lib64/y": "b", "lib64": "c"}
