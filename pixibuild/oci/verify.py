"""Image ≡ unpack: the environment an image holds at its prefix, compared with an installed
directory (what `pixibuild unpack` of the same packages writes at the same prefix) — paths, kinds,
modes, symlink targets and file bytes (by sha256). A CI guard that the tarball and the image of one
graph deliver the same environment.

`without_origin` compares conda-meta records without `url` and `channel`: where a package was
installed from is by design not the same when one side installed from the lock's channels and the
other from a pack's bundled channel (pixi-unpack records that one).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Sequence

from pixibuild.files.atomic import current_umask
from pixibuild.files.digest import json_digest, sha256_file
from pixibuild.oci.layer import Layer
from pixibuild.oci.rootfs import Entry, merged_tree

Description = tuple  # (kind, mode, target or sha256)


ORIGIN_FIELDS = ("url", "channel")


def _is_record(rel: str) -> bool:
    return rel.startswith("conda-meta/") and rel.endswith(".json")


def _record_digest(data: bytes) -> str:
    try:
        record = json.loads(data)
    except ValueError:
        return hashlib.sha256(data).hexdigest()
    for key in ORIGIN_FIELDS:
        record.pop(key, None)
    return "record:" + json_digest(record)


def image_environment(layers: Sequence[Layer], prefix: str, *, without_origin: bool = False
                      ) -> dict[str, Description]:
    """path relative to `prefix` → description, from the image's layers (base layers included: a
    base that ships files inside the prefix changes the environment too)."""
    mount = prefix.strip("/") + "/"
    records = (lambda p: p.startswith(mount) and _is_record(p[len(mount):])) if without_origin else (lambda p: False)
    tree = merged_tree(layers, hash_files=lambda p: p.startswith(mount), read_whole=records)
    out = {}
    for path, entry in tree.items():
        if path.startswith(mount):
            out[path[len(mount):]] = _describe(entry)
            if entry.content is not None:
                out[path[len(mount):]] = ("file", entry.mode & 0o7777, _record_digest(entry.content))
    return out


def _describe(entry: Entry) -> Description:
    if entry.kind == "symlink":
        return ("symlink", None, entry.target)
    if entry.kind == "dir":
        return ("dir", entry.mode & 0o7777, None)
    if entry.kind in ("file", "hardlink"):
        return ("file", entry.mode & 0o7777, entry.sha256)
    return (entry.kind, entry.mode & 0o7777, None)


def directory_environment(root: Path, *, without_origin: bool = False) -> dict[str, Description]:
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
            elif stat.S_ISREG(st.st_mode) and without_origin and _is_record(rel):
                out[rel] = ("file", st.st_mode & 0o7777, _record_digest(path.read_bytes()))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", st.st_mode & 0o7777, sha256_file(path)[0])
            else:
                out[rel] = ("other", st.st_mode & 0o7777, None)
    return out


def differences(image: dict[str, Description], installed: dict[str, Description], *,
                umask: int | None = None, limit: int | None = None) -> list[str]:
    """What differs, one line per path. Image directories are always 0755 and conda-meta records
    0644; an installed directory's (or record's) mode is its creator's umask applied to that, so
    those compare through `umask` (package files keep their archive modes on both sides: exact)."""
    mask = current_umask() if umask is None else umask
    out = []
    for path in sorted(set(image) | set(installed)):
        a, b = image.get(path), installed.get(path)
        masked = a is not None and b is not None and a[0] == b[0] and (a[0] == "dir" or path.startswith("conda-meta/"))
        if masked and (a[1] & ~mask) == b[1] and a[2] == b[2]:  # type: ignore[index]
            continue
        if a == b:
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
