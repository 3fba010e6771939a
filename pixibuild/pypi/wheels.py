"""Built wheels: where they are kept, how a later node finds one, and how one is made reproducible.

A built wheel's bytes are a store blob (by sha256, like a downloaded wheel); `<store>/pypi/wheels/<key>.json`
says which blob and which file name the wheel node with that key produced. Nodes after it get a
`WheelRef` (the key) and resolve it here — in the store, never by building or downloading.

Reproducible bytes: backends get SOURCE_DATE_EPOCH, and the wheel is then rewritten deterministically
whatever the backend did — entries sorted (the `.dist-info` last, RECORD last of all, its lines sorted),
every timestamp SOURCE_DATE_EPOCH (UTC), modes 0644/0755, deflate. flit-core and hatchling already honour
SOURCE_DATE_EPOCH; setuptools' bdist_wheel does for timestamps too, but orders entries (and RECORD lines)
the way the file system lists them, so the same tree could give other bytes in another checkout.
"""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from pixibuild.conda.records import PypiRecord
from pixibuild.errors import BuildError
from pixibuild.files.atomic import atomic_output, atomic_write_bytes
from pixibuild.files.digest import canonical_json
from pixibuild.store.blobs import Store
from pixibuild.store.roots import pypi_root


@dataclass(frozen=True)
class WheelRef:
    """A built wheel as later nodes know it before it exists: its wheel node's key."""

    key: str
    label: str
    """The locked package's name, for messages."""


def pointer_path(store_root: str | Path, key: str) -> Path:
    return pypi_root(store_root) / "wheels" / f"{key}.json"


def is_built(store_root: str | Path, key: str) -> bool:
    """The wheel node's output exists (pointer and blob): its up-to-date check."""
    try:
        data = json.loads(pointer_path(store_root, key).read_bytes())
        return Store(store_root).has(data["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def resolve(store_root: str | Path, ref: WheelRef) -> tuple[PypiRecord, Path]:
    """The built wheel's record (its real file name and hash) and its store blob."""
    try:
        data = json.loads(pointer_path(store_root, ref.key).read_bytes())
        record = PypiRecord(name=data["name"], version=data["version"], location=data["file_name"],
                            sha256=data["sha256"], requires_dist=tuple(data.get("requires_dist") or ()),
                            requires_python=data.get("requires_python"))
        path = Store(store_root).blob_path(record.sha256 or "")
    except (OSError, ValueError, KeyError, TypeError):
        raise BuildError(f"built wheel of {ref.label} is not in the store (its wheel node has not run)") from None
    if not path.is_file():
        raise BuildError(f"built wheel of {ref.label} ({record.file_name}) was removed from the store; build again")
    return record, path


def keep(store_root: str | Path, key: str, wheel: Path, locked: PypiRecord) -> tuple[PypiRecord, Path]:
    """Put a finished wheel in the store and record it under `key` (the pointer is written last)."""
    name, version, _build, _tags = parse_wheel_filename(wheel.name)
    blob = Store(store_root).ingest_file(wheel, label=wheel.name)
    record = PypiRecord(name=locked.name, version=str(version), location=wheel.name, sha256=blob.name,
                        requires_dist=locked.requires_dist, requires_python=locked.requires_python)
    pointer = {"name": record.name, "version": record.version, "file_name": wheel.name, "sha256": blob.name,
               "requires_dist": list(record.requires_dist), "requires_python": record.requires_python,
               "dist_name": str(name)}
    atomic_write_bytes(pointer_path(store_root, key), canonical_json(pointer), fsync=False)
    return record, blob


def _entry_order(name: str) -> tuple:
    top = name.split("/", 1)[0]
    in_dist_info = top.endswith(".dist-info") and "/" in name
    return (in_dist_info, in_dist_info and name.endswith("/RECORD"), name)


def normalize_wheel(source: Path, dest: Path, epoch: int) -> None:
    """Rewrite `source` into `dest` deterministically (see the module docstring); contents unchanged,
    so RECORD's hashes stay valid."""
    date_time = time.gmtime(epoch)[:6]
    try:
        with zipfile.ZipFile(source) as zin, atomic_output(dest, fsync=False) as raw:
            infos = [i for i in zin.infolist() if not i.is_dir()]
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                raise BuildError(f"{source.name}: the backend wrote a wheel with duplicate entries")
            with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zout:
                for info in sorted(infos, key=lambda i: _entry_order(i.filename)):
                    data = zin.read(info)
                    if info.filename.endswith(".dist-info/RECORD") and info.filename.count("/") == 1:
                        data = _sorted_record(data, info.filename)
                    out = zipfile.ZipInfo(info.filename, date_time=date_time)
                    executable = (info.external_attr >> 16) & 0o111
                    out.external_attr = (0o100755 if executable else 0o100644) << 16
                    out.compress_type = zipfile.ZIP_DEFLATED
                    out.create_system = 3
                    zout.writestr(out, data, compresslevel=6)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BuildError(f"{source.name}: the backend wrote a broken wheel ({exc})") from None


def _sorted_record(data: bytes, name: str) -> bytes:
    lines = [line for line in data.decode("utf-8").splitlines() if line.strip()]
    own = [line for line in lines if line.split(",", 1)[0] == name]
    rest = sorted(line for line in lines if line.split(",", 1)[0] != name)
    return ("\n".join(rest + own) + "\n").encode()


def check_wheel(wheel_name: str, locked: PypiRecord, *, target_platform: str, host_platform: str,
                target_python: str | None, builder_python: Callable[[], str | None], where: str) -> None:
    """The built wheel is the locked package, and fits the target: a pure wheel goes anywhere; a
    binary one only to a target this machine's platform and python built it for (never mis-tagged)."""
    try:
        name, version, _build, tags = parse_wheel_filename(wheel_name)
    except (InvalidWheelFilename, InvalidVersion) as exc:
        raise BuildError(f"the backend produced {wheel_name!r}, not a valid wheel name ({exc})", field=where) from None
    if name != canonicalize_name(locked.name):
        raise BuildError(f"the build produced {wheel_name}, a different package than the lock's {locked.name} "
                         "(run `pixi lock` again)", field=where)
    if locked.version and str(version) != locked.version:
        try:
            same = Version(locked.version) == version
        except InvalidVersion:
            same = False
        if not same:
            raise BuildError(f"the build produced version {version}, but the lock pins {locked.version} "
                             "(run `pixi lock` again)", field=where)
    pure = all(t.abi == "none" and t.platform == "any" for t in tags)
    if pure:
        return
    if target_platform != host_platform:
        raise BuildError(f"built {wheel_name}, which is not pure Python (py3-none-any): a wheel built on "
                         f"{host_platform} cannot go into a {target_platform} target", field=where)
    wanted = f"cp{target_python.replace('.', '')}" if target_python else None
    if wanted and not any(t.interpreter == wanted or t.abi == "abi3" for t in tags):
        raise BuildError(f"built {wheel_name} with python {builder_python()}, but the target environment has "
                         f"python {target_python}: lock a build environment with python {target_python}", field=where)
