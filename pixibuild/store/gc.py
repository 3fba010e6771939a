"""The local cache's size and its garbage collection: `pixibuild cache info` and `pixibuild cache prune`.

Everything under the store root (`pixibuild.store.roots`) is a *unit* that is kept or removed whole:
a package blob (conda archives, downloaded and built wheels), an image layer (its cache entry, kept
activation files and blob), a layer blob no entry names (a base image's), a parsed lock, a built wheel's
pointer, a PyPI build environment (with the choices that name it), a git checkout, a build log, pip's
cache. A unit's last use is the newest of its files' access and modification times (pixibuild marks what
it uses, see `pixibuild.store.lease.touch`, so this works on `noatime` mounts too).

`prune` removes, least recently used first, what is older than `older_than` and what is needed to get the
total under `max_size`; never what a running build holds (`pixibuild.store.lease`), and a package blob
only under its store lock (a download of it in progress is never cut). Removal order keeps the store
sound at every moment: a layer's entry goes before its blob (a reader then misses it and builds it
again, it never finds an entry without its blob), a built wheel's pointer before its blob, a build
environment's choice files before its directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from pixibuild.errors import InputError
from pixibuild.store.blobs import Store
from pixibuild.store.lease import live_items
from pixibuild.store.roots import layer_cache_root, lock_cache_root, pypi_root, store_root

KINDS = ("package blobs", "layers", "layer blobs", "lock cache", "built wheels", "build envs", "git checkouts",
         "logs", "pip cache")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Unit:
    kind: str
    name: str
    size: int
    last_used: float
    protects: tuple[str, ...] = ()
    """Lease items that keep this unit (any one of them held by a running build)."""
    remove: Callable[[], None] = field(default=lambda: None, repr=False)


# -- sizes and times --------------------------------------------------------------------------------
def _stat(path: Path) -> tuple[int, float]:
    """(bytes, last use) of a file or a whole tree (symlinks not followed)."""
    try:
        st = path.lstat()
    except OSError:
        return 0, 0.0
    if not path.is_dir() or path.is_symlink():
        return st.st_size, max(st.st_atime, st.st_mtime)
    size, last = 0, max(st.st_atime, st.st_mtime)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            with contextlib.suppress(OSError):
                s = os.lstat(os.path.join(dirpath, name))
                if name in filenames:
                    size += s.st_size
                last = max(last, s.st_mtime)
    return size, last


def _rm(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# -- the units of each cache ------------------------------------------------------------------------
def _package_blobs(store: Store) -> list[Unit]:
    out = []
    for sha256, path in store.iter_blobs():
        size, last = _stat(path)

        def remove(sha256: str = sha256) -> None:
            with store.lock(sha256):
                store.remove(sha256)
        out.append(Unit("package blobs", sha256, size, last, (f"blob:{sha256}",), remove))
    return out


def _layers(root: Path) -> list[Unit]:
    cache = layer_cache_root(root)
    entries = sorted((cache / "layers").glob("*.json")) if (cache / "layers").is_dir() else []
    blob_of: dict[str, str | None] = {}
    for entry in entries:
        try:
            digest = json.loads(entry.read_bytes())["digest"]
            blob_of[entry.stem] = digest.split(":", 1)[1] if isinstance(digest, str) and ":" in digest else None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            blob_of[entry.stem] = None
    sharing = Counter(b for b in blob_of.values() if b)
    blobs = cache / "blobs" / "sha256"
    out = []
    for entry in entries:
        blob_hex = blob_of[entry.stem]
        blob = blobs / blob_hex if blob_hex else None
        kept = entry.with_suffix(".keep")
        size, last = _stat(entry)
        size += _stat(kept)[0] + (_stat(blob)[0] // sharing[blob_hex] if blob is not None else 0)
        last = max(last, _stat(kept)[1])

        def remove(entry: Path = entry, kept: Path = kept, blob: Path | None = blob) -> None:
            _rm(entry)  # the entry first: a reader then misses the layer, it never finds an entry without a blob
            _rm(kept)
            if blob is not None and not any(b == blob.name and (cache / "layers" / f"{e}.json").exists()
                                            for e, b in blob_of.items()):
                _rm(blob)
        out.append(Unit("layers", entry.stem, size, last, (f"layer:{entry.stem}",), remove))
    if blobs.is_dir():
        for blob in sorted(blobs.iterdir()):
            if blob.name.startswith(".") or blob.name in sharing:
                continue
            size, last = _stat(blob)
            out.append(Unit("layer blobs", blob.name, size, last, (), lambda blob=blob: _rm(blob)))
    return out


def _lock_cache(root: Path) -> list[Unit]:
    cache = lock_cache_root(root)
    if cache is None or not cache.is_dir():
        return []
    out = []
    for path in sorted(cache.iterdir()):
        if path.name.startswith("."):
            continue
        size, last = _stat(path)
        out.append(Unit("lock cache", path.name, size, last, (f"lock:{path.name.split('-', 1)[0]}",),
                        lambda path=path: _rm(path)))
    return out


def _pypi(root: Path) -> list[Unit]:
    base = pypi_root(root)
    out = []
    wheels = base / "wheels"
    if wheels.is_dir():
        for pointer in sorted(wheels.glob("*.json")):
            size, last = _stat(pointer)
            try:
                sha256 = json.loads(pointer.read_bytes())["sha256"]
            except (OSError, ValueError, KeyError, TypeError):
                sha256 = None
            protects = (f"wheel:{pointer.stem}",)
            out.append(Unit("built wheels", pointer.stem, size, last, protects, lambda p=pointer: _rm(p)))
            if isinstance(sha256, str):
                out[-1].name = f"{pointer.stem}→{sha256}"
    envs = base / "envs"
    if envs.is_dir():
        choices: dict[str, list[Path]] = {}
        for choice in envs.glob("choice-*.json"):
            try:
                python = Path(json.loads(choice.read_bytes())["python"])
                env_dir = next((p for p in [python, *python.parents] if p.parent == envs), None)
            except (OSError, ValueError, KeyError, TypeError):
                env_dir = None
            choices.setdefault(env_dir.name if env_dir else "", []).append(choice)
        for env_dir in sorted(p for p in envs.iterdir() if p.is_dir() and not p.name.startswith(".")):
            mine = choices.pop(env_dir.name, [])
            size, last = _stat(env_dir)
            for choice in mine:
                last = max(last, _stat(choice)[1])
            protects = tuple(f"env:{c.stem.removeprefix('choice-')}" for c in mine)

            def remove(env_dir: Path = env_dir, mine: list[Path] = mine) -> None:
                for choice in mine:  # the choices first: a build env node then prepares it again
                    _rm(choice)
                _rm(env_dir)
            out.append(Unit("build envs", env_dir.name, size, last, protects, remove))
        for orphans in choices.values():  # choices naming no directory here (the python lives elsewhere)
            for choice in orphans:
                size, last = _stat(choice)
                out.append(Unit("build envs", choice.name, size, last,
                                (f"env:{choice.stem.removeprefix('choice-')}",), lambda c=choice: _rm(c)))
    for kind, folder, item in (("git checkouts", "git", "git"), ("logs", "logs", None), ("pip cache", "pip-cache", None)):
        directory = base / folder
        if not directory.is_dir():
            continue
        paths = [directory] if folder == "pip-cache" else sorted(p for p in directory.iterdir() if not p.name.startswith("."))
        for path in paths:
            size, last = _stat(path)
            protects = (f"{item}:{path.name}",) if item else ()
            out.append(Unit(kind, path.name, size, last, protects, lambda p=path: _rm(p)))
    return out


def units(root: str | Path | None = None) -> list[Unit]:
    """Every unit of the store at `root`."""
    root = store_root(root)
    return [*_package_blobs(Store(root)), *_layers(root), *_lock_cache(root), *_pypi(root)]


# -- info -------------------------------------------------------------------------------------------
@dataclass
class Usage:
    by_kind: dict[str, tuple[int, int]]
    """kind → (units, bytes)."""
    other: dict[str, int]
    """Bytes not in any unit: the URL index, partial downloads, locks."""
    live_builds: int

    @property
    def total(self) -> int:
        return sum(b for _, b in self.by_kind.values()) + sum(self.other.values())


def usage(root: str | Path | None = None) -> Usage:
    root = store_root(root)
    counts: Counter = Counter()
    sizes: Counter = Counter()
    for unit in units(root):
        counts[unit.kind] += 1
        sizes[unit.kind] += unit.size
    partial = sum(p.stat().st_size for p in (root / "blobs" / "sha256").glob("*/.*") if p.is_file()) \
        if (root / "blobs" / "sha256").is_dir() else 0
    other = {"url index": _stat(root / "index")[0], "partial downloads": partial}
    _, live = live_items(root, remove_stale=False)
    return Usage({k: (counts[k], sizes[k]) for k in KINDS}, other, live)


# -- prune ------------------------------------------------------------------------------------------
@dataclass
class PruneReport:
    removed: list[Unit]
    kept_in_use: int
    live_builds: int
    before: int
    after: int


def prune(root: str | Path | None = None, *, max_size: int | None = None, older_than: float | None = None,
          everything: bool = False, dry_run: bool = False, now: float | None = None) -> PruneReport:
    """Remove least recently used units: those last used more than `older_than` seconds ago, then more until
    the total is at most `max_size` bytes (`everything`: all of them); never one a running build holds."""
    if max_size is None and older_than is None and not everything:
        raise InputError("say what to remove: --max-size SIZE, --older-than AGE or --all")
    root = store_root(root)
    now = time.time() if now is None else now
    store = Store(root)
    with store.lock("gc"):  # builds wait to take new leases until we are done
        held, live = live_items(root, remove_stale=not dry_run)
        held |= _held_blobs(root, held)
        found = units(root)
        before = sum(u.size for u in found)
        candidates = sorted((u for u in found if not any(i in held for i in u.protects)), key=lambda u: u.last_used)
        in_use = len(found) - len(candidates)
        chosen: list[Unit] = []
        total = before
        for unit in candidates:
            old = older_than is not None and unit.last_used < now - older_than
            big = max_size is not None and total > max_size
            if everything or old or big:
                chosen.append(unit)
                total -= unit.size
        if not dry_run:
            for unit in chosen:
                unit.remove()
            _drop_dangling_pointers(root)
            store.clean_stale()
        return PruneReport(chosen, in_use, live, before, total)


def _held_blobs(root: Path, held: set[str]) -> set[str]:
    """The store blobs behind held built wheels, and the layer blobs of held layers are kept with them."""
    out = set()
    for item in held:
        kind, _, name = item.partition(":")
        if kind == "wheel":
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                out.add(f"blob:{json.loads((pypi_root(root) / 'wheels' / f'{name}.json').read_bytes())['sha256']}")
    return out


def _drop_dangling_pointers(root: Path) -> None:
    """Built-wheel pointers whose blob is gone: removed, so their wheel nodes build again."""
    wheels = pypi_root(root) / "wheels"
    store = Store(root)
    for pointer in wheels.glob("*.json") if wheels.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if not store.has(json.loads(pointer.read_bytes())["sha256"]):
                _rm(pointer)


# -- the command line's sizes and ages --------------------------------------------------------------
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str, *, where: str = "--max-size") -> int:
    """`20G`, `500M`, `1.5GiB`, `100k`, `0`: K/M/G/T are powers of 1000, Ki/Mi/Gi/Ti of 1024 (a trailing B is
    allowed)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*", text.lower())
    if not match:
        raise InputError(f"{text!r} is not a size (e.g. 20G, 500M, 1.5GiB)", field=where)
    return int(float(match[1]) * _UNITS[match[2] or ""])


def parse_age(text: str, *, where: str = "--older-than") -> float:
    """`30d`, `12h`, `90m`, `2w`, `45s`."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if not match:
        raise InputError(f"{text!r} is not an age (e.g. 30d, 12h, 2w)", field=where)
    return float(match[1]) * _AGES[match[2]]


def human(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def summarize(found: Iterable[Unit]) -> str:
    counts: Counter = Counter()
    sizes: Counter = Counter()
    for unit in found:
        counts[unit.kind] += 1
        sizes[unit.kind] += unit.size
    return ", ".join(f"{counts[k]} {k} ({human(sizes[k])})" for k in KINDS if counts[k]) or "nothing"
