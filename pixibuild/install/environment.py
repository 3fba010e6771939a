"""Install a whole environment: conda packages in dependency order, then wheels, then conda-meta.

Clobbering is deterministic: packages are linked in topological order (ties by name), a later
package's file replaces an earlier one's, and the overwritten paths are reported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import InputError
from ..records import CondaRecord, PypiRecord
from .conda_meta import write_history, write_prefix_record
from .link import LinkedPackage, PrefixDir, link_package
from .noarch import PythonLayout, environment_python_version, site_packages_override


@dataclass
class InstallReport:
    """What an install did: packages linked in order, clobbered paths (path → winning package)."""

    target_dir: Path
    target_prefix: str
    packages: list[LinkedPackage] = field(default_factory=list)
    clobbered: dict[str, str] = field(default_factory=dict)
    wheels: list[str] = field(default_factory=list)

    @property
    def n_files(self) -> int:
        return sum(len(p.paths) for p in self.packages)


def _dep_name(spec: str) -> str:
    return spec.replace("=", " ").split(" ", 1)[0]


def dependency_order(records: Sequence[CondaRecord]) -> list[CondaRecord]:
    """rattler's topological order: dependencies first, deterministic whatever the input order.

    Roots (packages nothing depends on) are walked depth-first, the last root by name first, with
    dependencies visited in reverse name order; packages only reachable through a cycle follow,
    by name. A later package wins a clobbered path, exactly as in rattler.
    """
    by_name = {r.name: r for r in records}
    if len(by_name) != len(records):
        names = sorted(r.name for r in records)
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"package(s) listed twice in one environment: {', '.join(dupes)}")
    depended = {_dep_name(d) for r in records for d in r.depends}
    roots = sorted(set(by_name) - depended)
    order: list[str] = []
    visited: set[str] = set()

    def walk(start: list[str]) -> None:
        stack: list[tuple[bool, str]] = [(False, n) for n in start]
        while stack:
            install, name = stack.pop()
            if install:
                order.append(name)
                continue
            if name in visited or name not in by_name:
                continue
            visited.add(name)
            stack.append((True, name))
            stack.extend((False, d) for d in sorted(_dep_name(d) for d in by_name[name].depends))

    walk(roots)
    for name in sorted(by_name):  # cycles without a root
        if name not in visited:
            walk([name])
    return [by_name[n] for n in order]


def python_layout(records: Sequence[CondaRecord], platform: str, python_version: str | None = None) -> PythonLayout | None:
    version = python_version or environment_python_version(records)
    if version is None:
        return None
    return PythonLayout(version, platform, site_packages_override(records))


def install_package(record: CondaRecord, archive_path: Path, target_dir: Path, *, target_prefix: str | None = None,
                    python_version: str | None, platform: str, site_packages_path: str | None = None) -> LinkedPackage:
    """Install one package into `target_dir` (e.g. an image layer's staging dir), conda-meta record included."""
    target_dir = Path(target_dir)
    prefix = PrefixDir(target_dir)
    logical = target_prefix or str(prefix.root)
    layout = PythonLayout(python_version, platform, site_packages_path) if python_version else None
    linked = link_package(record, Path(archive_path), prefix, target_prefix=logical, platform=platform, python=layout)
    write_prefix_record(prefix.root, linked)
    return linked


def install_environment(packages: Sequence[tuple[CondaRecord, Path]], target_dir: Path, *,
                        target_prefix: str | None = None, wheels: Sequence[tuple[PypiRecord, Path]] = (),
                        platform: str, history: bytes = b"") -> InstallReport:
    """Install `packages` (records with their archive files) and `wheels` into `target_dir`.

    `target_prefix` is the path the environment will live at (default: `target_dir` itself).
    """
    prefix = PrefixDir(Path(target_dir))
    logical = target_prefix or str(prefix.root)
    archives = {r.name: (Path(p) if isinstance(p, (str, os.PathLike)) else p) for r, p in packages}
    records = dependency_order([r for r, _ in packages])
    layout = python_layout(records, platform)
    report = InstallReport(prefix.root, logical)
    owners: dict = {}
    for record in records:
        linked = link_package(record, archives[record.name], prefix, target_prefix=logical, platform=platform,
                              python=layout, owners=owners)
        for path in linked.clobbered:
            report.clobbered[path] = record.name
        report.packages.append(linked)
    if wheels:
        from .wheels import install_wheels

        if layout is None:
            raise InputError("PyPI wheels need a python package in the environment (No python record found.)")
        report.wheels = install_wheels([w for w in wheels], prefix.root, logical, layout)
    for linked in report.packages:
        write_prefix_record(prefix.root, linked)
    write_history(prefix.root, history)
    return report
