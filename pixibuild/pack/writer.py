"""The archive node: stream verified blobs and index files into a pixi-pack `environment.tar`.

Entry order and headers follow pixi-pack (a sorted pre-order walk; mtime 1153704088 unless
SOURCE_DATE_EPOCH is set; uid/gid 0; 0755 for directories and executables, 0644 otherwise), so
the same inputs give the same bytes. Package bodies are copied straight from the store: no staging
copy, constant memory; a store blob's sha256 is checked as it is copied (files/verified.py), so a blob
damaged on disk fails the pack instead of shipping.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Sequence, Union

from pixibuild.errors import InputError
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.files.tar import DeterministicTarWriter
from pixibuild.files.verified import VerifiedBlob
from pixibuild.pack.format import ENVIRONMENT_FILE, METADATA_FILE, channel_member, wheel_member
from pixibuild.pack.metadata import environment_yml, pixi_pack_json
from pixibuild.pack.repodata import repodata_json
from pixibuild.store.blobs import blob_source

PIXI_PACK_MTIME = 1153704088
"""pixi-pack's fixed header time (tar-rs `HeaderMode::Deterministic`)."""


def pack_mtime() -> int:
    """SOURCE_DATE_EPOCH when set (reproducible-builds convention), else pixi-pack's constant."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    return int(value) if value and value.isdigit() else PIXI_PACK_MTIME


Blob = Union[Path, VerifiedBlob]
"""A package file: a store blob (checked while copied, whether given as a VerifiedBlob or by its store
path) or any other file (an injected package outside the store, a test's archive)."""


@dataclass(frozen=True)
class PackContents:
    """Everything that goes into one pack: records paired with their verified files."""

    platform: str
    conda: Sequence[tuple[CondaRecord, Blob]]
    wheels: Sequence[tuple[PypiRecord, Blob]] = ()
    index: dict[str, bytes] = field(default_factory=dict)
    """subdir → repodata.json bytes; computed from `conda` when empty."""

    def repodata(self) -> dict[str, bytes]:
        if self.index:
            return self.index
        by_subdir: dict[str, list[CondaRecord]] = {}
        for record, _ in self.conda:
            by_subdir.setdefault(record.subdir, []).append(record)
        return {subdir: repodata_json(subdir, recs) for subdir, recs in sorted(by_subdir.items())}


@dataclass(frozen=True)
class _Entry:
    path: str
    data: bytes | None = None
    source: Blob | None = None
    is_dir: bool = False


def _entries(contents: PackContents) -> list[_Entry]:
    """Every archive member, in pixi-pack's order: a pre-order walk sorted by name at each level."""
    tree: dict[str, _Entry] = {}
    for subdir, data in contents.repodata().items():
        tree[channel_member(subdir, "repodata.json")] = _Entry(channel_member(subdir, "repodata.json"), data=data)
    for record, blob in contents.conda:
        path = channel_member(record.subdir, record.file_name)
        if path in tree:
            raise InputError(f"two packages would be written to {path} (the second is {record.dist_name})",
                             field="packages")
        tree[path] = _Entry(path, source=blob_source(blob, record.file_name))
    for wheel, blob in contents.wheels:
        path = wheel_member(wheel.file_name)
        if path in tree:
            raise InputError(f"two wheels would be written to {path} ({wheel.name} {wheel.version})", field="pypi")
        tree[path] = _Entry(path, source=blob_source(blob, wheel.file_name))
    tree[ENVIRONMENT_FILE] = _Entry(ENVIRONMENT_FILE,
                                     data=environment_yml([r for r, _ in contents.conda], [w for w, _ in contents.wheels]))
    tree[METADATA_FILE] = _Entry(METADATA_FILE, data=pixi_pack_json(contents.platform))
    for path in list(tree):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            tree.setdefault(parent, _Entry(parent, is_dir=True))
    return [tree[p] for p in sorted(tree, key=lambda p: p.encode().split(b"/"))]


def _mode(entry: _Entry) -> int:
    """0755 for directories, 0644 for files: package and wheel files are data, and taking the
    mode from the store blob would make the archive depend on how the blob got there."""
    return 0o755 if entry.is_dir else 0o644


def write_tar(contents: PackContents, out: BinaryIO, *, mtime: int | None = None) -> int:
    """Stream the pack as a tar to `out`; returns the number of bytes written."""
    writer = DeterministicTarWriter(out, mtime=pack_mtime() if mtime is None else mtime)
    for entry in _entries(contents):
        if entry.is_dir:
            writer.add_dir(entry.path, 0o755)
        elif entry.data is not None:
            writer.add_bytes(entry.path, entry.data)
        elif isinstance(entry.source, VerifiedBlob):
            writer.add_blob(entry.path, entry.source, _mode(entry))
        else:
            assert entry.source is not None
            writer.add_file(entry.path, entry.source, _mode(entry))
    writer.close()
    return writer.bytes_written


def write_directory(contents: PackContents, out_dir: Path) -> None:
    """`--directory-only`: the same members as files (copies, so editing them never touches the store)."""
    for entry in _entries(contents):
        target = out_dir / entry.path
        if entry.is_dir:
            target.mkdir(parents=True, exist_ok=True)
        elif entry.data is not None:
            target.write_bytes(entry.data)
        elif isinstance(entry.source, VerifiedBlob):
            with open(target, "wb") as out:
                entry.source.copy_into(out)
            os.chmod(target, _mode(entry))
        else:
            assert entry.source is not None
            shutil.copyfile(entry.source, target)
            os.chmod(target, _mode(entry))
