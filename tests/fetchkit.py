"""Helpers shared by the fetch tests: a generated channel and lock records pointing at a test server."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path

from pixibuild.conda.records import CondaRecord
from pixibuild.demo.condapkg import PackageSpec, PkgFile, locked_record, write_channel


def spec(name: str, subdir: str, size: int, seed: int) -> PackageSpec:
    """A package whose payload is `size` incompressible bytes (so the archive is about that big)."""
    rng = random.Random(seed)
    return PackageSpec(name, "1.0", "0", subdir=subdir, noarch="generic" if subdir == "noarch" else None,
                       files=[PkgFile(f"share/{name}/data.bin", rng.randbytes(size))])


def make_channel(root: Path, specs: list[PackageSpec]) -> dict[str, tuple[PackageSpec, Path]]:
    """Write the channel under `root`; returns file name → (spec, path)."""
    files = write_channel([(s, ".conda") for s in specs], root)
    return {name: (next(s for s in specs if f"{s.dist_name}.conda" == name), path) for name, path in files.items()}


def records_for(channel: dict[str, tuple[PackageSpec, Path]], base_url: str, root: Path) -> list[CondaRecord]:
    """Lock records whose URLs point at `base_url` + the path under the channel root."""
    out = []
    for _name, (s, path) in sorted(channel.items()):
        rel = path.relative_to(root).as_posix()
        out.append(locked_record(s, path, url=f"{base_url.rstrip('/')}/{rel}"))
    return out


def blob_files(store_root: Path) -> list[Path]:
    """Every non-hidden file under blobs/ (what a reader of the store would trust)."""
    blobs = store_root / "blobs"
    if not blobs.exists():
        return []
    return sorted(p for p in blobs.rglob("*") if p.is_file() and not p.name.startswith("."))


def assert_store_sound(store_root: Path) -> None:
    """Every visible blob's content matches its name."""
    for path in blob_files(store_root):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"corrupt blob {path}"


def dump_records(records: list[CondaRecord], path: Path) -> None:
    path.write_text(json.dumps([dataclasses.asdict(r) for r in records]))


FETCH_SCRIPT = """
import json, logging, sys
from pixibuild.conda.records import CondaRecord
from pixibuild.store.fetch import fetch
from pixibuild.store.blobs import Store
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
records = [CondaRecord(**d) for d in json.load(open(sys.argv[1]))]
fetch(records, Store(sys.argv[2]), jobs=4, progress=False)
print("ok")
"""
