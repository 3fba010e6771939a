"""Deterministic image layers: a staging directory → one compressed tar blob, with both digests.

A layer is a pure function of the staged files: entries in sorted pre-order, fixed mtime,
uid/gid 0, directories 0755, hardlinks written as regular files, the parent directories of the
mount point emitted with fixed modes. File modes are either kept (`modes="keep"`: the permission
bits the installer set from the package archive, exactly what `pixibuild unpack` installs) or
normalised (`modes="normalize"`: 0755 for executables, 0644 otherwise, for project files whose
modes depend on the user's umask).

Compression (level and stream format fixed, so the same files give the same compressed digest
with the same zlib/zstd): gzip is written pigz-style — the tar is cut into fixed 1 MiB blocks,
each deflated on its own (primed with the previous block's last 32 KiB) by a shared thread pool
and ended with a sync flush, so one big layer uses every core; zstd streams on the calling thread
(at ~1 GB/s it keeps up with tar and sha256, and its worker mode would cost ~40 MB per worker;
measured in bench/image.py), layers being compressed in parallel by the image build's pool.
zlib and zstandard release the GIL.

`diff_id` (sha256 of the tar) and `digest` (sha256 of the compressed stream) are computed in one
streaming pass while the blob is written. `LayerCache` remembers both under a caller-given
content key so an unchanged layer is never re-tarred or recompressed.
"""

from __future__ import annotations

import collections
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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import zstandard

from pixibuild.files.atomic import atomic_directory, atomic_write_bytes
from pixibuild.errors import BuildError, InputError
from pixibuild.files.tar import DeterministicTarWriter
from pixibuild.net.mediatypes import MEDIA_TYPE_GZIP, MEDIA_TYPE_ZSTD
from pixibuild.oci.staging import StagingPolicy
from pixibuild.store.roots import layer_cache_root

LAYER_FORMAT_VERSION = 2
"""Bump when the bytes a layer gets for the same files change (tar layout, modes, compression).
2: package layers keep the archive's file modes; gzip is written in parallel 1 MiB blocks."""

GZIP_LEVEL = 6
ZSTD_LEVEL = 3
COMPRESSIONS = {"gzip": (MEDIA_TYPE_GZIP, GZIP_LEVEL), "zstd": (MEDIA_TYPE_ZSTD, ZSTD_LEVEL)}
"""name → (layer media type, fixed level). The level is part of the format, never a user knob."""
LAYER_MTIME = 0
GZIP_BLOCK = 1 << 20
"""Raw bytes per independently deflated block (pigz uses 128 KiB; 1 MiB keeps the pool overhead low)."""
_DICTIONARY = 32768
ZSTD_BATCH = 1 << 20
"""Tar bytes gathered before they are hashed and handed to zstd."""

_GZIP_HEADER = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"
"""magic, deflate, no flags, mtime 0, XFL 0, OS 255 (unknown): nothing about this machine or time."""
_GZIP_END = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS).flush(zlib.Z_FINISH)
"""An empty final deflate block: closes the stream after the sync-flushed blocks."""


def compression_of(name: str) -> tuple[str, int]:
    """(media type, level) of a compression name; an InputError naming the choices otherwise."""
    try:
        return COMPRESSIONS[name]
    except KeyError:
        raise InputError(f"unknown layer compression {name!r} (choose from {', '.join(COMPRESSIONS)})",
                         field="compression") from None


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


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _compression_pool() -> ThreadPoolExecutor:
    """One pool of deflate workers for the process: parallel layers share the cores instead of
    each starting its own threads."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="deflate")
        return _POOL


def _deflate_block(block: bytes, dictionary: bytes, level: int) -> bytes:
    """One block as a raw deflate stream ending byte-aligned (sync flush): blocks concatenate."""
    if dictionary:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY, dictionary)
    else:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY)
    return compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)


class _DigestingStream:
    """A write-only stream: hashes what it receives (diff_id), compresses it, hashes and writes the
    result (digest). Subclasses compress."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self._raw = hashlib.sha256()
        self._compressed = hashlib.sha256()
        self.size = 0

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            self._compressed.update(data)
            self.size += len(data)

    def _digests(self) -> tuple[str, str, int]:
        return f"sha256:{self._raw.hexdigest()}", f"sha256:{self._compressed.hexdigest()}", self.size


