"""The global content-addressed package store, shared by every project, environment and platform.

A blob lives at `blobs/sha256/<first two hex digits>/<sha256>` and is only ever created by renaming a
fully written, fully hashed temp file from the same directory, so a crash leaves at most a dot-named
`.part` file, never a wrong blob under a real name. A small diskcache index maps a URL (stripped of
credentials) to the blob's sha256, size, md5 and ETag. Per-blob `fcntl` locks make concurrent builds
(threads or processes) on one store download each blob once.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from pixibuild.net.auth import storage_key
from pixibuild.errors import BuildError, InputError
from pixibuild.files.atomic import current_umask
from pixibuild.files.clone import try_clone
from pixibuild.files.digest import CHUNK, Hasher, hash_file
from pixibuild.files.verified import VerifiedBlob
from pixibuild.store.roots import store_root

if TYPE_CHECKING:
    from pixibuild.conda.records import CondaRecord, PypiRecord

log = logging.getLogger(__name__)

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_MD5_RE = re.compile(r"^[0-9a-f]{32}$")


def check_sha256(value: str, *, what: str = "sha256") -> str:
    """Lower-cased `value`, or InputError when it is not 64 hex digits (it names a path on disk)."""
    value = value.strip().lower()
    if not _SHA256_RE.match(value):
        raise InputError(f"not a sha256 hex digest: {value[:80]!r}", field=what)
    return value


def check_md5(value: str, *, what: str = "md5") -> str:
    value = value.strip().lower()
    if not _MD5_RE.match(value):
        raise InputError(f"not an md5 hex digest: {value[:80]!r}", field=what)
    return value


@dataclass(frozen=True)
class Mismatch:
    """Why bytes do not match what the lock expects (None when they do)."""

    algorithm: str
    expected: str
    actual: str


def compare(h: Hasher, sha256: str | None, md5: str | None, size: int | None = None, *,
            every: bool = False) -> Mismatch | None:
    """sha256 if known, else md5; size only when no hash is known (a hash already implies the size).
    With `every`, each value given is checked (the verify node holds a blob to all the lock says)."""
    found = mismatches(h, sha256, md5, size)
    if every or not found:
        return found[0] if found else None
    first = "sha256" if sha256 else "md5" if md5 else "size"
    return next((m for m in found if m.algorithm == first), None)


def mismatches(h: Hasher, sha256: str | None, md5: str | None, size: int | None = None) -> list[Mismatch]:
    """Every way the hashed bytes differ from the given sha256, md5 and size."""
    out = []
    if sha256 and h.sha256.hexdigest() != sha256.lower():
        out.append(Mismatch("sha256", sha256.lower(), h.sha256.hexdigest()))
    if md5 and h.md5.hexdigest() != md5.lower():
        out.append(Mismatch("md5", md5.lower(), h.md5.hexdigest()))
    if size is not None and h.size != size:
        out.append(Mismatch("size", str(size), str(h.size)))
    return out


@functools.lru_cache(maxsize=1 << 16)
def _location_key(location: str) -> str:
    """storage_key, remembered: planning a monorepo asks for the same package URLs target after target."""
    return storage_key(location)


@dataclass(frozen=True)
class BlobRef:
    """The store blob a node after `verify` reads: planned from the lock, resolved by looking in the
    store only. Resolving never downloads; a missing blob means its fetch node did not run."""

    label: str
    """The package's file name, for messages."""
    sha256: str | None
    md5: str | None
    size: int | None
    location: str
    """The URL index key (credential-free) that finds a blob whose lock gives no sha256."""

    @classmethod
    def of(cls, record: "CondaRecord | PypiRecord") -> "BlobRef":
        location = getattr(record, "url", None) or getattr(record, "location", "")
        return cls(record.file_name or record.name, record.sha256, record.md5, getattr(record, "size", None),
                   _location_key(location))


