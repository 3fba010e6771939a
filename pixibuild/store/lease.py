"""Leases: what a running build holds in the store, so `pixibuild cache prune` never removes it.

A build writes the items it will use (`blob:<sha256>`, `layer:<entry>`, `wheel:<key>`, `env:<key>`,
`git:<commit>`, `lock:<sha256>`) to its own file `<store>/leases/<pid>-<random>.lease` *before* it looks at
what the store holds, and keeps a shared `flock` on that file while it lives (the kernel drops it when the
process dies, however it dies). `prune` takes the store's `gc` lock exclusively, treats every lease file
it cannot lock as a live build's (its items are kept) and removes the others (their builds are gone).
Writing a lease takes the `gc` lock shared: a build starting during a prune waits for it to finish and
then sees the pruned store, never a half-pruned one; a prune starting later sees the lease.

Holding an item also marks it used (its atime, at most once a day): prune removes the least recently
used first, even on file systems mounted `noatime`.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Iterable

from pixibuild.store.roots import layer_cache_root, store_root

_LEASES: dict[Path, "Lease"] = {}
_LEASES_LOCK = threading.Lock()


def leases_dir(root: str | Path | None = None) -> Path:
    return store_root(root) / "leases"


def item_path(root: Path, item: str) -> Path | None:
    """The file whose atime says when `item` was last used (None for items without one)."""
    kind, _, name = item.partition(":")
    if kind == "blob" and len(name) == 64:
        return root / "blobs" / "sha256" / name[:2] / name
    if kind == "layer":
        return layer_cache_root(root) / "layers" / f"{name}.json"
    if kind == "wheel":
        return root / "pypi" / "wheels" / f"{name}.json"
    return None


def touch(path: Path, now: float | None = None) -> None:
    """Set `path`'s atime to now when it is more than a day old (keeps mtime; missing files are fine)."""
    now = time.time() if now is None else now
    with contextlib.suppress(OSError):
        st = os.stat(path)
        if st.st_atime < now - 86400:
            os.utime(path, (now, st.st_mtime))


class Lease:
    """This process's lease on one store (one per store root per process; thread-safe)."""

    def __init__(self, root: Path):
        self.root = root
        self.items: set[str] = set()
        self._file = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, root: str | Path | None = None) -> "Lease":
        path = store_root(root).absolute()
        with _LEASES_LOCK:
            if path not in _LEASES:
                _LEASES[path] = cls(path)
            return _LEASES[path]

    def _open(self):
        if self._file is None:
            directory = leases_dir(self.root)
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"{os.getpid()}-{secrets.token_hex(4)}.lease"
            self._file = open(path, "a", encoding="utf-8")
            fcntl.flock(self._file, fcntl.LOCK_SH)
            atexit.register(_remove, path, self._file)
        return self._file

    def hold(self, items: Iterable[str]) -> None:
        """Add `items` to the lease (and mark them used). Call before checking that they exist."""
        new = [i for i in dict.fromkeys(items) if i and i not in self.items]
        if not new:
            return
        with self._lock:
            new = [i for i in new if i not in self.items]
            if not new:
                return
            from pixibuild.store.blobs import Store  # (blobs imports diskcache lazily; cheap)

            with Store(self.root).lock("gc", shared=True):
                out = self._open()
                out.write("".join(f"{i}\n" for i in new))
                out.flush()
            self.items.update(new)
        now = time.time()
        for item in new:
            path = item_path(self.root, item)
            if path is not None:
                touch(path, now)


def _remove(path: Path, handle) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
    with contextlib.suppress(OSError):
        handle.close()


def hold(root: str | Path | None, items: Iterable[str]) -> None:
    """`Lease.of(root).hold(items)`."""
    Lease.of(root).hold(items)


def live_items(root: str | Path | None = None, *, remove_stale: bool = True) -> tuple[set[str], int]:
    """The items every live build holds, and how many lease files there were of live builds. Lease files
    of finished or killed builds are removed. Call with the `gc` lock held exclusively."""
    directory = leases_dir(root)
    items: set[str] = set()
    live = 0
    if not directory.is_dir():
        return items, live
    for path in sorted(directory.glob("*.lease")):
        try:
            handle = open(path, encoding="utf-8")
        except OSError:
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                live += 1
                items.update(line.strip() for line in handle if line.strip())
                continue
            if remove_stale:
                with contextlib.suppress(OSError):
                    path.unlink()
    return items, live
