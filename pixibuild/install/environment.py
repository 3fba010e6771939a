"""Install a whole environment: conda packages in dependency order, then wheels, then conda-meta.

Clobbering is deterministic: packages are linked in topological order (ties by name), a later
package's file replaces an earlier one's, and the overwritten paths are reported.
"""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Sequence

from pixibuild.errors import InputError
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.install.conda_meta import write_history, write_prefix_record
from pixibuild.conda.archive import (PackageInfo, PayloadFirst, ReadAhead, Source, payload_stream, read_info,
    spool_tar_bz2)
from pixibuild.install import forked
from pixibuild.install.link import LinkedPackage, LinkedPath, PrefixDir, link_package
from pixibuild.install.wheels import install_wheels
from pixibuild.install.noarch import PythonLayout, environment_python_version, site_packages_override


_READ_AHEAD_PACKAGES = 2
"""Packages whose payload is decompressed ahead of the one being linked (each holds at most a few MiB)."""


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


def install_package(record: CondaRecord, archive_path: Path | Source, target_dir: Path, *,
                    target_prefix: str | None = None, python_version: str | None, platform: str,
                    site_packages_path: str | None = None) -> LinkedPackage:
    """Install one package into `target_dir` (e.g. an image layer's staging dir), conda-meta record included.
    The archive is a path or a source opening a stream (e.g. a store blob checked while it is read)."""
    target_dir = Path(target_dir)
    prefix = PrefixDir(target_dir)
    logical = target_prefix or str(prefix.root)
    layout = PythonLayout(python_version, platform, site_packages_path) if python_version else None
    source = archive_path if callable(archive_path) else Path(archive_path)
    linked = link_package(record, source, prefix, target_prefix=logical, platform=platform, python=layout)
    write_prefix_record(prefix.root, linked)
    return linked


def install_environment(packages: Sequence[tuple[CondaRecord, Any]], target_dir: Path, *,
                        target_prefix: str | None = None, wheels: Sequence[tuple[PypiRecord, Any]] = (),
                        platform: str, history: bytes = b"", jobs: int | None = None) -> InstallReport:
    """Install `packages` (records with their archive files) and `wheels` into `target_dir`.

    `target_prefix` is the path the environment will live at (default: `target_dir` itself).
    Worker threads (`jobs`) read info/ and decompress payloads ahead; packages are linked one after
    the other in dependency order, so a later package's file replaces an earlier one's exactly as
    in rattler, and the result never depends on `jobs` or on timing. With `jobs` > 1 in a process
    with no other thread, groups of packages that share no path are linked by two processes
    (`install/forked.py`): the same tree, sooner.
    """
    prefix = PrefixDir(Path(target_dir))
    logical = target_prefix or str(prefix.root)
    archives = {r.name: (Path(p) if isinstance(p, (str, os.PathLike)) else p) for r, p in packages}
    records = dependency_order([r for r, _ in packages])
    layout = python_layout(records, platform)
    # Threads do what releases the GIL: decompressing (every .tar.bz2 once, into a plain-tar spool;
    # each .conda's payload a few packages ahead of the linker) and reading info/. One thread links:
    # per-file work is short Python steps between system calls, and threads taking turns at the GIL
    # for each of them cost more than they overlap (bench/unpack.py). Linking starts as soon as the
    # first package's info is read, while the others are still being read.
    # As many info workers as cores (2 to 4): on 2 cores, 4 of them (plus the read-ahead workers and
    # the linker) kept the read-ahead waiting for CPU and the GIL, and the linker waiting for it.
    jobs = jobs or int(os.environ.get("PIXIBUILD_INSTALL_JOBS", "0")) or max(2, min(4, os.cpu_count() or 2))
    spool_dir = prefix.root / ".pixibuild-spool"
    spools: dict[str, Path] = {}

    def load_info(record: CondaRecord) -> PackageInfo:
        archive = archives[record.name]
        if record.file_name.endswith(".tar.bz2"):
            # Decompressed once, here in parallel, instead of once for info/ and again to link
            # (bz2 is slow, and a small package's first bz2 block is all of it).
            spool_dir.mkdir(exist_ok=True)
            archive = spools[record.name] = spool_tar_bz2(archive, record.file_name, spool_dir / f"{record.name}.tar")
        try:
            return read_info(Path(record.file_name), archive, record.file_name, early=True)
        except PayloadFirst:
            return read_info(Path(record.file_name), archive, record.file_name, early=False)

    feeds: dict[str, ReadAhead] = {}
    owners: dict[str, tuple[str, LinkedPath]] = {}
    linked: list[LinkedPackage] = []
    if jobs > 1 and len(records) > 1 and forked.can_fork():
        try:
            linked, recorded = _link_forking(records, archives, spools, load_info, prefix, logical, platform, layout,
                                             owners, jobs)
        finally:
            shutil.rmtree(spool_dir, ignore_errors=True)
        return _finish(prefix, logical, linked, wheels, layout, history, recorded=recorded)
    try:
        # Separate workers for the read-ahead: queued behind the info tasks, the next payloads would
        # only start once every info/ was read, and the linker would wait for them.
        with ThreadPoolExecutor(max_workers=jobs) as pool, \
                ThreadPoolExecutor(max_workers=1 + _READ_AHEAD_PACKAGES) as feed_pool:
            info_futures = {r.name: pool.submit(load_info, r) for r in records}

            def read_ahead(record: CondaRecord) -> None:
                """Start decompressing `record`'s payload once its info is known (spools are plain tars)."""
                future = info_futures[record.name]
                if record.name in feeds or record.file_name.endswith(".tar.bz2") or not future.done() \
                        or future.exception() is not None:
                    return
                feeds[record.name] = feed = ReadAhead(functools.partial(
                    payload_stream, archives[record.name], record.file_name, record.file_name, future.result()))
                feed_pool.submit(feed.fill)

            try:
                for i, record in enumerate(records):
                    info = _result(info_futures[record.name])
                    for upcoming in records[i:i + 1 + _READ_AHEAD_PACKAGES]:
                        read_ahead(upcoming)
                    package = link_package(record, spools.get(record.name, archives[record.name]), prefix,
                                           target_prefix=logical, platform=platform, python=layout, owners=owners,
                                           info=info, payload=feeds.pop(record.name, None))
                    linked.append(package)
                    if record.name in spools:
                        spools[record.name].unlink()
            finally:
                for feed in feeds.values():
                    feed.close()
                for future in info_futures.values():
                    future.cancel()
    finally:  # after the workers stopped: none is still writing a spool
        shutil.rmtree(spool_dir, ignore_errors=True)
    return _finish(prefix, logical, linked, wheels, layout, history)


