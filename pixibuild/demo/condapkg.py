"""Write real, deterministic conda packages (`.conda` and `.tar.bz2`) from a small declarative spec.

Tests, benchmarks and the embedded demo need packages that exercise every installer path (text and
binary prefix placeholders, symlinks, directories, noarch python with entry points, exec bits) without
a conda channel on the network. The archives are the real formats, readable by conda and rattler.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence

import zstandard

from pixibuild.conda.records import CondaRecord

PREFIX_TOKEN = b"@PREFIX@"
"""Write this in file contents where the build prefix would be; the writer puts the placeholder there."""

PLACEHOLDER = ("/opt/conda-bld/pkg_1700000000000/_h_env" + "_placehold" * 30)[:255]
"""A 255-byte build prefix like conda-build's: long, so binary replacement has room for real prefixes."""

TEXT_PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"
"""The classic short placeholder, used for text-mode files when `long_text_placeholder` is False."""

FIXED_MTIME = 1_700_000_000


@dataclass(frozen=True)
class PkgFile:
    """One payload entry. `content` may contain PREFIX_TOKEN where `prefix` says how to rewrite it."""

    path: str
    content: bytes = b""
    mode: int = 0o644
    symlink: str | None = None
    prefix: Literal["text", "binary"] | None = None
    directory: bool = False
    no_link: bool = False


