"""The plan cache: a monorepo's unchanged projects declare their nodes without reading their locks.

Planning a project (parse or unpickle its lock, resolve every target, derive every node's key) costs
~0.2 ms per node; a 100-project monorepo paid it for every project on every run. Each project's
declared nodes are kept here, in `<build>/.plan-cache`, under a *fingerprint* of everything its
declaration reads: its manifest and lock files (size, mtime, inode, ctime — and their bytes when
they changed in the last two seconds, where a timestamp cannot tell two edits apart), its label,
the kinds asked for, the host platform, the store and build dirs, SOURCE_DATE_EPOCH, pixibuild's
version; plus the extra checks a rule registered while declaring (an image's app files, a local
base image). A project whose fingerprint is unchanged gets its nodes from here — without their
actions: those are declared again, for that project only, when one of its nodes actually runs.
Projects whose keys hash source trees (PyPI sources built into wheels) are never cached.

The cache is only a cache: a damaged or foreign file is a miss, and it is written atomically.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pixibuild.files.atomic import atomic_write_bytes
from pixibuild.files.digest import json_digest

CACHE_FORMAT = 4
RACY_SECONDS = 2.0
"""A file modified this recently may change again within the same timestamp: hash its bytes too."""

Spec = tuple
"""A node without its action: (name, kind, key, outputs, deps, doc, present, where, broken)."""


def file_identity(path: Path | None, now: float | None = None) -> Any:
    """What tells a changed file from an unchanged one cheaply: (path, size, mtime, inode, ctime),
    plus its sha256 when it was modified less than RACY_SECONDS ago; None when it does not exist."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return [str(path), None]
    identity: list[Any] = [str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
    now = time.time() if now is None else now
    if now - max(st.st_mtime, st.st_ctime) < RACY_SECONDS:
        try:
            identity.append(hashlib.sha256(Path(path).read_bytes()).hexdigest())
        except OSError:
            identity.append(None)
    return identity


def is_racy(identity: Any) -> bool:
    """An identity that carries the file's bytes' hash: the file was being edited when it was taken."""
    return isinstance(identity, list) and len(identity) == 6


@dataclass
class Check:
    """A volatile input a rule read while declaring (a glob of app files, a local base image, a source
    tree's file stats): the function that reads it again and the digest of what it returned then."""

    read: Callable[[], Any]
    digest: str
    value: Any = field(default=None, compare=False, repr=False)
    """What `read` returned when declaring (not kept in the cache)."""

    def holds(self) -> bool:
        try:
            return json_digest(self.read()) == self.digest
        except Exception:  # whatever made reading fail also changes the plan: declare again
            return False

    def same_read(self, read: Callable[[], Any]) -> bool:
        mine = self.read
        if isinstance(mine, functools.partial) and isinstance(read, functools.partial):
            return (mine.func, mine.args, mine.keywords) == (read.func, read.args, read.keywords)
        return mine is read

    def __getstate__(self) -> dict:
        return {"read": self.read, "digest": self.digest}

    @classmethod
    def of(cls, read: Callable[[], Any]) -> "Check":
        value = read()
        return cls(read, json_digest(value), value)


@dataclass
class ProjectEntry:
    """A project's cached plan."""

    identity: Any
    """file_identity of its manifest and lock (names come from here without parsing the manifest)."""
    name: str | None
    fingerprint: str | None = None
    specs: list[Spec] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    images: list = field(default_factory=list)
    """The project's images as workspace layer grouping sees them (oci/grouping.ImageSet)."""
    layering: dict[str, str | None] = field(default_factory=dict)
    """Layer domain → digest of the workspace grouping decision its images were planned with."""

    def valid(self, fingerprint: str) -> bool:
        return self.fingerprint == fingerprint and all(check.holds() for check in self.checks)


class PlanCache:
    """`<build>/.plan-cache`: ProjectEntry by project directory."""

    def __init__(self, build_dir: Path, *, readonly: bool = False):
        self.path = Path(build_dir) / ".plan-cache"
        self.readonly = readonly
        self.entries: dict[str, ProjectEntry] = {}
        self.changed = False
        try:
            with open(self.path, "rb") as fh:
                data = pickle.load(fh)
            if isinstance(data, dict) and data.get("format") == (CACHE_FORMAT, _version()):
                self.entries = data["projects"]
        except Exception:  # missing, damaged or from another pixibuild: a miss
            self.entries = {}

    def get(self, project_dir: Path) -> ProjectEntry | None:
        return self.entries.get(str(project_dir))

    def put(self, project_dir: Path, entry: ProjectEntry) -> None:
        self.entries[str(project_dir)] = entry
        self.changed = True

    def forget_except(self, project_dirs: set[str]) -> None:
        """Drop projects that are no longer in the workspace."""
        for stale in set(self.entries) - project_dirs:
            del self.entries[stale]
            self.changed = True

    def save(self, *, in_background: bool = False) -> None:
        """Write the cache if it changed. `in_background`: in a forked child, while this process goes
        on (a cold monorepo's plan takes ~0.1 s to pickle, time `doit list` can use)."""
        if not self.changed or self.readonly:
            return
        self.changed = False
        if in_background:
            from pixibuild.graph.workers import fork_call

            if fork_call(self._write):
                return
        self._write()

    def _write(self) -> None:
        data = pickle.dumps({"format": (CACHE_FORMAT, _version()), "projects": self.entries},
                            protocol=pickle.HIGHEST_PROTOCOL)
        try:
            atomic_write_bytes(self.path, data, fsync=False)
        except OSError:
            pass  # a read-only build dir: plan again next time


def _version() -> str:
    from pixibuild import __version__

    return __version__
