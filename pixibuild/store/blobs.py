"""The global content-addressed package store, shared by every project, environment and platform.

A blob lives at `blobs/sha256/<first two hex digits>/<sha256>` and is only ever created by renaming a
fully written, fully hashed temp file from the same directory, so a crash leaves at most a dot-named
`.part` file, never a wrong blob under a real name. A small diskcache index maps a URL (stripped of
credentials) to the blob's sha256, size, md5 and ETag. Per-blob `fcntl` locks make concurrent builds
(threads or processes) on one store download each blob once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from pixibuild.net.auth import storage_key
from pixibuild.errors import BuildError, InputError
from pixibuild.store.roots import store_root

log = logging.getLogger(__name__)

CHUNK = 1 << 20
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


class Hasher:
    """sha256 + md5 + byte count over a stream, updated as bytes are written."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5()
        self.size = 0

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        self.md5.update(data)
        self.size += len(data)

    def update_from_file(self, f: BinaryIO) -> None:
        while chunk := f.read(CHUNK):
            self.update(chunk)


def hash_file(path: Path) -> Hasher:
    """Hash a file by streaming it (never whole in memory)."""
    h = Hasher()
    with open(path, "rb") as f:
        h.update_from_file(f)
    return h


@dataclass(frozen=True)
class Mismatch:
    """Why bytes do not match what the lock expects (None when they do)."""

    algorithm: str
    expected: str
    actual: str


def compare(h: Hasher, sha256: str | None, md5: str | None, size: int | None = None) -> Mismatch | None:
    """sha256 if known, else md5; size only when no hash is known (a hash already implies the size)."""
    if sha256:
        actual = h.sha256.hexdigest()
        return None if actual == sha256.lower() else Mismatch("sha256", sha256.lower(), actual)
    if md5:
        actual = h.md5.hexdigest()
        return None if actual == md5.lower() else Mismatch("md5", md5.lower(), actual)
    if size is not None and h.size != size:
        return Mismatch("size", str(size), str(h.size))
    return None


class Store:
    """A directory of verified blobs named by sha256, plus a URL index and cross-process locks."""

    def __init__(self, root: str | Path | None = None):
        self.root = store_root(root)
        self.blobs = self.root / "blobs" / "sha256"
        self._locks_dir = self.root / "locks"
        self._index = None
        self._index_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- blobs ---------------------------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        sha256 = check_sha256(sha256)
        return self.blobs / sha256[:2] / sha256

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
        """Put a local file into the store (hard-linked when possible, else copied) after verifying it.

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
        with self.lock(sha256 or f"ingest-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()}"):
            if sha256 and self.has(sha256, size):
                return self.blob_path(sha256)
            tmp = self.new_temp(sha256)
            try:
                h = self._link_or_copy(path, tmp)
                bad = compare(h, sha256, md5)
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

    @staticmethod
    def _link_or_copy(src: Path, tmp: Path) -> Hasher:
        """Hard-link `src` over `tmp` (same filesystem), else copy it, hashing what ends up in `tmp`."""
        try:
            os.unlink(tmp)
            os.link(src, tmp)
            return hash_file(tmp)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP):
                raise BuildError(f"cannot read {src}: {exc.strerror}") from None
        h = Hasher()
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(CHUNK):
                h.update(chunk)
                fout.write(chunk)
        shutil.copystat(src, tmp)
        return h

    # -- locks ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Exclusive cross-process (and cross-thread: one open file per holder) lock on `key`.

        flock locks die with their process, so a killed fetch never leaves a stale lock.
        """
        if not re.match(r"^[A-Za-z0-9._-]{1,200}$", key):
            key = hashlib.sha256(key.encode()).hexdigest()
        self._locks_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._locks_dir / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- URL index -----------------------------------------------------------------------------
    def _cache(self):
        with self._index_lock:
            if self._index is None:
                import diskcache

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