@dataclass
class PackageSpec:
    """What to put in the archive's `info/` and payload."""

    name: str
    version: str = "1.0"
    build: str = "0"
    build_number: int = 0
    subdir: str = "linux-64"
    depends: Sequence[str] = ()
    constrains: Sequence[str] = ()
    noarch: Literal["python", "generic"] | None = None
    entry_points: Sequence[str] = ()
    files: Sequence[PkgFile] = ()
    license: str = "BSD-3-Clause"
    timestamp: int = FIXED_MTIME * 1000
    legacy_metadata: bool = False
    """Write `info/files` + `info/has_prefix` instead of `info/paths.json` (old packages)."""
    long_text_placeholder: bool = True
    extra_info: dict[str, bytes] = field(default_factory=dict)
    """Additional `info/<name>` files (e.g. recipe bits, about.json)."""

    @property
    def dist_name(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"

    def index_json(self) -> dict:
        index: dict = {
            "arch": None if self.subdir == "noarch" else _arch(self.subdir),
            "build": self.build,
            "build_number": self.build_number,
            "depends": list(self.depends),
            "license": self.license,
            "name": self.name,
            "platform": None if self.subdir == "noarch" else self.subdir.split("-")[0],
            "subdir": self.subdir,
            "timestamp": self.timestamp,
            "version": self.version,
        }
        if self.constrains:
            index["constrains"] = list(self.constrains)
        if self.noarch:
            index["noarch"] = self.noarch
        return index


def _arch(subdir: str) -> str | None:
    return {"64": "x86_64", "32": "x86", "aarch64": "aarch64", "arm64": "arm64",
            "ppc64le": "ppc64le", "s390x": "s390x"}.get(subdir.split("-", 1)[-1])


def _placeholder_for(spec: PackageSpec, f: PkgFile) -> str:
    if f.prefix == "text" and not spec.long_text_placeholder:
        return TEXT_PLACEHOLDER
    return PLACEHOLDER


def _payload(spec: PackageSpec) -> list[tuple[PkgFile, bytes]]:
    out = []
    for f in spec.files:
        data = f.content
        placeholder = _placeholder_for(spec, f).encode()
        if f.prefix == "binary" and PREFIX_TOKEN not in data and placeholder in data:
            pass  # compiled with the placeholder already in place (a real binary cannot grow)
        elif f.prefix:
            if PREFIX_TOKEN not in data:
                raise ValueError(f"{spec.name}: {f.path}: prefix={f.prefix} but no {PREFIX_TOKEN!r} in content")
            data = data.replace(PREFIX_TOKEN, _placeholder_for(spec, f).encode())
        out.append((f, data))
    return sorted(out, key=lambda item: item[0].path)


def _paths_json(spec: PackageSpec, payload: list[tuple[PkgFile, bytes]]) -> bytes:
    paths = []
    for f, data in payload:
        entry: dict = {"_path": f.path}
        if f.directory:
            entry["path_type"] = "directory"
        elif f.symlink is not None:
            entry["path_type"] = "softlink"
            entry["sha256"] = hashlib.sha256(f.symlink.encode()).hexdigest()
            entry["size_in_bytes"] = len(f.symlink.encode())
        else:
            entry["path_type"] = "hardlink"
            entry["sha256"] = hashlib.sha256(data).hexdigest()
            entry["size_in_bytes"] = len(data)
            if f.prefix:
                entry["file_mode"] = f.prefix
                entry["prefix_placeholder"] = _placeholder_for(spec, f)
        if f.no_link:
            entry["no_link"] = True
        paths.append(entry)
    return _json({"paths": paths, "paths_version": 1})


def _json(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _info_files(spec: PackageSpec, payload: list[tuple[PkgFile, bytes]]) -> dict[str, bytes]:
    info: dict[str, bytes] = {"info/index.json": _json(spec.index_json())}
    if spec.legacy_metadata:
        info["info/files"] = "".join(f"{f.path}\n" for f, _ in payload if not f.directory).encode()
        lines = [f"{_placeholder_for(spec, f)} {f.prefix} {f.path}\n" for f, _ in payload if f.prefix]
        if lines:
            info["info/has_prefix"] = "".join(lines).encode()
    else:
        info["info/paths.json"] = _paths_json(spec, payload)
    if spec.noarch == "python":
        info["info/link.json"] = _json({"noarch": {"entry_points": list(spec.entry_points), "type": "python"},
                                        "package_metadata_version": 1})
    for name, data in spec.extra_info.items():
        info[f"info/{name}"] = data
    return info


def _tar_members(entries: Iterable[tuple[str, PkgFile | None, bytes]]) -> bytes:
    """A deterministic, PAX tar of (archive path, payload entry or None for info files, bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, f, data in sorted(entries, key=lambda e: e[0]):
            ti = tarfile.TarInfo(arcname)
            ti.mtime = FIXED_MTIME
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            if f is not None and f.directory:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tar.addfile(ti)
            elif f is not None and f.symlink is not None:
                ti.type = tarfile.SYMTYPE
                ti.linkname = f.symlink
                ti.mode = 0o777
                tar.addfile(ti)
            else:
                ti.mode = f.mode if f is not None else 0o644
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def write_package(spec: PackageSpec, out_dir: Path, fmt: Literal[".conda", ".tar.bz2"] = ".conda") -> Path:
    """Write `<out_dir>/<name>-<version>-<build><fmt>` and return its path. Same spec → same bytes."""
    payload = _payload(spec)
    info = _info_files(spec, payload)
    info_entries = [(name, None, data) for name, data in info.items()]
    pkg_entries = [(f.path, f, data) for f, data in payload]
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{spec.dist_name}{fmt}"
    if fmt == ".tar.bz2":
        raw = _tar_members(info_entries + pkg_entries)
        target.write_bytes(bz2.compress(raw, 9))
        return target
    cctx = zstandard.ZstdCompressor(level=3)
    members = [
        ("metadata.json", json.dumps({"conda_pkg_format_version": 2}).encode()),
        (f"info-{spec.dist_name}.tar.zst", cctx.compress(_tar_members(info_entries))),
        (f"pkg-{spec.dist_name}.tar.zst", cctx.compress(_tar_members(pkg_entries))),
    ]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members:
            zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data)
    target.write_bytes(buf.getvalue())
    return target


def repodata_record(spec: PackageSpec, path: Path) -> dict:
    """The repodata.json record of a written package (index.json + size and hashes)."""
    data = path.read_bytes()
    record = {k: v for k, v in spec.index_json().items() if v is not None}
    record.update(md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    return record


def write_channel(specs: Iterable[tuple[PackageSpec, str]], channel_dir: Path) -> dict[str, Path]:
    """Write packages (spec, format) under `channel_dir/<subdir>/` plus each subdir's repodata.json.

    Returns file name → path (a name used in two subdirs maps to the last one written: look such
    packages up as `channel_dir/<subdir>/<file name>`). Every subdir gets a repodata.json and `noarch/` always exists, as
    conda clients expect.
    """
    by_subdir: dict[str, dict[str, dict]] = {"noarch": {}}
    written: dict[str, Path] = {}
    for spec, fmt in specs:
        path = write_package(spec, channel_dir / spec.subdir, fmt)
        by_subdir.setdefault(spec.subdir, {})[path.name] = repodata_record(spec, path)
        written[path.name] = path
    for subdir, records in by_subdir.items():
        repodata = {
            "info": {"subdir": subdir},
            "packages": {k: v for k, v in sorted(records.items()) if k.endswith(".tar.bz2")},
            "packages.conda": {k: v for k, v in sorted(records.items()) if k.endswith(".conda")},
            "repodata_version": 1,
        }
        (channel_dir / subdir).mkdir(parents=True, exist_ok=True)
        (channel_dir / subdir / "repodata.json").write_bytes(_json(repodata))
    return written


def locked_record(spec: PackageSpec, path: Path, url: str | None = None) -> CondaRecord:
    """The CondaRecord a lock would pin for a written package (url defaults to its file:// URL)."""
    return CondaRecord.from_repodata(repodata_record(spec, path), url=url or path.resolve().as_uri(),
                                     file_name=path.name, where=str(path))
