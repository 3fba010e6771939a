"""A pixi project as the build sees it: its manifest, its lock, and the (environment, platform)
targets to build. Every command and the doit rule set start here, so they agree on what a
project is and which packages a target contains."""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

from pixibuild import __version__
from pixibuild.files.atomic import atomic_write_bytes
from pixibuild.errors import InputError
from pixibuild.inputs.lockfile import read_lock
from pixibuild.store.roots import lock_cache_root
from pixibuild.inputs.manifest import Manifest, find_manifest, read_manifest
from pixibuild.conda.records import CondaRecord, PypiRecord, record_digest


@dataclass(frozen=True)
class Resolved:
    """What one (environment, platform) target contains, in lock order."""

    env: str
    platform: str
    conda: tuple[CondaRecord, ...]
    pypi: tuple[PypiRecord, ...]
    channels: tuple[str, ...] = ()
    conda_digests: tuple[str, ...] = ()
    """`record_digest` of each conda record (computed once per lock content, then cached)."""
    pypi_digests: tuple[str, ...] = ()
    pypi_indexes: tuple[str, ...] = ()
    """The PyPI index URLs the lock resolved this environment against (its `indexes:`)."""


@dataclass
class Project:
    """A manifest and its lock, with the lock's contents resolved per target."""

    manifest: Manifest
    lock_path: Path
    lock_sha256: str
    resolved: dict[tuple[str, str], Resolved] = field(repr=False)

    @property
    def name(self) -> str:
        return self.manifest.name or self.manifest.root.name

    @property
    def root(self) -> Path:
        return self.manifest.root

    @property
    def settings(self) -> dict:
        """The `[tool.pixibuild]` table (which targets to build, image settings)."""
        return dict(self.manifest.tool or {})

    def environments(self) -> list[str]:
        return sorted({env for env, _ in self.resolved})

    def platforms(self, env: str) -> list[str]:
        return sorted(p for e, p in self.resolved if e == env)

    def target(self, env: str, platform: str) -> Resolved:
        """The locked packages of one target, or a one-line error naming what exists."""
        if (env, platform) in self.resolved:
            return self.resolved[(env, platform)]
        envs = self.environments()
        if env not in envs:
            raise InputError(f"environment '{env}' is not in the lock (available: {', '.join(envs)})",
                             path=self.lock_path, field="environments")
        raise InputError(f"platform '{platform}' is not locked for environment '{env}' "
                         f"(available: {', '.join(self.platforms(env))})", path=self.lock_path, field="platforms")

    def targets(self) -> list[tuple[str, str]]:
        """All locked (env, platform) pairs, narrowed by `[tool.pixibuild] environments/platforms`."""
        wanted_envs = self.settings.get("environments")
        wanted_platforms = self.settings.get("platforms")
        out = []
        for env, platform in sorted(self.resolved):
            if wanted_envs is not None and env not in wanted_envs:
                continue
            if wanted_platforms is not None and platform not in wanted_platforms:
                continue
            out.append((env, platform))
        return out


def _resolve_lock(lock_path: Path) -> dict[tuple[str, str], Resolved]:
    lock = read_lock(lock_path)
    out: dict[tuple[str, str], Resolved] = {}
    for env_name, env in lock.environments.items():
        for platform in env.platforms:
            conda = tuple(env.conda_packages(platform))
            pypi = tuple(env.pypi_packages(platform))
            out[(env_name, platform)] = Resolved(
                env=env_name, platform=platform, conda=conda, pypi=pypi, channels=tuple(env.channels),
                conda_digests=tuple(record_digest(r) for r in conda),
                pypi_digests=tuple(record_digest(r) for r in pypi),
                pypi_indexes=tuple(str(u) for u in env.pypi_indexes.get("indexes") or () if isinstance(u, str)))
    return out


def resolve_lock(lock_path: Path, *,
                 store_root: str | Path | None = None) -> tuple[str, dict[tuple[str, str], Resolved]]:
    """Parse a lock once per content: the parsed records are cached by the lock's sha256 (and our
    version), so planning a 20-project monorepo does not re-parse YAML on every no-op run. The cache
    lives under the package store `store_root` (default: the default store), like every other cache."""
    try:
        data = lock_path.read_bytes()
    except FileNotFoundError:
        raise InputError("lock file not found (run `pixi lock` first)", path=lock_path) from None
    digest = hashlib.sha256(data).hexdigest()
    cache = lock_cache_root(store_root)
    entry = cache / f"{digest}-{__version__}.pickle" if cache else None
    if entry is not None and entry.is_file():
        try:
            with open(entry, "rb") as fh:
                cached = pickle.load(fh)
            if isinstance(cached, dict):
                return digest, cached
        except Exception:  # a damaged cache entry is only a cache miss
            pass
    resolved = _resolve_lock(lock_path)
    if entry is not None and not _has_credentials(resolved):
        try:
            atomic_write_bytes(entry, pickle.dumps(resolved, protocol=pickle.HIGHEST_PROTOCOL), fsync=False)
        except OSError:
            pass
    return digest, resolved


def _has_credentials(resolved: dict[tuple[str, str], Resolved]) -> bool:
    """A lock whose URLs carry user:password is never copied into the cache (secrets stay only
    where the user put them)."""
    for target in resolved.values():
        for location in [r.url for r in target.conda] + [r.location for r in target.pypi]:
            if "@" in location and "://" in location and urlsplit(location).username:
                return True
    return False


def load_project(path: str | Path = ".", *, store_root: str | Path | None = None) -> Project:
    """A project from a manifest file or a directory holding one (pixi.toml or pyproject.toml);
    `store_root` is the package store whose lock cache is used (the CLI's --cache-dir)."""
    manifest = read_manifest(find_manifest(Path(path)))
    lock_path = manifest.lock_path
    digest, resolved = resolve_lock(lock_path, store_root=store_root)
    return Project(manifest=manifest, lock_path=lock_path, lock_sha256=digest, resolved=resolved)


_SKIP_DIRS = {".git", ".pixi", ".venv", "node_modules", "build", "__pycache__", "cache", "channel"}


def discover_projects(root: Path) -> list[Path]:
    """Every directory under `root` with a pixi manifest and a pixi.lock (a monorepo's projects)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        if "pixi.lock" not in filenames:
            continue
        if "pixi.toml" in filenames or "pyproject.toml" in filenames:
            found.append(Path(dirpath))
    return sorted(found)


def project_labels(projects: Iterable[Project], root: Path) -> dict[str, Project]:
    """Task-name label per project: its manifest name, or its path relative to `root` when two
    projects share a name. Labels never contain ':' (doit's separator)."""
    projects = list(projects)
    names = [p.name for p in projects]
    out: dict[str, Project] = {}
    for project in projects:
        label = project.name
        if names.count(label) > 1:
            try:
                label = project.root.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                label = project.root.as_posix()
        label = label.replace(":", "_") or "root"
        out[label] = project
    return out
