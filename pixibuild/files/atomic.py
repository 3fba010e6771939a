"""Write outputs under a temporary name and rename into place: a crash never leaves a
half-written file (or directory) under its final name."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator


def current_umask() -> int:
    """The process umask, read without changing it (os.umask can only set it: setting and restoring
    races with other threads creating files; that fallback is for systems without /proc)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (best effort: some filesystems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """A process with this pid exists (one of another user counts): its temp files are not stale."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temp_prefix(path: Path) -> str:
    """`.<name>.<pid>.`: the pid lets a later run tell a crashed writer's leftovers from a live one's."""
    return f".{path.name}.{os.getpid()}."


def remove_stale_temps(path: Path) -> None:
    """Delete temp files/dirs beside `path` left by writers that were killed (their pid is gone)."""
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return
    head = f".{path.name}."
    for sibling in siblings:
        name = sibling.name
        if not name.startswith(head) or not name.endswith((".part", ".old")):
            continue
        pid = name[len(head):].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    sibling.unlink()


@contextlib.contextmanager
def atomic_output(path: str | Path, *, mode: int = 0o644, fsync: bool = True) -> Iterator[BinaryIO]:
    """Open a temp file beside `path`; on success flush, fsync and rename it to `path`.

    The file gets `mode & ~umask`, as open() would have given it (mkstemp makes temp files 0600).

    On any exception the temp file is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            if fsync:
                os.fsync(out.fileno())
        os.chmod(tmp, mode & ~current_umask())
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, mode: int = 0o644, fsync: bool = True) -> None:
    """Small outputs (JSON, scripts) written atomically."""
    with atomic_output(path, mode=mode, fsync=fsync) as out:
        out.write(data)


@contextlib.contextmanager
def atomic_directory(path: str | Path, *, keep_existing: bool = False) -> Iterator[Path]:
    """Build a directory under a temp name beside `path`, then swap it in.

    An existing `path` is replaced only after the new tree is complete. With `keep_existing` (for
    content-addressed trees, which any writer builds identically) an existing `path` is left alone
    and ours is dropped: other processes may be reading it, and replacing it would pull the tree
    out from under them mid-walk. The directory gets the mode
    mkdir would have given it (0777 & ~umask: 0755 under the usual umask 022), not mkdtemp's 0700:
    an environment unpacked by root must be usable by everyone.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".part", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        yield tmp
        if keep_existing:
            _rename_unless_present(tmp, path)
        else:
            _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _rename_unless_present(tmp: Path, path: Path) -> None:
    """Rename `tmp` to `path` unless a complete `path` is already there (then `tmp` goes)."""
    try:
        os.rename(tmp, path)  # fails with ENOTEMPTY/EEXIST over a non-empty directory
    except OSError:
        if not path.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, path: Path) -> None:
    """Rename `tmp` to `path`, moving an existing `path` aside first. Another writer racing on the
    same path (outputs are content-addressed, so it writes the same tree) may win: then ours goes."""
    for _ in range(10):
        if path.exists() or path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".old", dir=path.parent))
            try:
                os.rename(path, old / "x")
            except FileNotFoundError:
                pass  # the other writer moved it first
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, path)
            return
        except OSError as exc:  # ENOTEMPTY/EEXIST: a racing writer put its tree there meanwhile
            if not path.exists():
                raise
            last = exc
    raise last
