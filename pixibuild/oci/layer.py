"""Deterministic image layers: a staging directory → one gzip'd tar blob, with both digests.

A layer is a pure function of the staged files: entries in sorted pre-order, fixed mtime,
uid/gid 0, normalised modes (0755 for directories and executables, 0644 otherwise),
hardlinks written as regular files, the parent directories of the mount point emitted with fixed
modes. The gzip stream has a fixed header (mtime 0, no file name, XFL 0, OS 255) and a fixed
level, so the same files give the same compressed digest (with the same zlib).

`diff_id` (sha256 of the tar) and `digest` (sha256 of the gzip stream) are computed in one
streaming pass while the blob is written. `LayerCache` remembers both under a caller-given
content key so an unchanged layer is never re-tarred or recompressed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import struct
import tarfile
import tempfile
import threading
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from pixibuild.files.atomic import atomic_directory, atomic_write_bytes
from pixibuild.errors import BuildError
from pixibuild.files.tar import DeterministicTarWriter
from pixibuild.net.mediatypes import MEDIA_TYPE_GZIP
from pixibuild.store.roots import layer_cache_root

LAYER_FORMAT_VERSION = 1
"""Bump when the bytes a layer gets for the same files change (tar layout, modes, gzip)."""

GZIP_LEVEL = 6
LAYER_MTIME = 0

_GZIP_HEADER = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"
"""magic, deflate, no flags, mtime 0, XFL 0, OS 255 (unknown): nothing about this machine or time."""


@dataclass(frozen=True)
class Layer:
    """One layer blob on disk and what the manifest/config say about it."""

    digest: str
    """sha256:<hex> of the blob as stored (compressed)."""
    diff_id: str
    """sha256:<hex> of the uncompressed tar (the config's rootfs.diff_ids entry)."""
    size: int
    path: Path
    media_type: str = MEDIA_TYPE_GZIP

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


class _DigestingGzip:
    """A write-only stream: hashes what it receives (diff_id), gzips it, hashes and writes the result."""

    def __init__(self, out: BinaryIO, level: int):
        self._out = out
        self._raw = hashlib.sha256()
        self._gz = hashlib.sha256()
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY)
        self._crc = 0
        self._length = 0
        self.size = 0
        self._emit(_GZIP_HEADER)

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            self._gz.update(data)
            self.size += len(data)

    def write(self, data: bytes) -> int:
        self._raw.update(data)
        self._crc = zlib.crc32(data, self._crc)
        self._length += len(data)
        self._emit(self._deflate.compress(data))
        return len(data)

    def finish(self) -> tuple[str, str, int]:
        """Flush the deflate stream and trailer; return (diff_id, digest, compressed size)."""
        self._emit(self._deflate.flush())
        self._emit(struct.pack("<II", self._crc, self._length & 0xFFFFFFFF))
        return f"sha256:{self._raw.hexdigest()}", f"sha256:{self._gz.hexdigest()}", self.size


def _file_mode(st_mode: int) -> int:
    return 0o755 if st_mode & 0o111 else 0o644


def _write_tree(tar: DeterministicTarWriter, source: Path, name: str) -> None:
    """Pre-order walk with names sorted at each level; `name` is the archive path of `source`."""
    with os.scandir(source) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        arcname = f"{name}/{entry.name}" if name else entry.name
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            tar.add_symlink(arcname, os.readlink(entry.path))
        elif stat.S_ISDIR(st.st_mode):
            tar.add_dir(arcname, 0o755)
            _write_tree(tar, Path(entry.path), arcname)
        elif stat.S_ISREG(st.st_mode):
            # Hardlinks are read through: every path is a regular file in the layer.
            tar.add_file(arcname, Path(entry.path), _file_mode(st.st_mode), st.st_size)
        else:
            raise BuildError("cannot put a device, fifo or socket into an image layer", path=entry.path)


def write_layer_tar(staging: Path, out: BinaryIO, *, mount: str = "") -> None:
    """Write the deterministic tar of `staging`, placed at `mount` (e.g. "app/.pixi/envs/prod") in the rootfs."""
    tar = DeterministicTarWriter(out, mtime=LAYER_MTIME, tar_format=tarfile.PAX_FORMAT)
    mount = mount.strip("/")
    parts = mount.split("/") if mount else []
    for depth in range(1, len(parts) + 1):
        tar.add_dir("/".join(parts[:depth]), 0o755)
    _write_tree(tar, Path(staging), mount)
    tar.close()


