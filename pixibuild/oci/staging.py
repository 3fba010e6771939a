"""Where a package layer's files are staged before they are tarred: a RAM-backed tmpfs for small
layers, the layer cache's own directory otherwise.

Why: a cold build of a real environment spends most of its time creating files and symlinks in the
staging dir (thousands per layer, ~1 ms each on a busy ext4) and reading them back, not compressing.
On tmpfs those are memory operations. The layer bytes do not depend on where the files were staged
(the tar writer fixes owners, mtimes and order and keeps or normalises modes; the installer reads
hard links from the staging dir itself, never from the store, so nothing assumes one filesystem).

Memory: a layer is staged on tmpfs only when its archives total at most `max_archive_bytes`
(default 64 MiB) and the tmpfs has room for `EXPANSION` times that beyond what this process has
already reserved there plus `HEADROOM`. Staged files live in RAM until the layer is written, so the
tmpfs use is bounded by about (installed size of a ≤ 64 MiB-archive layer) × parallel layer builds
(`-j`, default the number of cores); it is shared memory, not the build's RSS.

`PIXIBUILD_LAYER_STAGING`: unset → /dev/shm, else $XDG_RUNTIME_DIR (the first writable directory);
a path → stage small layers there; `off` (or empty) → always the layer cache's directory.

A killed build would leave its staged files in RAM until the next reboot: staging dirs on the fast
root are named `pixibuild-stage-<pid>-…`, and the first layer a process stages there removes those
whose process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from pixibuild.files.atomic import pid_alive

STAGING_ENV = "PIXIBUILD_LAYER_STAGING"
MAX_ARCHIVE_BYTES = 64 << 20
"""Largest sum of a layer's package archive sizes staged in RAM."""
EXPANSION = 4
"""Installed bytes assumed per archive byte when checking the tmpfs has room (conda archives are
compressed; the check errs on the side of disk)."""
HEADROOM = 256 << 20
"""Bytes of the tmpfs left free for everyone else."""
FAST_PREFIX = "pixibuild-stage-"


def _default_roots() -> list[Path]:
    roots = [Path("/dev/shm")]
    if os.environ.get("XDG_RUNTIME_DIR"):
        roots.append(Path(os.environ["XDG_RUNTIME_DIR"]))
    return roots


def _usable(directory: Path) -> bool:
    return directory.is_dir() and os.access(directory, os.W_OK | os.X_OK)


@dataclass
class StagingPolicy:
    """Chooses a staging dir per layer: `fast_root` (RAM) for small layers with room, else the fallback."""

    fast_root: Path | None
    max_archive_bytes: int = MAX_ARCHIVE_BYTES
    _reserved: int = field(default=0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _swept: bool = field(default=False, init=False, repr=False)

    @classmethod
    def from_environment(cls) -> "StagingPolicy":
        """The policy `PIXIBUILD_LAYER_STAGING` asks for (see the module docstring)."""
        value = os.environ.get(STAGING_ENV)
        if value is None:
            return cls(next((root for root in _default_roots() if _usable(root)), None))
        if value.strip() in ("", "off"):
            return cls(None)
        return cls(Path(value))

    def _reserve(self, archive_bytes: int | None) -> int | None:
        """Bytes reserved on the fast root for a layer of `archive_bytes`, or None: stage on disk."""
        if self.fast_root is None or archive_bytes is None or archive_bytes > self.max_archive_bytes:
            return None
        if not _usable(self.fast_root):
            return None
        need = archive_bytes * EXPANSION
        try:
            st = os.statvfs(self.fast_root)
        except OSError:
            return None
        with self._lock:
            if st.f_bavail * st.f_frsize < self._reserved + need + HEADROOM:
                return None
            self._reserved += need
        return need

    def _sweep(self, root: Path) -> None:
        """Remove staging dirs of dead processes from the fast root (once per policy)."""
        with self._lock:
            if self._swept:
                return
            self._swept = True
        with contextlib.suppress(OSError):
            for leftover in root.glob(f"{FAST_PREFIX}*"):
                pid = leftover.name[len(FAST_PREFIX):].split("-", 1)[0]
                if pid.isdigit() and not pid_alive(int(pid)) and leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover, ignore_errors=True)

    def _release(self, reserved: int) -> None:
        with self._lock:
            self._reserved -= reserved

    @contextlib.contextmanager
    def _directory(self, parent: Path, prefix: str) -> Iterator[Path]:
        staging = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def stage(self, archive_bytes: int | None, fallback: Path, populate: Callable[[Path], None],
              consume: Callable[[Path], None]) -> None:
        """`populate(dir)` a fresh staging dir, then `consume(dir)` it; the dir is removed afterwards.
        It is on the fast root when the layer is small and there is room, else under `fallback`. A
        fast root that fills up while populating (ENOSPC) is not an error: the layer is staged
        again under `fallback`."""
        reserved = self._reserve(archive_bytes)
        if reserved is not None:
            assert self.fast_root is not None
            self._sweep(self.fast_root)
            try:
                with self._directory(self.fast_root, f"{FAST_PREFIX}{os.getpid()}-") as staging:
                    try:
                        populate(staging)
                    except OSError as error:
                        if error.errno != errno.ENOSPC:
                            raise
                    else:
                        consume(staging)
                        return
            finally:
                self._release(reserved)
        fallback.mkdir(parents=True, exist_ok=True)
        with self._directory(fallback, "stage-") as staging:
            populate(staging)
            consume(staging)