class _ParallelGzip(_DigestingStream):
    """One gzip member whose deflate stream is made of fixed-size blocks compressed by the shared
    pool (pigz's scheme): the bytes depend only on the input, never on thread timing."""

    def __init__(self, out: BinaryIO, level: int):
        super().__init__(out)
        self._level = level
        self._pool = _compression_pool()
        self._window = 2 * (self._pool._max_workers or 1)  # blocks in flight: bounds memory
        self._pending: collections.deque[Future] = collections.deque()
        self._buffer = bytearray()
        self._tail = b""
        self._crc = 0
        self._length = 0
        self._emit(_GZIP_HEADER)

    def write(self, data: bytes) -> int:
        self._raw.update(data)
        self._crc = zlib.crc32(data, self._crc)
        self._length += len(data)
        self._buffer += data
        while len(self._buffer) >= GZIP_BLOCK:
            block = bytes(self._buffer[:GZIP_BLOCK])
            del self._buffer[:GZIP_BLOCK]
            self._submit(block)
        return len(data)

    def _submit(self, block: bytes) -> None:
        self._pending.append(self._pool.submit(_deflate_block, block, self._tail, self._level))
        self._tail = block[-_DICTIONARY:]
        while len(self._pending) > self._window:
            self._emit(self._pending.popleft().result())

    def finish(self) -> tuple[str, str, int]:
        """Compress what is left, close the stream, write the trailer; (diff_id, digest, size)."""
        if self._buffer:
            self._submit(bytes(self._buffer))
            self._buffer.clear()
        while self._pending:
            self._emit(self._pending.popleft().result())
        self._emit(_GZIP_END)
        self._emit(struct.pack("<II", self._crc, self._length & 0xFFFFFFFF))
        return self._digests()

    def abort(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pending.clear()


class _Sink:
    """What zstandard's stream writer writes to: our hashing emitter."""

    def __init__(self, emit: Callable[[bytes], None]):
        self._emit = emit

    def write(self, data: bytes) -> int:
        self._emit(bytes(data))
        return len(data)


class _DigestingZstd(_DigestingStream):
    """A zstd frame with a checksum and no content size, compressed on this thread (the bytes do not
    depend on how the tar is cut into writes)."""

    def __init__(self, out: BinaryIO, level: int):
        super().__init__(out)
        compressor = zstandard.ZstdCompressor(level=level, threads=0, write_checksum=True, write_content_size=False)
        self._writer = compressor.stream_writer(_Sink(self._emit), closefd=False)  # type: ignore[arg-type]

        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        # a tar of small files arrives in many small writes: batched, hashing and compressing cost
        # per call (the frame's bytes do not depend on how the input is cut)
        self._buffer += data
        if len(self._buffer) >= ZSTD_BATCH:
            self._pass()
        return len(data)

    def _pass(self) -> None:
        self._raw.update(self._buffer)
        self._writer.write(self._buffer)
        self._buffer.clear()

    def finish(self) -> tuple[str, str, int]:
        self._pass()
        self._writer.flush(zstandard.FLUSH_FRAME)
        return self._digests()

    def abort(self) -> None:
        pass


def _compressor(out: BinaryIO, compression: str) -> "_ParallelGzip | _DigestingZstd":
    _, level = compression_of(compression)
    return _ParallelGzip(out, level) if compression == "gzip" else _DigestingZstd(out, level)


def _normalized_mode(st_mode: int, name: str = "") -> int:
    return 0o755 if st_mode & 0o111 else 0o644


def _kept_mode(st_mode: int, name: str = "") -> int:
    """The archive's mode (the installer sets it exactly); conda-meta records are the installer's own
    writes, whose mode follows the umask: normalised, so the layer does not depend on it."""
    if "conda-meta" in name.split("/"):
        return _normalized_mode(st_mode)
    return st_mode & 0o777


MODES = {"keep": _kept_mode, "normalize": _normalized_mode}


def _write_tree(tar: DeterministicTarWriter, source: Path, name: str, file_mode: Callable[[int, str], int]) -> None:
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
            _write_tree(tar, Path(entry.path), arcname, file_mode)
        elif stat.S_ISREG(st.st_mode):
            # Hardlinks are read through: every path is a regular file in the layer.
            tar.add_file(arcname, Path(entry.path), file_mode(st.st_mode, arcname), st.st_size)
        else:
            raise BuildError("cannot put a device, fifo or socket into an image layer", path=entry.path)


def write_layer_tar(staging: Path, out: BinaryIO, *, mount: str = "", modes: str = "normalize") -> None:
    """Write the deterministic tar of `staging`, placed at `mount` (e.g. "app/.pixi/envs/prod") in the rootfs."""
    tar = DeterministicTarWriter(out, mtime=LAYER_MTIME, tar_format=tarfile.PAX_FORMAT)
    mount = mount.strip("/")
    parts = mount.split("/") if mount else []
    for depth in range(1, len(parts) + 1):
        tar.add_dir("/".join(parts[:depth]), 0o755)
    _write_tree(tar, Path(staging), mount, MODES[modes])
    tar.close()


def write_layer(staging: Path, blob_dir: Path, *, mount: str = "", compression: str = "gzip",
                modes: str = "normalize") -> Layer:
    """Tar + compress `staging` into `blob_dir/<hex>` (content-addressed), in one streaming pass."""
    return _compressed_blob(blob_dir, compression,
                            lambda stream: write_layer_tar(staging, stream, mount=mount, modes=modes))


def write_tar_layer(write: Callable[[DeterministicTarWriter], None], blob_dir: Path, *,
                    compression: str = "gzip") -> Layer:
    """A layer whose entries `write` adds itself (e.g. with owners a staging dir cannot carry)."""
    def produce(stream: BinaryIO) -> None:
        tar = DeterministicTarWriter(stream, mtime=LAYER_MTIME, tar_format=tarfile.PAX_FORMAT)
        write(tar)
        tar.close()

    return _compressed_blob(blob_dir, compression, produce)


def _compressed_blob(blob_dir: Path, compression: str, produce: Callable[[BinaryIO], None]) -> Layer:
    """The layer tar `produce` writes into a compressing stream, hashed (diff_id and digest) as it goes
    and renamed into `blob_dir/<hex>` once complete."""
    media_type, _ = compression_of(compression)
    with _incoming(blob_dir) as (out, tmp):
        stream = _compressor(out, compression)
        try:
            produce(stream)  # type: ignore[arg-type]
            diff_id, digest, size = stream.finish()
        except BaseException:
            stream.abort()
            raise
        out.close()
        path = blob_dir / digest.split(":", 1)[1]
        os.replace(tmp, path)
    return Layer(digest=digest, diff_id=diff_id, size=size, path=path, media_type=media_type)


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
    target prefix); it is combined with LAYER_FORMAT_VERSION, the compression and the mode policy.
    One cache holds gzip and zstd layers side by side. `staging` says where layers are staged
    (oci/staging.py: small ones on a RAM-backed tmpfs); default from `PIXIBUILD_LAYER_STAGING`.
    """

    def __init__(self, root: Path | None = None, *, compression: str = "gzip",
                 staging: StagingPolicy | None = None):
        self.root = Path(root) if root is not None else layer_cache_root()
        self.compression = compression
        self.staging = staging if staging is not None else StagingPolicy.from_environment()
        self.media_type, _ = compression_of(compression)
        self.blob_dir = self.root / "blobs" / "sha256"
        self.hits = 0
        self.misses = 0
        self._count_lock = threading.Lock()

    def _entry_path(self, key: str, modes: str = "normalize") -> Path:
        full = f"pixibuild-layer-v{LAYER_FORMAT_VERSION}\0{self.compression}\0{modes}\0{key}"
        return self.root / "layers" / f"{hashlib.sha256(full.encode()).hexdigest()}.json"

    def blob_path(self, digest: str) -> Path:
        return self.blob_dir / digest.split(":", 1)[1]

    def lookup(self, key: str, *, modes: str = "normalize") -> Layer | None:
        entry = self._entry_path(key, modes)
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

    def kept_dir(self, key: str, *, modes: str = "normalize") -> Path:
        """Where `get_or_build(..., keep=...)` saved the selected small files of the staging dir."""
        return self._entry_path(key, modes).with_suffix(".keep")

    def has(self, key: str, *, modes: str = "normalize", keep: bool = False) -> bool:
        """The layer for `key` is cached (with its kept files when `keep`)."""
        return self.lookup(key, modes=modes) is not None and (not keep or self.kept_dir(key, modes=modes).is_dir())

    def get_or_build(self, key: str, populate: Callable[[Path], None], *, mount: str = "",
                     keep: Callable[[str], bool] | None = None, modes: str = "normalize",
                     archive_bytes: int | None = None) -> Layer:
        """The cached layer for `key`, or: stage files with `populate(dir)`, write the layer, remember it.

        `keep(relative path)` selects staged files and symlinks to save beside the entry (e.g.
        activation scripts, `bin/sh`), so later steps can read them without unpacking the layer.
        `modes` is the file mode policy (see `MODES`). `archive_bytes` (the packages' archive sizes,
        None if unknown) lets a small layer be staged in RAM (`self.staging`).
        """
        found = self.lookup(key, modes=modes)
        if found is not None and (keep is None or self.kept_dir(key, modes=modes).is_dir()):
            with self._count_lock:
                self.hits += 1
            return found
        with self._count_lock:
            self.misses += 1
        self.root.mkdir(parents=True, exist_ok=True)
        built: list[Layer] = []

        def write(staging: Path) -> None:
            layer = write_layer(staging, self.blob_dir, mount=mount, compression=self.compression, modes=modes)
            if keep is not None:
                self._keep_files(staging, self.kept_dir(key, modes=modes), keep)
            built.append(layer)

        self.staging.stage(archive_bytes, self.root, populate, write)
        layer = built[-1]
        record = {k: v for k, v in asdict(layer).items() if k != "path"}
        atomic_write_bytes(self._entry_path(key, modes), json.dumps(record, sort_keys=True).encode())
        return layer

    @staticmethod
    def _keep_files(staging: Path, kept_dir: Path, keep: Callable[[str], bool]) -> None:
        with atomic_directory(kept_dir, keep_existing=True) as kept:
            for path in sorted(staging.rglob("*")):
                rel = path.relative_to(staging).as_posix()
                if not keep(rel):
                    continue
                if path.is_symlink():
                    (kept / rel).parent.mkdir(parents=True, exist_ok=True)
                    (kept / rel).symlink_to(os.readlink(path))
                elif path.is_file():
                    (kept / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, kept / rel)
                    shutil.copymode(path, kept / rel)

    def get_or_write(self, key: str, write: Callable[[DeterministicTarWriter], None]) -> Layer:
        """The cached layer for `key`, or one whose tar entries `write` adds (see `write_tar_layer`)."""
        found = self.lookup(key, modes="tar")
        if found is not None:
            with self._count_lock:
                self.hits += 1
            return found
        with self._count_lock:
            self.misses += 1
        layer = write_tar_layer(write, self.blob_dir, compression=self.compression)
        record = {k: v for k, v in asdict(layer).items() if k != "path"}
        atomic_write_bytes(self._entry_path(key, "tar"), json.dumps(record, sort_keys=True).encode())
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
