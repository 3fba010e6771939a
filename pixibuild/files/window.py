"""A read-only, seekable window of `size` bytes over some backing store, as a raw stream: the part of
`io.RawIOBase` every window shares (position, seek, bounds); subclasses only say how to read at a
position (a pread on their own descriptor, a seek+read on a shared file)."""

from __future__ import annotations

import io
from typing import Any


class Window(io.RawIOBase):
    def __init__(self, size: int):
        self._size, self._pos = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self._size - self._pos)
        if n <= 0:
            return 0
        got = self._read_at(memoryview(buf).cast("B")[:n], self._pos)
        self._pos += got
        return got

    def _read_at(self, view: memoryview, pos: int) -> int:
        """Fill `view` (at most) with the bytes at window position `pos`; how many were read."""
        raise NotImplementedError


class Slice(Window):
    """The window [offset, offset+size) of a file object shared with others (each read seeks first):
    one member of an uncompressed tar (a pack), or the stored bytes of a zip member (a `.conda`)."""

    def __init__(self, raw: Any, offset: int, size: int, *, owns: bool = True):
        super().__init__(size)
        self._raw, self._offset, self._owns = raw, offset, owns

    def _read_at(self, view: memoryview, pos: int) -> int:
        self._raw.seek(self._offset + pos)
        data = self._raw.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._owns:
            self._raw.close()
        super().close()

