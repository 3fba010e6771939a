"""Link the packages that share no path with any other in two processes at once.

Why: linking is short Python steps between system calls, one package after the other: on one core it
is most of an install's time (rattler spreads it over every core). Threads cannot share it (each step
needs the GIL); a forked process can. Packages are grouped by the paths they share (clobbers, a
symlinked directory another package writes through): a group is linked by one process, one package
after the other in dependency order, as clobbering needs; groups touch no path of one another, so
the result equals the one-by-one install exactly, whichever process links which group.

Forking is only safe when no other thread can hold a lock the child might need: `pixibuild unpack`
qualifies; a doit run with parallel tasks does not, and links one by one.
"""

from __future__ import annotations

import os
import pickle
import posixpath
import signal
from typing import Callable, Sequence

from pixibuild.conda.archive import PackageInfo
from pixibuild.conda.records import CondaRecord
from pixibuild.files.forks import can_fork, die_with_parent
from pixibuild.install.link import LinkedPackage, LinkedPath
from pixibuild.install.noarch import PythonLayout, parse_entry_point, relocate

MIN_WEIGHT = 500
"""Less work than this (in paths: a path is ~45 µs of linking, ~20 ms in all) that a second process could
take: forking and sending the results back would cost more than it saves."""

LinkOne = Callable[[int], LinkedPackage]
"""Links the package at this index (of the dependency-ordered records) into the prefix."""

AfterShare = Callable[[Sequence[LinkedPackage]], None]
"""Called by each process with the packages it linked, once all of them are: their units are complete,
so nothing the other process does can change them (conda-meta records are written here, in parallel)."""

PACKAGE_WEIGHT = 15
"""What linking one package costs besides its paths and bytes, in paths."""

ARCHIVE_BYTES_PER_WEIGHT = 3 << 10
"""Archive bytes that cost as much to link as one path (decompressing, writing and hashing what they
hold). Fitted on the real corpus (bench/unpack.py, one process): ~45 µs a path, ~16 ms per MB of
archive — libstdcxx-ng, 7 paths in 3.3 MB, takes half as long as ncurses' 2,910 paths."""


def package_paths(record: CondaRecord, info: PackageInfo, python: PythonLayout | None) -> tuple[set[str], set[str]]:
    """(files and symlinks, directories) a package puts into the prefix, at their prefix paths."""
    noarch_python = (info.noarch == "python" or record.noarch == "python") and python is not None
    files: set[str] = set()
    dirs: set[str] = set()
    for entry in info.paths:
        rel = relocate(entry.path, python) if noarch_python and python else entry.path
        (dirs if entry.path_type == "directory" else files).add(rel)
    if noarch_python and python:
        for text in info.entry_points:
            files.add(f"{python.bin_dir}/{parse_entry_point(record.file_name, text).command}")
    return files, dirs


def units(paths: Sequence[tuple[set[str], set[str]]]) -> list[list[int]]:
    """The packages (indices) split into units that can be linked in any order or at once: packages
    that share a path — a file or symlink of one is a path, or a parent of a path, of the other — are
    in one unit (with every package they share a path with, and so on), linked one by one in
    dependency order as clobbering needs; a package that shares none is a unit of its own. Each
    unit's indices ascend."""
    used: dict[str, set[int]] = {}  # every path a package needs, its parent directories included
    for i, (files, dirs) in enumerate(paths):
        for rel in (*files, *dirs):
            while rel and i not in used.setdefault(rel, set()):
                used[rel].add(i)
                rel = posixpath.dirname(rel)
    group = list(range(len(paths)))  # union-find: packages that share a path end up in one group

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i, (files, _) in enumerate(paths):
        for rel in files:
            for other in used.get(rel, ()):
                group[root(other)] = root(i)
    out: dict[int, list[int]] = {}
    for i in range(len(paths)):
        out.setdefault(root(i), []).append(i)
    return list(out.values())