def _finish(prefix: PrefixDir, logical: str, linked: list[LinkedPackage], wheels: Sequence[tuple[PypiRecord, Any]],
            layout: PythonLayout | None, history: bytes, *, recorded: bool = False) -> InstallReport:
    """Wheels and conda-meta, once every conda package is linked (in dependency order: a path
    clobbered twice is reported with its last winner). `recorded`: the two linking processes wrote
    the conda-meta records already."""
    clobbered = {path: package.record.name for package in linked for path in package.clobbered}
    report = InstallReport(prefix.root, logical, linked, clobbered)
    if wheels:
        if layout is None:
            raise InputError("PyPI wheels need a python package in the environment (No python record found.)")
        report.wheels = install_wheels([w for w in wheels], prefix.root, logical, layout)
    if not recorded:
        for package in report.packages:
            write_prefix_record(prefix.root, package, fsync=False)
    write_history(prefix.root, history)
    return report


def _link_forking(records: list[CondaRecord], archives: dict[str, Any], spools: dict[str, Path],
                  load_info: Callable[[CondaRecord], PackageInfo], prefix: PrefixDir, logical: str, platform: str,
                  layout: PythonLayout | None, owners: dict[str, tuple[str, LinkedPath]], jobs: int
                  ) -> tuple[list[LinkedPackage], bool]:
    """Read every package's info/ (threads), then link the packages in two processes, grouped by the
    paths they share (`install/forked.py`), each process writing the conda-meta records of its own;
    one by one here when a second process is not worth it or cannot be had. The same tree as the
    one-by-one loop, sooner. Returns the linked packages and whether their records are written."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # joined before any fork
        futures = [pool.submit(load_info, r) for r in records]
        try:
            infos = [_result(f) for f in futures]  # the first bad package in dependency order fails
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    def link_one(i: int) -> LinkedPackage:
        record = records[i]
        package = link_package(record, spools.get(record.name, archives[record.name]), prefix, target_prefix=logical,
                               platform=platform, python=layout, owners=owners, info=infos[i])
        if record.name in spools:
            spools[record.name].unlink()
        return package

    def record(packages: Sequence[LinkedPackage]) -> None:
        for package in packages:
            write_prefix_record(prefix.root, package, fsync=False)

    weights = [forked.PACKAGE_WEIGHT + len(info.paths) + (r.size or 0) // forked.ARCHIVE_BYTES_PER_WEIGHT
               for r, info in zip(records, infos)]
    units = forked.units([forked.package_paths(r, info, layout) for r, info in zip(records, infos)])
    result = forked.link_in_two(units, weights, link_one, after=record)
    if result is None:
        return [link_one(i) for i in range(len(records))], False
    linked, failure = result
    if failure is not None:
        raise failure[1]
    return [LinkedPackage(records[i], *linked[i]) for i in range(len(records))], True


def _result(future: Future) -> Any:
    """A worker's result; its exception is re-raised here, in the submitting order."""
    return future.result()
