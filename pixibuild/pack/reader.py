"""Read a pixi-pack pack (tar file, stdin, or extracted directory) without extracting it.

A tar file is indexed by its headers only (bodies are skipped with seeks); package archives are
then read straight out of the tar as seekable member streams, so unpacking never writes a copy of
the channel. Only stdin, which cannot seek, is spooled to a temporary file first.

A pack is checked against itself before anything of it is trusted: every package archive must have
the size and the sha256 its own `channel/<subdir>/repodata.json` gives (the hash is computed while
the installer reads the archive, files/verified.py: no extra pass), and every wheel must be one
`environment.yml` lists (the pack format carries no wheel hashes: pixi-pack never checks them).
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Callable

from packaging.utils import canonicalize_name, canonicalize_version

from pixibuild.errors import InputError
from pixibuild.files.verified import VerifiedBlob
from pixibuild.files.window import Slice
from pixibuild.conda.platforms import current_subdir
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.conda.archive import check_member_name
from pixibuild.pack.format import CHANNEL_DIR, ENVIRONMENT_FILE, METADATA_FILE, PACK_FORMAT_VERSION, PYPI_DIR, channel_member

log = logging.getLogger(__name__)


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
            return io.BufferedReader(Slice(open(path, "rb"), offset, size), 1 << 16)

        return open_member

    def size(self, name: str) -> int:
        if self._dir is not None:
            return (self._dir / name).stat().st_size
        info = self._members.get(name)
        if info is None:
            raise InputError(f"{self.label}: {name}: missing from the pack")
        return info.size

    def blob(self, name: str, algorithm: str, digest: str, what: str) -> VerifiedBlob:
        """Member `name` as a VerifiedBlob that must hash to `digest` (`what` names where that digest
        comes from, for the error)."""
        label = self.label

        def mismatch(blob: VerifiedBlob, actual: str) -> InputError:
            return InputError(f"{label}: {name}: {algorithm} is {actual} but {what} says {blob.expected}: "
                              "the package is not the one this pack was made with (swapped or damaged); "
                              "nothing was installed")

        if self._dir is not None:
            return VerifiedBlob(self._dir / name, algorithm, digest, label=name, on_mismatch=mismatch)
        info = self._members.get(name)
        if info is None:
            raise InputError(f"{self.label}: {name}: missing from the pack")
        assert self._tar_path is not None
        return VerifiedBlob(self._tar_path, algorithm, digest, label=name, on_mismatch=mismatch,
                            offset=info.offset_data, length=info.size)

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
    if not reader.has(METADATA_FILE):
        raise InputError(f"{reader.label}: {METADATA_FILE}: missing (not a pixi-pack pack)")
    try:
        meta = json.loads(reader.read(METADATA_FILE, 1 << 20))
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


def conda_packages(reader: PackReader) -> list[tuple[CondaRecord, VerifiedBlob | Callable[[], IO[bytes]] | Path]]:
    """Every package of every `channel/<subdir>/repodata.json`, paired with its archive in the pack:
    a VerifiedBlob checked against that record's sha256 (else md5) while it is read. The sizes are
    checked here, before anything is read."""
    out = []
    for name in reader.names():
        parts = name.split("/")
        if len(parts) != 3 or parts[0] != CHANNEL_DIR or parts[2] != "repodata.json":
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
            member = channel_member(subdir, file_name)
            record = _record(reader.label, member, subdir, file_name, raw)
            out.append((record, _checked(reader, name, member, record)))
    return out


def _checked(reader: PackReader, index: str, member: str, record: CondaRecord) -> VerifiedBlob | Callable[[], IO[bytes]] | Path:
    """The archive of `record`, held to what the pack's repodata.json says about it."""
    size = reader.size(member)
    if record.size is not None and size != record.size:
        raise InputError(f"{reader.label}: {member}: {size} bytes but {index} says {record.size}: the package is "
                         "not the one this pack was made with (swapped or damaged); nothing was installed")
    if record.sha256:
        return reader.blob(member, "sha256", record.sha256, index)
    if record.md5:
        return reader.blob(member, "md5", record.md5, index)
    log.warning("%s: %s: %s gives no sha256 or md5: the archive cannot be checked", reader.label, member, index)
    return reader.opener(member)


def _record(label: str, member: str, subdir: str, file_name: str, raw: object) -> CondaRecord:
    where = f"{label}: {member}: {file_name}"
    if not isinstance(raw, dict):
        raise InputError(f"{where}: a repodata record must be a JSON object")
    url = f"file://{Path(label).absolute().as_posix()}/{member}" if label != "<stdin>" else f"file:///{member}"
    return CondaRecord.from_repodata(raw, url=url, file_name=file_name, subdir=subdir, where=where)


def wheels(reader: PackReader) -> list[tuple[PypiRecord, Callable[[], IO[bytes]] | Path]]:
    """The wheels under `pypi/`, each one `environment.yml` lists (`name==version` under `pip:`)."""
    out = []
    for name in reader.names():
        if name.startswith(f"{PYPI_DIR}/") and name.count("/") == 1:
            file_name = name.split("/", 1)[1]
            if not file_name.endswith(".whl"):
                raise InputError(f"{reader.label}: {name}: not a wheel file")
            record = PypiRecord.from_wheel_file(file_name, where=f"{reader.label}: {name}")
            out.append((record, reader.opener(name)))
    if out or reader.has(ENVIRONMENT_FILE):
        _check_listed(reader, [record for record, _ in out])
    return out


_PIP_LINE = re.compile(r"^ {4}- ([A-Za-z0-9._-]+)==(\S+)\s*$")


def _check_listed(reader: PackReader, found: list[PypiRecord]) -> None:
    """Wheels and environment.yml's pip list must agree: a wheel the pack was not made with (or one
    missing) is refused naming it."""
    if not reader.has(ENVIRONMENT_FILE):
        raise InputError(f"{reader.label}: environment.yml: missing, but the pack holds wheels (pypi/)")
    text = reader.read(ENVIRONMENT_FILE, 16 << 20).decode("utf-8", "replace")
    listed = {canonicalize_name(m.group(1)): m.group(2) for m in map(_PIP_LINE.match, text.splitlines()) if m}
    for record in found:
        version = listed.pop(canonicalize_name(record.name), None)
        if version is None or canonicalize_version(version) != canonicalize_version(record.version):
            says = f"lists {record.name}=={version}" if version else f"does not list {record.name}"
            raise InputError(f"{reader.label}: pypi/{record.file_name}: environment.yml {says}: the wheel is not the one this pack "
                             "was made with; nothing was installed")
    if listed:
        missing = ", ".join(f"{n}=={v}" for n, v in sorted(listed.items()))
        raise InputError(f"{reader.label}: environment.yml lists {missing} but pypi/ has no such wheel")