Linked = dict[int, tuple[list[LinkedPath], list[str]]]
"""What was linked, by package index: its paths and the paths it clobbered (for LinkedPackage)."""


def link_in_two(units: Sequence[list[int]], weights: Sequence[int], link_one: LinkOne,
                after: AfterShare | None = None) -> tuple[Linked, tuple[int, BaseException] | None] | None:
    """Link the packages of `units` (see `units`), about half of the `weights` in a forked child,
    the rest here; each side links its packages in dependency order, then hands them to `after`.

    Returns what was linked, and the failure of the lowest index (None if none): the caller raises it,
    as the one-by-one install would have raised the first bad package's error. None, having linked
    nothing, when the second process would get less than MIN_WEIGHT of work, or cannot be had (another
    thread runs, fork refused): the caller links one by one."""
    unit_weights = sorted(((sum(weights[i] for i in unit), unit) for unit in units), key=lambda wu: -wu[0])
    if not unit_weights or sum(w for w, _ in unit_weights) - unit_weights[0][0] < MIN_WEIGHT or not can_fork():
        return None
    shares: list[list[int]] = [[], []]
    loads = [0, 0]
    for weight, unit in unit_weights:  # largest first, to the lighter side
        side = 0 if loads[0] <= loads[1] else 1
        shares[side] += unit
        loads[side] += weight
    mine, theirs = sorted(shares[0]), sorted(shares[1])
    try:  # for the child's prctl: imported before the fork, not in the child
        import ctypes  # noqa: F401
    except ImportError:  # a Python built without ctypes: the child then cannot ask to die with us
        pass

    parent = os.getpid()
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:  # no process to spare (RLIMIT_NPROC, memory, a sandbox): the caller links one by one
        os.close(read_end)
        os.close(write_end)
        return None
    if pid == 0:  # pragma: no cover - the child (coverage does not follow it)
        os.close(read_end)
        _child(theirs, link_one, after, write_end, parent)
    os.close(write_end)
    status = 0
    try:
        done, failure = _link_share(mine, link_one, after)
        with os.fdopen(read_end, "rb") as pipe:
            read_end = -1
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        pid = 0
    finally:
        if read_end != -1:
            os.close(read_end)
        if pid:  # interrupted (Ctrl-C) or failed here: the child stops too
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"the second linking process ended without a result (wait status {status})")
    child_done, child_failure = pickle.loads(data)
    done.update(child_done)
    failures = [f for f in (failure, child_failure) if f is not None]
    return done, min(failures, key=lambda f: f[0]) if failures else None


def _link_share(indices: Sequence[int], link_one: LinkOne, after: AfterShare | None = None
                ) -> tuple[Linked, tuple[int, BaseException] | None]:
    """Link `indices` in order, stopping at the first failure (an InputError for a bad package); then
    `after` gets them all."""
    done: Linked = {}
    packages = []
    for i in indices:
        try:
            package = link_one(i)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, which raises it
            return done, (i, exc)
        done[i] = (package.paths, package.clobbered)
        packages.append(package)
    if after is not None and indices:
        try:
            after(packages)
        except Exception as exc:  # noqa: BLE001 - as a failure of this side's first package
            return done, (indices[0], exc)
    return done, None


def _child(indices: Sequence[int], link_one: LinkOne, after: AfterShare | None, write_end: int,
           parent: int) -> None:  # pragma: no cover
    """The forked child: link, send the result, and leave without running the parent's cleanup
    (no atexit handlers, no flushing of buffers it inherited)."""
    code = 1
    try:
        die_with_parent(parent)
        result = _link_share(indices, link_one, after)
        try:
            data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # an exception that cannot be pickled: its text still gets through
            done, (i, exc) = result  # type: ignore[misc]
            data = pickle.dumps((done, (i, RuntimeError(f"{type(exc).__name__}: {exc}"))))
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(data)
        code = 0
    finally:
        os._exit(code)