class Store:
    """A directory of verified blobs named by sha256, plus a URL index and cross-process locks."""

    def __init__(self, root: str | Path | None = None):
        self.root = store_root(root)
        self.blobs = self.root / "blobs" / "sha256"
        self._blobs_str = str(self.blobs)
        self._locks_dir = self.root / "locks"
        self._index = None
        self._index_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- blobs ---------------------------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        return Path(self.blob_name(sha256))

    def blob_name(self, sha256: str) -> str:
        """`blob_path` as a string: planning asks it for every package of a monorepo (14,000 of them),
        and three Path joins per package were a tenth of a cold plan's fetch declarations."""
        sha256 = check_sha256(sha256)
        return f"{self._blobs_str}/{sha256[:2]}/{sha256}"

    def partial_path(self, sha256: str) -> Path:
        """Where a download of `sha256` in progress lives (dot-named, beside the blob, kept for resume)."""
        sha256 = check_sha256(sha256)
        return self.blobs / sha256[:2] / f".{sha256}.part"

    def has(self, sha256: str, size: int | None = None) -> bool:
        """True when the blob exists (and has `size` bytes, which catches truncated blobs cheaply)."""
        try:
            st = self.blob_path(sha256).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def verify_blob(self, sha256: str) -> bool:
        """Re-hash one blob: its name must be its content."""
        path = self.blob_path(sha256)
        try:
            return hash_file(path).sha256.hexdigest() == sha256.lower()
        except FileNotFoundError:
            return False

    def resolve(self, ref: BlobRef) -> Path:
        """The verified blob `ref` names; BuildError when the store does not hold it."""
        sha256 = ref.sha256
        if not sha256:
            known = self.recall(ref.location) or {}
            if not ref.md5 or known.get("md5") == ref.md5.lower():
                sha256 = known.get("sha256")
        if sha256 and self.has(sha256):
            return self.blob_path(sha256)
        raise BuildError(f"{ref.label}: not in the package store {self.root} (its fetch node has not run, "
                         "or the blob was removed since)")

    def check(self, ref: BlobRef) -> Path:
        """Re-hash the blob of `ref` against every hash and size the lock gives (the verify node): a blob
        damaged on disk after download is caught, and removed so the next run fetches it again."""
        path = self.resolve(ref)
        h = hash_file(path)
        found = mismatches(h, ref.sha256, ref.md5, ref.size)
        if found:
            if h.sha256.hexdigest() != path.name:
                with self.lock(path.name):
                    self.remove(path.name)
            problems = "; ".join(f"{m.algorithm} expected {m.expected}, got {m.actual}" for m in found)
            raise BuildError(f"package {ref.label}: stored blob does not match the lock: {problems}")
        return path

    def remove(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.blob_path(sha256).unlink()

    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        if not self.blobs.is_dir():
            return
        for sub in sorted(self.blobs.iterdir()):
            if not sub.is_dir() or sub.name.startswith("."):
                continue
            for path in sorted(sub.iterdir()):
                if not path.name.startswith("."):
                    yield path.name, path

    def clean_stale(self, max_age: float = 24 * 3600) -> int:
        """Remove temp files of killed runs (`.*.tmp`, older than `max_age` s); resumable `.part` files stay."""
        removed = 0
        cutoff = time.time() - max_age
        if not self.blobs.is_dir():
            return 0
        for path in self.blobs.glob("*/.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def verify(self, *, remove: bool = True) -> list[str]:
        """Re-hash every blob (`--verify-cache`); return the bad ones' names, removing them if asked."""
        self.clean_stale()
        bad = []
        for name, path in self.iter_blobs():
            if _SHA256_RE.match(name) and self.verify_blob(name):
                continue
            bad.append(name)
            if remove:
                with self.lock(name):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                log.warning("removed corrupt store blob %s", name)
        return bad

    def new_temp(self, sha256: str | None = None) -> Path:
        """An empty, uniquely named temp file beside where the blob will go (same filesystem)."""
        directory = self.blobs / sha256[:2] if sha256 else self.blobs / ".incoming"
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{sha256 or 'blob'}.", suffix=".tmp", dir=directory)
        os.close(fd)
        return Path(tmp)

    def commit(self, tmp: Path, sha256: str, *, fsync: bool = True) -> Path:
        """Rename a verified temp file to its blob name (atomic; the caller has checked the hash)."""
        target = self.blob_path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        # The content is durable before the rename; the rename itself need not be (if a crash loses it, the
        # blob is simply fetched again), so no directory fsync per blob.
        os.replace(tmp, target)
        return target

    def ingest_file(self, path: str | Path, sha256: str | None = None, md5: str | None = None, *,
                    label: str | None = None) -> Path:
        """Put a local file into the store as a copy of its own (a reflink where the filesystem can),
        after verifying it.

        Never a hard link: the store must not share an inode with a file it does not own, or
        overwriting that file (a `cp` into a file:// channel) would rewrite the blob in place.
        A mismatch against `sha256` (else `md5`) raises BuildError naming `label` (default: the path)
        with expected and actual digests; nothing is left in the store.
        """
        path = Path(path)
        label = label or str(path)
        sha256 = check_sha256(sha256) if sha256 else None
        md5 = check_md5(md5) if md5 else None
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise BuildError(f"{label}: cannot read {path}: {exc.strerror}") from None
        if sha256 and self.has(sha256, size):
            return self.blob_path(sha256)
        # No lock when the name is known: two processes copying the same file each rename an identical
        # blob into place (atomic, same bytes), and a lock file per blob costs as much as the copy of a
        # small package (a file create: ~0.5 ms on a busy ext4; bench/pack.py cold).
        lock = (self.lock(f"ingest-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()}") if sha256 is None
                else contextlib.nullcontext())
        with lock:
            tmp = self.new_temp(sha256)
            try:
                h = copy_hashed(path, tmp, md5=sha256 is None)
                bad = compare(h, sha256, None if sha256 else md5)  # a sha256 decides (md5 not even computed)
                if bad:
                    raise BuildError(f"{label}: {bad.algorithm} mismatch for {path}: expected {bad.expected}, "
                                     f"got {bad.actual}")
                actual = h.sha256.hexdigest()
                if sha256 is None:
                    # Content was unknown before hashing: take that blob's lock before renaming.
                    with self.lock(actual):
                        if self.has(actual, h.size):
                            tmp.unlink()
                            return self.blob_path(actual)
                        return self.commit(tmp, actual, fsync=False)
                return self.commit(tmp, actual, fsync=False)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                raise

    # -- verified reading ----------------------------------------------------------------------
    def open_blob(self, ref: BlobRef) -> VerifiedBlob:
        """The blob `ref` names, as a source whose sha256 is checked while its consumer reads it."""
        return self.verified(self.resolve(ref), ref.label)

    def verified(self, path: Path, label: str) -> VerifiedBlob:
        """A blob of this store as a VerifiedBlob: a mismatch evicts it (the next run fetches it again)
        and fails with package, expected and actual hash."""
        sha256 = check_sha256(path.name)
        return VerifiedBlob(path, "sha256", sha256, label=label, on_mismatch=self._damaged)

    def _damaged(self, blob: VerifiedBlob, actual: str) -> BuildError:
        evicted = self.evict(blob.expected, blob.identity)
        what = "removed it from the store; the next run fetches it again" if evicted else \
            "it was replaced meanwhile"
        return BuildError(f"package {blob.label}: the package store's copy is damaged: sha256 expected "
                          f"{blob.expected}, got {actual} ({blob.path}); {what}")

    def evict(self, sha256: str, identity: tuple[int, int] | None = None) -> bool:
        """Remove a damaged blob under its lock; with `identity` (st_dev, st_ino) only that very file,
        so a good copy another process committed meanwhile stays."""
        path = self.blob_path(sha256)
        with self.lock(sha256):
            try:
                st = path.stat()
            except FileNotFoundError:
                return True
            if identity is not None and (st.st_dev, st.st_ino) != identity:
                return False
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return True

    # -- locks ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str, *, shared: bool = False) -> Iterator[None]:
        """Exclusive cross-process (and cross-thread: one open file per holder) lock on `key` (`shared`:
        a shared one, as builds take `gc` while `pixibuild cache prune` takes it exclusively).

        flock locks die with their process, so a killed fetch never leaves a stale lock.
        """
        if not re.match(r"^[A-Za-z0-9._-]{1,200}$", key):
            key = hashlib.sha256(key.encode()).hexdigest()
        self._locks_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._locks_dir / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- URL index -----------------------------------------------------------------------------
    def _cache(self):
        with self._index_lock:
            if self._index is None:
                import diskcache  # 13-38 ms (python -X importtime): planning uses Store for paths, never this index

                self.root.mkdir(parents=True, exist_ok=True)
                self._index = diskcache.Cache(str(self.root / "index"))
            return self._index

    def remember(self, url: str, sha256: str, size: int, *, md5: str | None = None,
                 etag: str | None = None) -> None:
        """Record url → blob. The key is `storage_key(url)`: never userinfo, tokens or query strings."""
        self._cache().set(storage_key(url), {"sha256": sha256, "size": size, "md5": md5, "etag": etag})

    def recall(self, url: str) -> dict | None:
        """What the index knows about `url` (its blob may since have been removed: check `has`)."""
        value = self._cache().get(storage_key(url))
        return dict(value) if isinstance(value, dict) else None

    def index_items(self) -> list[tuple[str, dict]]:
        cache = self._cache()
        return [(key, cache.get(key)) for key in cache.iterkeys()]

    def close(self) -> None:
        with self._index_lock:
            if self._index is not None:
                self._index.close()
                self._index = None


def copy_hashed(src: Path, dest: Path, *, md5: bool = True) -> Hasher:
    """Copy `src` to the new file `dest` and hash what `dest` holds: a reflink where the filesystem
    can (then only the clone is read), else read + hash + write with one buffer (ext4: the fastest,
    see files/verified.py). Blobs get 0644 & ~umask."""
    h = Hasher() if md5 else _Sha256Only()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    try:
        with open(src, "rb", buffering=0) as fin, open(dest, "wb", buffering=0) as fout:
            if try_clone(fin.fileno(), fout.fileno()):
                with open(dest, "rb", buffering=0) as clone:
                    while n := clone.readinto(buf):
                        h.update(view[:n])
            else:
                while n := fin.readinto(buf):
                    h.update(view[:n])
                    fout.write(view[:n])
            os.fchmod(fout.fileno(), 0o644 & ~current_umask())
    except OSError as exc:
        raise BuildError(f"cannot copy {src} into the store: {exc.strerror or exc}") from None
    return h


class _Sha256Only(Hasher):
    """Hasher without the md5 (~40% of the hashing time) when the lock gives a sha256."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5()
        self.size = 0

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)


def blob_source(path: Path, label: str) -> "VerifiedBlob | Path":
    """`path` as a VerifiedBlob when it is a store blob (`<root>/blobs/sha256/<2>/<sha256>`), so the
    consumers of planned paths (image layers, the pack writer) check what they read; any other
    file is returned as it is."""
    if isinstance(path, VerifiedBlob):
        return path
    path = Path(path)
    name = path.name
    if (_SHA256_RE.match(name) and path.parent.name == name[:2] and path.parent.parent.name == "sha256"
            and path.parent.parent.parent.name == "blobs"):
        return Store(path.parents[3]).verified(path, label)
    return path