def write_layer(staging: Path, blob_dir: Path, *, mount: str = "", level: int = GZIP_LEVEL) -> Layer:
    """Tar + gzip `staging` into `blob_dir/<hex>` (content-addressed), in one streaming pass."""
    with _incoming(blob_dir) as (out, tmp):
        gz = _DigestingGzip(out, level)
        write_layer_tar(staging, gz, mount=mount)  # type: ignore[arg-type]
        diff_id, digest, size = gz.finish()
        out.close()
        path = blob_dir / digest.split(":", 1)[1]
        os.replace(tmp, path)
    return Layer(digest=digest, diff_id=diff_id, size=size, path=path)


@contextlib.contextmanager
def _incoming(blob_dir: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """A uniquely named temp file in `blob_dir` (parallel writers never collide); removed on failure."""
    blob_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".incoming-", dir=blob_dir)
    tmp = Path(name)
    out = os.fdopen(fd, "wb")
    try:
        yield out, tmp
    except BaseException:
        out.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        out.close()


class LayerCache:
    """Layers by content key: `layers/<key hash>.json` → digests; blobs in `blobs/sha256/<hex>`.

    The key is whatever identifies the layer's content for the caller (e.g. package sha256s and
    target prefix); it is combined with LAYER_FORMAT_VERSION and the gzip level.
    """

    def __init__(self, root: Path | None = None, *, level: int = GZIP_LEVEL):
        self.root = Path(root) if root is not None else layer_cache_root()
        self.level = level
        self.blob_dir = self.root / "blobs" / "sha256"
        self.hits = 0
        self.misses = 0
        self._count_lock = threading.Lock()

    def _entry_path(self, key: str) -> Path:
        full = f"pixibuild-layer-v{LAYER_FORMAT_VERSION}\0gzip-{self.level}\0{key}"
        return self.root / "layers" / f"{hashlib.sha256(full.encode()).hexdigest()}.json"

    def blob_path(self, digest: str) -> Path:
        return self.blob_dir / digest.split(":", 1)[1]

    def lookup(self, key: str) -> Layer | None:
        entry = self._entry_path(key)
        try:
            data = json.loads(entry.read_text())
        except (FileNotFoundError, ValueError):
            return None
        path = self.blob_path(data["digest"])
        try:
            if path.stat().st_size != data["size"]:
                return None
        except FileNotFoundError:
            return None
        return Layer(digest=data["digest"], diff_id=data["diff_id"], size=data["size"], path=path,
                     media_type=data.get("media_type", MEDIA_TYPE_GZIP))

    def kept_dir(self, key: str) -> Path:
        """Where `get_or_build(..., keep=...)` saved the selected small files of the staging dir."""
        return self._entry_path(key).with_suffix(".keep")

    def get_or_build(self, key: str, populate: Callable[[Path], None], *, mount: str = "",
                     keep: Callable[[str], bool] | None = None) -> Layer:
        """The cached layer for `key`, or: stage files with `populate(dir)`, write the layer, remember it.

        `keep(relative path)` selects staged files to save beside the entry (e.g. activation
        scripts), so later steps can read them without unpacking the layer.
        """
        found = self.lookup(key)
        if found is not None and (keep is None or self.kept_dir(key).is_dir()):
            with self._count_lock:
                self.hits += 1
            return found
        with self._count_lock:
            self.misses += 1
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="stage-", dir=self.root))
        try:
            populate(staging)
            layer = write_layer(staging, self.blob_dir, mount=mount, level=self.level)
            if keep is not None:
                with atomic_directory(self.kept_dir(key)) as kept:
                    for path in sorted(staging.rglob("*")):
                        rel = path.relative_to(staging).as_posix()
                        if path.is_file() and not path.is_symlink() and keep(rel):
                            (kept / rel).parent.mkdir(parents=True, exist_ok=True)
                            shutil.copyfile(path, kept / rel)
                            shutil.copymode(path, kept / rel)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        record = {k: v for k, v in asdict(layer).items() if k != "path"}
        atomic_write_bytes(self._entry_path(key), json.dumps(record, sort_keys=True).encode())
        return layer

    def add_blob_file(self, source: Path, digest: str | None = None) -> Path:
        """Copy a foreign blob (base image layer) in by digest, verifying it; returns its cache path."""
        with open(source, "rb") as src:
            return self.add_blob_stream(src, digest, name=str(source))

    def add_blob_stream(self, src: BinaryIO, digest: str | None = None, *, name: str = "blob") -> Path:
        """Stream a blob into the cache by digest, verifying `digest` when given."""
        h = hashlib.sha256()
        with _incoming(self.blob_dir) as (out, tmp):
            while chunk := src.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
            out.close()
            actual = f"sha256:{h.hexdigest()}"
            if digest is not None and actual != digest:
                raise BuildError(f"blob digest is {actual}, expected {digest}", path=name)
            path = self.blob_path(actual)
            os.replace(tmp, path)
        return path
