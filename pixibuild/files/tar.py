"""A streaming, deterministic tar writer: the same entries give the same bytes on every machine.

Python's `tarfile` pads archives to 10 KiB records and derives headers from the filesystem; we
build every header from explicit values and stream file bodies in chunks, so outputs are
reproducible and memory stays flat whatever the file sizes.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import BinaryIO

from pixibuild.files.verified import VerifiedBlob
from pixibuild.files.digest import CHUNK

BLOCK = 512


class DeterministicTarWriter:
    """Write tar entries to `out` with fixed mtime/owner; `close()` writes the two zero end blocks."""

    def __init__(self, out: BinaryIO, *, mtime: int, tar_format: int = tarfile.GNU_FORMAT):
        self._out = out
        self._mtime = mtime
        self._format = tar_format
        self.bytes_written = 0

    def _header(self, name: str, kind: bytes, mode: int, size: int = 0, linkname: str = "",
                owner: tuple[int, int] = (0, 0)) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.size = size
        info.linkname = linkname
        info.mtime = self._mtime
        info.uid, info.gid = owner
        info.uname = info.gname = ""
        self._write(info.tobuf(self._format, "utf-8", "surrogateescape"))

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self.bytes_written += len(data)

    def add_dir(self, name: str, mode: int = 0o755, *, owner: tuple[int, int] = (0, 0)) -> None:
        """A directory; `owner` (uid, gid) for the few entries an image gives to a non-root user."""
        self._header(name, tarfile.DIRTYPE, mode, owner=owner)

    def add_symlink(self, name: str, target: str) -> None:
        self._header(name, tarfile.SYMTYPE, 0o777, linkname=target)

    def add_bytes(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._header(name, tarfile.REGTYPE, mode, len(data))
        self._write(data)
        self._pad(len(data))

    def add_file(self, name: str, source: Path, mode: int = 0o644, size: int | None = None) -> None:
        """Stream `source` into the archive; `size` guards against a file changing under us."""
        expected = source.stat().st_size if size is None else size
        self._header(name, tarfile.REGTYPE, mode, expected)
        copied = 0
        with open(source, "rb") as src:
            while chunk := src.read(min(CHUNK, expected - copied)):
                self._write(chunk)
                copied += len(chunk)
        if copied != expected:
            raise OSError(f"{source}: expected {expected} bytes, read {copied} (file changed while archiving?)")
        self._pad(expected)

    def add_blob(self, name: str, blob: VerifiedBlob, mode: int = 0o644) -> None:
        """Stream a blob into the archive while checking its digest (one read, see files/verified.py):
        a mismatch raises after its bytes were written, so the caller's output must be discarded."""
        size = blob.size()
        self._header(name, tarfile.REGTYPE, mode, size)
        self.bytes_written += blob.copy_into(self._out)
        self._pad(size)

    def _pad(self, size: int) -> None:
        if size % BLOCK:
            self._write(b"\0" * (BLOCK - size % BLOCK))

    def close(self) -> None:
        """End-of-archive marker: two zero blocks, no padding to tarfile's 10 KiB record size."""
        self._write(b"\0" * (2 * BLOCK))
