"""A pixi project as the build sees it: its manifest, its lock, and the (environment, platform)
targets to build. Every command and the doit rule set start here, so they agree on what a
project is and which packages a target contains."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from pixibuild import __version__
from pixibuild.files.atomic import atomic_write_bytes
from pixibuild.errors import InputError
from pixibuild.inputs.lockfile import LockFile, read_lock
from pixibuild.store.roots import lock_cache_root
from pixibuild.inputs.manifest import Manifest, find_manifest, read_manifest
from pixibuild.conda.records import CondaRecord, PypiRecord, record_digest
from pixibuild.inputs.platform_names import platform_renames


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
    subdir: str = ""
    """The conda subdir the packages are for: `platform` itself, unless the platform is a named one
    (lock v7: `cuda-linux-64` → linux-64)."""

    def __post_init__(self) -> None:
        if not self.subdir:
            object.__setattr__(self, "subdir", self.platform)


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


LOCK_CACHE_FORMAT = 2
"""Bumped when what the lock cache holds changes (2: lock platforms and Resolved.subdir)."""

LockPlatforms = dict[str, tuple[str, tuple[str, ...]]]
"""A v7 lock's declared platforms: name → (subdir, virtual packages as written)."""


def _resolve_lock(lock_path: Path) -> tuple[dict[tuple[str, str], Resolved], LockPlatforms]:
    lock = read_lock(lock_path)
    out: dict[tuple[str, str], Resolved] = {}
    digests: dict[int, str] = {}  # a record shared by several targets is hashed once

    def digest(record: CondaRecord | PypiRecord) -> str:
        found = digests.get(id(record))
        if found is None:
            found = digests[id(record)] = record_digest(record)
        return found

    for env_name, env in lock.environments.items():
        for platform in env.platforms:
            conda = tuple(env.conda_packages(platform))
            pypi = tuple(env.pypi_packages(platform))
            out[(env_name, platform)] = Resolved(
                env=env_name, platform=platform, conda=conda, pypi=pypi, channels=tuple(env.channels),
                conda_digests=tuple(map(digest, conda)), pypi_digests=tuple(map(digest, pypi)),
                pypi_indexes=tuple(str(u) for u in env.pypi_indexes.get("indexes") or () if isinstance(u, str)),
                subdir=env.subdir(platform))
    platforms = {name: (p.subdir, tuple(p.virtual_packages)) for name, p in lock.platforms.items()}
    return out, platforms


def resolve_lock(lock_path: Path, *, store_root: str | Path | None = None, write_cache: bool = True
                 ) -> tuple[str, dict[tuple[str, str], Resolved], LockPlatforms]:
    """Parse a lock once per content: the parsed records are cached by the lock's sha256 (and our
    version), so planning a 20-project monorepo does not re-parse YAML on every no-op run. The cache
    lives under the package store `store_root` (default: the default store), like every other cache.
    Returns the lock's sha256, its targets, and its declared (v7) platforms. `write_cache=False`: read
    the cache but never add to it (`pixibuild plan` changes nothing on disk)."""
    try:
        data = lock_path.read_bytes()
    except FileNotFoundError:
        raise InputError("lock file not found (run `pixi lock` first)", path=lock_path) from None
    digest = hashlib.sha256(data).hexdigest()
    cache = lock_cache_root(store_root)
    entry = cache / f"{digest}-{__version__}-{LOCK_CACHE_FORMAT}.pickle" if cache else None
    pending = _deferred.get(entry) if _deferred is not None and entry is not None else None
    if pending is not None:  # parsed by this process already, its cache entry not yet written
        return digest, pending[0], pending[1]
    if entry is not None and entry.is_file():
        try:
            with open(entry, "rb") as fh:
                cached = pickle.load(fh)
            if isinstance(cached, tuple) and len(cached) == 2 and isinstance(cached[0], dict):
                return digest, cached[0], cached[1]
        except Exception:  # a damaged cache entry is only a cache miss
            pass
    resolved, platforms = _resolve_lock(lock_path)
    if entry is not None and write_cache and not _has_credentials(resolved):
        if _deferred is not None:
            _deferred[entry] = (resolved, platforms)
        else:
            _write_lock_cache(entry, (resolved, platforms))
    return digest, resolved, platforms


def _write_lock_cache(entry: Path, value: tuple) -> None:
    try:
        atomic_write_bytes(entry, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), fsync=False)
    except OSError:
        pass  # a read-only store: parse again next time


_deferred: dict[Path, tuple] | None = None


def defer_lock_cache_writes() -> Callable[[], None]:
    """From now on, keep the lock cache entries this process makes and write them when the returned
    function is called: a forked planning worker sends its plan to the parent first (pickling a
    large lock's records costs as much as declaring its nodes) and writes the cache after."""
    global _deferred
    _deferred = pending = {}

    def write() -> None:
        global _deferred
        _deferred = None
        for entry, value in pending.items():
            _write_lock_cache(entry, value)
        pending.clear()

    return write


def aligned_lock(lock: LockFile, manifest: Manifest) -> LockFile:
    """`lock` with its platforms under the manifest's names (see `align_platforms`): what the
    `--locked` check compares against the manifest."""
    locked = {name: (p.subdir, tuple(p.virtual_packages)) for name, p in lock.platforms.items()}
    renames = platform_renames(locked, manifest.platform_entries) if locked else {}
    if not renames:
        return lock

    def name(platform: str) -> str:
        return renames.get(platform, platform)

    environments = {
        env_name: dataclasses.replace(
            env, platforms=[name(p) for p in env.platforms],
            platform_subdirs={name(p): s for p, s in env.platform_subdirs.items()},
            _conda={name(p): v for p, v in env._conda.items()}, _pypi={name(p): v for p, v in env._pypi.items()})
        for env_name, env in lock.environments.items()}
    platforms = {name(n): dataclasses.replace(p, name=name(n)) for n, p in lock.platforms.items()}
    return dataclasses.replace(lock, environments=environments, platforms=platforms)


def align_platforms(resolved: dict[tuple[str, str], Resolved], locked: LockPlatforms,
                    manifest: Manifest) -> dict[tuple[str, str], Resolved]:
    """The lock's targets under the manifest's platform names: pixi writes named platforms into
    pixi.lock as `p1`, `p2`… and maps them back by subdir and virtual packages on load
    (inputs/platform_names.py); so do we."""
    renames = platform_renames(locked, manifest.platform_entries) if locked else {}
    if not renames:
        return resolved
    return {(env, renames.get(platform, platform)):
            dataclasses.replace(target, platform=renames.get(platform, platform))
            for (env, platform), target in resolved.items()}


def _has_credentials(resolved: dict[tuple[str, str], Resolved]) -> bool:
    """A lock whose URLs carry user:password is never copied into the cache (secrets stay only
    where the user put them)."""
    for target in resolved.values():
        for location in [r.url for r in target.conda] + [r.location for r in target.pypi]:
            if "@" in location and "://" in location and urlsplit(location).username:
                return True
    return False


def load_project(path: str | Path = ".", *, store_root: str | Path | None = None,
                 write_cache: bool = True) -> Project:
    """A project from a manifest file or a directory holding one (pixi.toml or pyproject.toml);
    `store_root` is the package store whose lock cache is used (the CLI's --cache-dir)."""
    manifest = read_manifest(find_manifest(Path(path)))
    lock_path = manifest.lock_path
    digest, resolved, platforms = resolve_lock(lock_path, store_root=store_root, write_cache=write_cache)
    return Project(manifest=manifest, lock_path=lock_path, lock_sha256=digest,
                   resolved=align_platforms(resolved, platforms, manifest))
