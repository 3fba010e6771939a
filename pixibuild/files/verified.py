"""Blobs whose bytes are checked while their consumers read them: no extra pass, no trust in the disk.

A package is read whole by whoever uses it: the pack writer copies it into the archive, the installer
decompresses it into a prefix or an image layer. `VerifiedBlob` hashes those very reads, each byte
once and in file order, so checking the digest costs no second read; `finish()` compares. A consumer
that jumps around is covered too (a `.conda` is a zip: central directory at the end, then the
members front to back): a read just past what is hashed so far fills the small gap (zip headers), a
read far ahead is left for later, and whatever no consumer read (the central directory, the rest of
a `.tar.bz2` after its end-of-archive blocks) is hashed by `finish()`: a few KiB.

Why not mmap + hash + `copy_file_range` for the pack? Measured on ext4 (bench/pack.py, 67 MB,
103 blobs): read into a 1 MiB buffer + sha256 + write 101-113 ms; copy_file_range + hashing what
landed in the output 134-150 ms (pread) / 142-153 ms (mmap); mmap-hash the source + copy_file_range
129-142 ms (and then the copied bytes are not the hashed ones if the file changes in between);
hashing in one thread and writing in another was slower still on 2 cores. ext4 copies in the
kernel anyway and sha256 needs the bytes in userspace, so the plain loop is both the fastest and the
one where the bytes written are exactly the bytes hashed.

The region form (`offset`, `length`) reads a member of an uncompressed tar in place (a pack).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from pixibuild.errors import BuildError
from pixibuild.files.window import Window
from pixibuild.files.digest import CHUNK

"""Copy buffer: 1 MiB measured as fast as 4 MiB and faster than 256 KiB (see the module doc)."""
GAP = 64 << 10
"""A read this close past the hashed part fills the gap at once (zip local headers, metadata.json);
a read further ahead (a zip's central directory) is hashed later, in order."""
READ_BUFFER = 1 << 16


class VerifiedBlob:
    """A file (or a byte range of one) that must hash to `digest`; a callable opening a fresh,
    seekable read stream, so it can be handed to the archive readers as a source.

    `on_mismatch(blob, actual)` builds the exception to raise (and may evict the blob first).
    """

    def __init__(self, path: str | Path, algorithm: str, digest: str, *, label: str,
                 on_mismatch: Callable[["VerifiedBlob", str], Exception] | None = None,
                 offset: int = 0, length: int | None = None):
        if algorithm not in ("sha256", "md5"):
            raise ValueError(f"unsupported digest {algorithm}")
        self.path = Path(path)
        self.algorithm = algorithm
        self.expected = digest.lower()
        self.label = label
        self.offset = offset
        self.length = length
        self._on_mismatch = on_mismatch
        self._hash = hashlib.new(algorithm)
        self._upto = 0
        self._lock = threading.Lock()
        self.identity: tuple[int, int] | None = None
        """(st_dev, st_ino) of the file when first opened: eviction removes that file and no other."""
        self.opened = False
        self.extra_read = 0
        """Bytes hashed by reads of our own (gaps, the unread tail): what verifying cost beyond the consumer."""
        self._finished: str | None = None
        """The actual digest once everything was hashed."""

    def __repr__(self) -> str:
        return f"VerifiedBlob({str(self.path)!r}, {self.algorithm}={self.expected[:12]}…)"

    @property
    def name(self) -> str:
        return self.path.name

    def size(self) -> int:
        """The blob's length in bytes (fixed at the first look: a file growing later is not read further)."""
        if self.length is None:
            os.close(self._open_fd())
        assert self.length is not None
        return self.length

    # -- reading -------------------------------------------------------------------------------
    def _open_fd(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise BuildError(f"{self.label}: cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            st = os.fstat(fd)
            with self._lock:
                if self.length is None:
                    self.length = max(0, st.st_size - self.offset)
                if self.identity is None:
                    self.identity = (st.st_dev, st.st_ino)
                self.opened = True
        except BaseException:
            os.close(fd)
            raise
        return fd

    def __call__(self) -> BinaryIO:
        """A new buffered, seekable stream over the blob; what it reads is hashed."""
        return io.BufferedReader(_Reader(self, self._open_fd()), READ_BUFFER)  # type: ignore[return-value]

    def _seen(self, fd: int, pos: int, data: memoryview) -> None:
        """`data` was read at `pos`: hash the part that extends the hashed prefix."""
        end = pos + len(data)
        with self._lock:
            upto = self._upto
            if end <= upto or self._finished is not None:
                return
            if pos > upto:
                if pos - upto > GAP:
                    return
                self._fill(fd, pos)
                upto = pos
            self._hash.update(data[upto - pos:])
            self._upto = end

    def _fill(self, fd: int, until: int) -> None:
        """Hash [hashed prefix, until) with reads of our own (the lock is held)."""
        buf = bytearray(min(CHUNK, max(until - self._upto, 1)))
        view = memoryview(buf)
        while self._upto < until:
            n = os.preadv(fd, [view[:min(len(buf), until - self._upto)]], self.offset + self._upto)
            if n <= 0:
                break  # the file is shorter than it was: the digest will not match
            self._hash.update(view[:n])
            self._upto += n
            self.extra_read += n

    # -- checking ------------------------------------------------------------------------------
    def actual(self) -> str:
        """Hash whatever no consumer read, then the digest of the whole blob (computed once)."""
        with self._lock:
            if self._finished is None:
                if self.length is None or self._upto < self.length:
                    try:
                        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                    except OSError as exc:
                        raise BuildError(f"{self.label}: cannot read {self.path}: {exc.strerror or exc}") from None
                    try:
                        if self.length is None:
                            self.length = max(0, os.fstat(fd).st_size - self.offset)
                        self._fill(fd, self.length)
                    finally:
                        os.close(fd)
                self._finished = self._hash.hexdigest()
            return self._finished

    def mismatch(self) -> Exception | None:
        """The error to raise when the blob does not hash to what it must, else None."""
        actual = self.actual()
        if actual == self.expected:
            return None
        if self._on_mismatch is not None:
            return self._on_mismatch(self, actual)
        return ValueError(f"{self.label}: {self.algorithm} mismatch: expected {self.expected}, got {actual}")

    def finish(self) -> None:
        """Raise the mismatch error when the blob's bytes are not what they must be."""
        error = self.mismatch()
        if error is not None:
            raise error

    # -- copying -------------------------------------------------------------------------------
    def copy_into(self, out: BinaryIO) -> int:
        """Stream the blob into `out` (read + hash + write with one reused buffer), then `finish()`:
        the bytes written are exactly the bytes hashed. Returns the number of bytes copied."""
        fd = self._open_fd()
        assert self.length is not None
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        copied = 0
        try:
            while copied < self.length:
                n = os.preadv(fd, [view[:min(CHUNK, self.length - copied)]], self.offset + copied)
                if n <= 0:
                    break
                chunk = view[:n]
                self._seen(fd, copied, chunk)
                out.write(chunk)
                copied += n
        finally:
            os.close(fd)
        self.finish()
        if copied != self.length:  # shrank while we read it, yet still hashes right: only a race can do that
            raise OSError(f"{self.path}: expected {self.length} bytes, read {copied} (file changed while copying?)")
        return copied


class _Reader(Window):
    """A seekable raw stream over a VerifiedBlob's region with its own descriptor (positional reads:
    parallel readers never share a file offset)."""

    def __init__(self, blob: VerifiedBlob, fd: int):
        assert blob.length is not None
        super().__init__(blob.length)
        self._blob, self._fd = blob, fd

    def _read_at(self, view: memoryview, pos: int) -> int:
        got = os.preadv(self._fd, [view], self._blob.offset + pos)
        if got > 0:
            self._blob._seen(self._fd, pos, view[:got])
        return got

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a verified blob is read through its stream")

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


@contextlib.contextmanager
def verifying(blobs: Iterable[Any]) -> Iterator[None]:
    """Check every VerifiedBlob among `blobs` that the block read: after it succeeds, each must hash
    right (the rest of it is hashed now); when it fails, a blob it was reading that does not hash
    right is the real cause (a damaged archive breaks its parser first): that error is raised."""
    checked = [b for b in blobs if isinstance(b, VerifiedBlob)]
    try:
        yield
    except Exception as exc:
        for blob in checked:
            if blob.opened:
                try:
                    error = blob.mismatch()
                except (OSError, BuildError):
                    continue
                if error is not None:
                    raise error from exc
        raise
    for blob in checked:
        if blob.opened:
            blob.finish()
