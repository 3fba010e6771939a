"""Image ≡ unpack: the environment an image holds at its prefix, compared with an installed
directory (what `pixibuild unpack` of the same packages writes at the same prefix) — paths, kinds,
modes, symlink targets and file bytes (by sha256). A CI guard that the tarball and the image of one
graph deliver the same environment.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Sequence

from pixibuild.oci.layer import Layer
from pixibuild.oci.rootfs import Entry, merged_tree

Description = tuple  # (kind, mode, target or sha256)


def image_environment(layers: Sequence[Layer], prefix: str) -> dict[str, Description]:
    """path relative to `prefix` → description, from the image's layers (base layers included: a
    base that ships files inside the prefix changes the environment too)."""
    mount = prefix.strip("/") + "/"
    tree = merged_tree(layers, hash_files=lambda p: p.startswith(mount))
    return {path[len(mount):]: _describe(entry) for path, entry in tree.items() if path.startswith(mount)}


def _describe(entry: Entry) -> Description:
    if entry.kind == "symlink":
        return ("symlink", None, entry.target)
    if entry.kind == "dir":
        return ("dir", entry.mode & 0o7777, None)
    if entry.kind in ("file", "hardlink"):
        return ("file", entry.mode & 0o7777, entry.sha256)
    return (entry.kind, entry.mode & 0o7777, None)


def directory_environment(root: Path) -> dict[str, Description]:
    """The same description of an installed directory."""
    out: dict[str, Description] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", None, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mode & 0o7777, None)
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                out[rel] = ("file", st.st_mode & 0o7777, h.hexdigest())
            else:
                out[rel] = ("other", st.st_mode & 0o7777, None)
    return out


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def differences(image: dict[str, Description], installed: dict[str, Description], *,
                umask: int | None = None, limit: int | None = None) -> list[str]:
    """What differs, one line per path. Image directories are always 0755; an installed directory's
    mode is its creator's umask applied to that, so directories compare through `umask`."""
    mask = _current_umask() if umask is None else umask
    out = []
    for path in sorted(set(image) | set(installed)):
        a, b = image.get(path), installed.get(path)
        if a is not None and b is not None and a[0] == b[0] == "dir":
            if (a[1] & ~mask) == b[1]:
                continue
        elif a == b:
            continue
        out.append(f"{path}: image {_show(a)}, unpack {_show(b)}")
        if limit is not None and len(out) >= limit:
            break
    return out


def _show(value: Description | None) -> str:
    if value is None:
        return "missing"
    kind, mode, extra = value
    parts = [kind] + ([oct(mode)] if mode is not None else []) + ([str(extra)[:16]] if extra else [])
    return " ".join(parts)
