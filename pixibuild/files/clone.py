"""Copies that never share an inode with their source: a reflink (copy-on-write clone) where the
filesystem can make one, else an in-kernel copy. A hard link would let a write to either name change
the other: an output a user edits (or a tool rewrites in place) must never reach into a cache."""

from __future__ import annotations

import errno
import fcntl
import shutil
from pathlib import Path

FICLONE = 0x40049409
"""ioctl(dest, FICLONE, src): share the extents copy-on-write (btrfs, xfs, bcachefs); a new inode."""
_NO_CLONE = (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.EBADF, errno.EPERM, errno.ENOSYS)


def try_clone(src_fd: int, dest_fd: int) -> bool:
    """Reflink the open file `src_fd` into the empty open file `dest_fd`; False where the filesystem
    cannot (ext4, tmpfs, across filesystems), any other error raised."""
    try:
        fcntl.ioctl(dest_fd, FICLONE, src_fd)
    except OSError as exc:
        if exc.errno not in _NO_CLONE:
            raise
        return False
    return True


def clone_or_copy(src: Path, dest: Path) -> None:
    """`dest` (new) with the bytes of `src`: a reflink, else shutil's in-kernel copy (sendfile)."""
    with open(src, "rb", buffering=0) as fin, open(dest, "wb", buffering=0) as fout:
        if try_clone(fin.fileno(), fout.fileno()):
            return
    shutil.copyfile(src, dest)
