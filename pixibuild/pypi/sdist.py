"""Unpack a verified sdist (a store blob) for one build: tar or zip, every member checked so nothing
lands outside the build directory (tarfile's `data` filter; zip names checked by hand)."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from pixibuild.errors import InputError


def _safe_name(name: str, where: str) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name:
        raise InputError(f"archive member {name!r} would be written outside the source directory", field=where)


def extract_sdist(blob: Path, file_name: str, dest: Path) -> Path:
    """Extract `blob` (named `file_name` in the lock) into `dest`; returns the project directory
    (the archive's single top-level directory, as sdists have, else `dest` itself)."""
    where = f"sdist {file_name}"
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if file_name.endswith(".zip"):
            with zipfile.ZipFile(blob) as zf:
                for name in zf.namelist():
                    _safe_name(name, where)
                zf.extractall(dest)
        else:
            with tarfile.open(blob, "r:*") as tf:
                tf.extractall(dest, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise InputError(f"cannot unpack: {exc}", field=where) from None
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return dest
