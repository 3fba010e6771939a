"""Helpers for differential tests against rattler.install (the oracle): install the same archives
both ways and describe the resulting trees so they can be compared exactly."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Sequence

import rattler

from pixibuild.install.environment import install_environment
from pixibuild.conda.archive import record_from_archive
from pixibuild.demo.condapkg import PackageSpec, PkgFile, write_package

IGNORED_TOP = {"conda-meta", "CACHEDIR.TAG"}


def rattler_install(archives: Sequence[Path], prefix: Path, cache: Path, platform: str) -> None:
    async def run() -> None:
        records = [await rattler.RepoDataRecord.from_package_archive(p) for p in archives]
        await rattler.install(records, prefix, cache_dir=cache, show_progress=False,
                              platform=rattler.Subdir(platform))

    asyncio.run(run())


def our_install(archives: Sequence[Path], target_dir: Path, platform: str, target_prefix: str | None = None):
    packages = [(record_from_archive(p), p) for p in archives]
    return install_environment(packages, target_dir, platform=platform, target_prefix=target_prefix)


def tree(root: Path) -> dict[str, tuple]:
    """path → (kind, mode, symlink target or bytes) for everything outside conda-meta."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if rel.split("/", 1)[0] in IGNORED_TOP:
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", oct(st.st_mode & 0o7777))
            else:
                out[rel] = ("file", oct(st.st_mode & 0o7777), path.read_bytes())
    return out


def without_empty_clobber_dirs(t: dict[str, tuple]) -> dict[str, tuple]:
    """rattler first links a clobbering file under __clobbers__/<pkg>/ and moves it back when that
    package wins, leaving empty directories behind; we never create them. Compare without those."""
    files = [p for p, v in t.items() if v[0] != "dir"]
    return {p: v for p, v in t.items()
            if not (p.startswith("__clobbers__") and v[0] == "dir" and not any(f.startswith(p + "/") for f in files))}


def tree_diff(a: dict[str, tuple], b: dict[str, tuple], limit: int = 10) -> list[str]:
    diffs = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            diffs.append(f"{key}: rattler={str(a.get(key))[:160]} ours={str(b.get(key))[:160]}")
            if len(diffs) >= limit:
                break
    return diffs


def python_stub(out_dir: Path, subdir: str, version: str = "3.12.1") -> Path:
    """A tiny `python` package so noarch: python packages have a python to install against."""
    spec = PackageSpec("python", version, "h0_stub", subdir=subdir,
                       files=[PkgFile(f"bin/python{version.rsplit('.', 1)[0]}", b"#!/bin/sh\n", 0o755)])
    return write_package(spec, out_dir, ".conda")
