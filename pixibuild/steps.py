"""The actions of the build graph's nodes, as plain functions of picklable arguments.

Each function does one node's work and writes its outputs atomically, so doit (or anything else)
can run them in threads or processes, in any order their dependencies allow, and a crash never
leaves a half-written output under its final name.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

from .atomic import atomic_write_bytes
from .errors import BuildError
from .fetch import Fetcher
from .pack.archive import PackContents
from .pack.build import PackOutput, write_pack
from .pack.repodata import repodata_json
from .records import CondaRecord, PypiRecord
from .store import Store, hash_file

_FETCHERS: dict[str, Fetcher] = {}
_FETCHERS_LOCK = threading.Lock()


def shared_fetcher(store_root: str) -> Fetcher:
    """One fetcher (one connection pool) per store per process, shared by every fetch node."""
    with _FETCHERS_LOCK:
        fetcher = _FETCHERS.get(store_root)
        if fetcher is None:
            fetcher = _FETCHERS[store_root] = Fetcher(Store(Path(store_root)), progress=False)
        return fetcher


def blob_for(record: CondaRecord | PypiRecord, base_dir: str, store_root: str) -> Path:
    """The verified blob of a record: fetched if missing, else found in the store."""
    return shared_fetcher(store_root).fetch_one(record, Path(base_dir))


def fetch(record: CondaRecord | PypiRecord, base_dir: str, store_root: str) -> None:
    """Fetch node: download (or copy a local file) into the store, verified before it is named."""
    blob_for(record, base_dir, store_root)


def verify(record: CondaRecord | PypiRecord, base_dir: str, store_root: str) -> None:
    """Verify node: re-hash the stored blob against every hash and size the lock gives, so a blob
    damaged on disk after download is caught before it is packed."""
    path = blob_for(record, base_dir, store_root)
    h = hash_file(path)
    name = getattr(record, "file_name", None) or record.name
    problems = []
    if record.sha256 and h.sha256.hexdigest() != record.sha256:
        problems.append(f"sha256 expected {record.sha256}, got {h.sha256.hexdigest()}")
    if record.md5 and h.md5.hexdigest() != record.md5:
        problems.append(f"md5 expected {record.md5}, got {h.md5.hexdigest()}")
    expected_size = getattr(record, "size", None)
    if expected_size is not None and h.size != expected_size:
        problems.append(f"size expected {expected_size}, got {h.size}")
    if problems:
        if h.sha256.hexdigest() != path.name:
            Store(Path(store_root)).remove(path.name)  # damaged on disk: the next run fetches it again
        raise BuildError(f"package {name}: stored blob does not match the lock: {'; '.join(problems)}")


def index(records: Sequence[CondaRecord], out_dir: str) -> None:
    """Index node: `<out_dir>/<subdir>/repodata.json` from the lock's records."""
    by_subdir: dict[str, list[CondaRecord]] = {}
    for record in records:
        by_subdir.setdefault(record.subdir, []).append(record)
    for subdir, recs in sorted(by_subdir.items()):
        atomic_write_bytes(Path(out_dir) / subdir / "repodata.json", repodata_json(subdir, recs))


def read_index(index_dir: str | Path) -> dict[str, bytes]:
    """The repodata files an index node wrote, by subdir."""
    root = Path(index_dir)
    return {p.parent.name: p.read_bytes() for p in sorted(root.glob("*/repodata.json"))}


def archive(platform: str, conda: Sequence[CondaRecord], wheels: Sequence[PypiRecord], base_dir: str,
            store_root: str, index_dir: str, output: str, directory_only: bool = False) -> None:
    """Archive node: stream the verified blobs and the index into environment.tar."""
    contents = PackContents(
        platform=platform,
        conda=[(r, blob_for(r, base_dir, store_root)) for r in conda],
        wheels=[(w, blob_for(w, base_dir, store_root)) for w in wheels],
        index=read_index(index_dir),
    )
    write_pack(contents, PackOutput(output, directory_only=directory_only))
