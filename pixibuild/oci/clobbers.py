"""Two packages that install the same path (a clobber), in an image as in `pixibuild unpack`.

A package layer holds its package alone, so it can be shared by every image that has the package;
which package wins a path is a property of the whole environment (rattler's rule: the later one in
install order, the loser's file moved to `__clobbers__/<loser>/<path>` and its conda-meta record
saying so). So the environment layer, on top of every package layer, settles it: it carries the
winner's files at the clobbered paths, the losers' files under `__clobbers__/`, and the losers'
records — exactly what `install_environment` leaves. Environments without clobbers (nearly all)
pay only for reading the package layers' conda-meta records.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pixibuild.conda.records import CondaRecord
from pixibuild.errors import BuildError
from pixibuild.files.verified import verifying
from pixibuild.install.environment import dependency_order
from pixibuild.install.conda_meta import write_prefix_record
from pixibuild.install.link import CLOBBERS_DIR, PrefixDir, link_package
from pixibuild.install.noarch import PythonLayout
from pixibuild.store.blobs import blob_source


@dataclass(frozen=True)
class ClobberPlan:
    aside: dict[str, dict[str, str]]
    """loser → {path: __clobbers__ path}"""
    clobbered: dict[str, str]
    """path → winner"""
    roots: tuple[str, ...] = ()
    """The subtrees whose final content the environment layer carries (a clobbered path, or the
    file that replaced its parent directory)."""
    involved: tuple[str, ...] = ()
    """Packages with anything at or under a root, and the losers: linked again to settle them."""

    def __bool__(self) -> bool:
        return bool(self.clobbered)


def _installed_paths(record_json: Path) -> list[tuple[str, str]]:
    try:
        data = json.loads(record_json.read_text())
    except (OSError, ValueError) as exc:
        raise BuildError(f"cannot read the package layer's record: {exc}", path=str(record_json)) from None
    return [(p["_path"], p.get("path_type", "hardlink")) for p in (data.get("paths_data") or {}).get("paths") or []
            if p.get("path_type") != "directory"]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def plan_image_clobbers(records: Sequence[CondaRecord], conda_meta: Path) -> ClobberPlan:
    """The clobbers of an environment from its package layers' records (in `conda_meta`), in the
    order `install_environment` links the packages."""
    order = [r.name for r in dependency_order(records)]
    by_name = {r.name: r for r in records}
    planned = {name: _installed_paths(conda_meta / f"{by_name[name].dist_name}.json") for name in order}
    aside, clobbered = plan_path_clobbers(order, planned)
    if not clobbered:
        return ClobberPlan(aside, clobbered)
    non_dirs = {path for paths in planned.values() for path, _ in paths}
    candidates = set()
    for path in clobbered:
        ancestors = [posixpath.join(*path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
        candidates.add(next((a for a in ancestors if a in non_dirs), path))
    roots = tuple(sorted(r for r in candidates if not any(r != o and _under(r, o) for o in candidates)))
    involved = {n for n, moved in aside.items() if moved}
    involved |= {name for name, paths in planned.items() if any(_under(p, r) for p, _ in paths for r in roots)}
    return ClobberPlan(aside, clobbered, roots, tuple(n for n in order if n in involved))


def _copy_entry(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    if source.is_symlink():
        target.symlink_to(os.readlink(source))
    elif source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target, follow_symlinks=False)


def settle_clobbers(plan: ClobberPlan, packages: Sequence[tuple[CondaRecord, Path]], prefix_dir: Path,
                    scratch: Path, *, target_prefix: str, platform: str, python: PythonLayout | None) -> None:
    """Write into `prefix_dir` (the environment layer's view of the prefix) what settles `plan`: the
    involved packages are linked again, in install order and with their clobbers moved aside as
    `install_environment` does, into `scratch`; the roots' subtrees, the losers' `__clobbers__/`
    trees and their records are copied from there."""
    archives = {r.name: (r, Path(p)) for r, p in packages}
    staged = PrefixDir(scratch)
    # store blobs are checked as they are read, as the package layers check them
    sources = [(archives[name][0], blob_source(archives[name][1], archives[name][0].file_name)) for name in plan.involved]
    owners: dict = {}  # shared, as install_environment does: a later package moves an earlier one's file aside
    linked = {}
    with verifying(source for _, source in sources):
        for record, source in sources:
            linked[record.name] = link_package(record, source, staged, target_prefix=target_prefix,
                                               platform=platform, python=python, owners=owners)
    for name, moved in plan.aside.items():
        if moved:  # its record lists the moved paths only once every later package is linked
            write_prefix_record(staged.root, linked[name], fsync=False)
    for root in plan.roots:
        if (scratch / root).is_symlink() or (scratch / root).exists():
            _copy_entry(scratch / root, prefix_dir / root)
    for loser, moved in plan.aside.items():
        if not moved:
            continue
        _copy_entry(scratch / CLOBBERS_DIR / loser, prefix_dir / CLOBBERS_DIR / loser)
        record = archives[loser][0]
        _copy_entry(scratch / "conda-meta" / f"{record.dist_name}.json",
                    prefix_dir / "conda-meta" / f"{record.dist_name}.json")


def plan_path_clobbers(order: Sequence[str], planned: dict[str, list[tuple[str, str]]]
                       ) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Which files lose to a later package, as the installer decides while linking (rattler's rule: the
    later package wins; the same path, a file where a later package needs a directory, or files under
    a directory where a later package puts a file), from (prefix path, path type) lists by package
    name in install order: what an image reads back from its layers' conda-meta records. Returns
    (package → {path: __clobbers__ path}, clobbered path → winning package)."""
    owner: dict[str, tuple[str, str]] = {}
    dir_refs: dict[str, int] = {}
    aside: dict[str, dict[str, str]] = {name: {} for name in order}
    clobbered: dict[str, str] = {}

    def drop(path: str, winner: str) -> None:
        loser, _ = owner.pop(path)
        aside[loser][path] = f"{CLOBBERS_DIR}/{loser}/{path}"
        clobbered[path] = winner
        for anc in _ancestors(path):
            dir_refs[anc] -= 1
            if not dir_refs[anc]:
                del dir_refs[anc]

    for name in order:
        for path, kind in planned[name]:
            if path in owner:
                drop(path, name)
            for anc in _ancestors(path):
                if anc in owner and owner[anc][1] != "softlink":
                    drop(anc, name)
            if path in dir_refs:
                for other in sorted(p for p in owner if p.startswith(path + "/")):
                    drop(other, name)
            owner[path] = (name, kind)
            for anc in _ancestors(path):
                dir_refs[anc] = dir_refs.get(anc, 0) + 1
    return aside, clobbered


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]
