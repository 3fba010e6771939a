"""Read a pixi-pack pack (tar file, stdin, or extracted directory) without extracting it.

A tar file is indexed by its headers only (bodies are skipped with seeks); package archives are
then read straight out of the tar as seekable member streams, so unpacking never writes a copy of
the channel. Only stdin, which cannot seek, is spooled to a temporary file first.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Callable

from pixibuild.errors import InputError
from pixibuild.conda.platforms import current_subdir
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.conda.archive import check_member_name

PACK_FORMAT_VERSION = "1"


class _Slice(io.RawIOBase):
    """A read-only, seekable window [offset, offset+size) of a file: one member of an uncompressed tar."""

    def __init__(self, raw: IO[bytes], offset: int, size: int):
        self._raw, self._offset, self._size, self._pos = raw, offset, size, 0

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

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def]
        n = min(len(buf), self._size - self._pos)
        if n <= 0:
            return 0
        self._raw.seek(self._offset + self._pos)
        data = self._raw.read(n)
        buf[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


class PackReader:
    """Members of a pack by name: `read(name)`, `opener(name)`, `names()`."""

    def __init__(self, source: str | Path):
        self.label = str(source)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._dir: Path | None = None
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        self._tar_path: Path | None = None
        if str(source) == "-":
            self._tmp = tempfile.TemporaryDirectory(prefix="pixibuild-unpack-")
            spool = Path(self._tmp.name) / "pack.tar"
            with open(spool, "wb") as out:
                shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
            self.label = "<stdin>"
            self._open_tar(spool)
        elif Path(source).is_dir():
            self._dir = Path(source)
        elif Path(source).is_file():
            self._open_tar(Path(source))
        else:
            raise InputError(f"{source}: pack file not found")

    def _open_tar(self, path: Path) -> None:
        self._tar_path = path
        try:
            self._tar = tarfile.open(path, "r:")
            infos = self._tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InputError(f"{self.label}: not a readable pack tar ({exc})") from None
        for info in infos:
            name = check_member_name(self.label, info.name)
            if info.isdir():
                continue
            if not info.isreg() or info.sparse is not None:
                raise InputError(f"{self.label}: {name}: unexpected non-file member in pack")
            if name in self._members:
                raise InputError(f"{self.label}: {name}: duplicate member in pack")
            self._members[name] = info

    def names(self) -> list[str]:
        if self._dir is not None:
            return sorted(p.relative_to(self._dir).as_posix() for p in self._dir.rglob("*") if p.is_file())
        return sorted(self._members)

    def has(self, name: str) -> bool:
        if self._dir is not None:
            return (self._dir / name).is_file()
        return name in self._members

    def opener(self, name: str) -> Callable[[], IO[bytes]] | Path:
        if self._dir is not None:
            return self._dir / name
        info = self._members.get(name)
        if info is None:
            raise InputError(f"{self.label}: {name}: missing from the pack")
        assert self._tar_path is not None
        path, offset, size = self._tar_path, info.offset_data, info.size

        def open_member() -> IO[bytes]:
            # Its own file handle: packages are read by parallel threads.
            return io.BufferedReader(_Slice(open(path, "rb"), offset, size), 1 << 16)

        return open_member

    def read(self, name: str, limit: int = 256 << 20) -> bytes:
        source = self.opener(name)
        with (open(source, "rb") if isinstance(source, Path) else source()) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise InputError(f"{self.label}: {name}: too large")
        return data

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "PackReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def validate_metadata(reader: PackReader, platform: str | None = None) -> dict:
    """pixi-pack.json: version "1" and the platform of this machine (pixi-unpack's checks)."""
    if not reader.has("pixi-pack.json"):
        raise InputError(f"{reader.label}: pixi-pack.json: missing (not a pixi-pack pack)")
    try:
        meta = json.loads(reader.read("pixi-pack.json", 1 << 20))
    except ValueError as exc:
        raise InputError(f"{reader.label}: pixi-pack.json: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("version"), str) or "platform" not in meta:
        raise InputError(f"{reader.label}: pixi-pack.json: expected string 'version' and 'platform'")
    if meta["version"] != PACK_FORMAT_VERSION:
        raise InputError(f"Unsupported pixi-pack version: {meta['version']}")
    if meta["platform"] != (platform or current_subdir()):
        raise InputError(f"The pack was created for a different platform ({meta['platform']}, "
                         f"this machine is {platform or current_subdir()})")
    return meta


def conda_packages(reader: PackReader) -> list[tuple[CondaRecord, Callable[[], IO[bytes]] | Path]]:
    """Every package of every `channel/<subdir>/repodata.json`, paired with its archive in the pack."""
    out = []
    for name in reader.names():
        parts = name.split("/")
        if len(parts) != 3 or parts[0] != "channel" or parts[2] != "repodata.json":
            continue
        subdir = parts[1]
        try:
            repodata = json.loads(reader.read(name))
        except ValueError as exc:
            raise InputError(f"{reader.label}: {name}: not valid JSON ({exc})") from None
        entries = {**(repodata.get("packages") or {}), **(repodata.get("packages.conda") or {})}
        for file_name, raw in sorted(entries.items()):
            check_member_name(reader.label, file_name)
            if "/" in file_name:
                raise InputError(f"{reader.label}: {name}: bad package file name {file_name!r}")
            member = f"channel/{subdir}/{file_name}"
            out.append((_record(reader.label, member, subdir, file_name, raw), reader.opener(member)))
    return out


def _record(label: str, member: str, subdir: str, file_name: str, raw: object) -> CondaRecord:
    where = f"{label}: {member}: {file_name}"
    if not isinstance(raw, dict):
        raise InputError(f"{where}: a repodata record must be a JSON object")
    url = f"file://{Path(label).absolute().as_posix()}/{member}" if label != "<stdin>" else f"file:///{member}"
    return CondaRecord.from_repodata(raw, url=url, file_name=file_name, subdir=subdir, where=where)


def wheels(reader: PackReader) -> list[tuple[PypiRecord, Callable[[], IO[bytes]] | Path]]:
    out = []
    for name in reader.names():
        if name.startswith("pypi/") and name.count("/") == 1:
            file_name = name.split("/", 1)[1]
            if not file_name.endswith(".whl"):
                raise InputError(f"{reader.label}: {name}: not a wheel file")
            record = PypiRecord.from_wheel_file(file_name, where=f"{reader.label}: {name}")
            out.append((record, reader.opener(name)))
    return out
