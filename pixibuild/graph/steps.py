"""The actions of the build graph's nodes, as plain functions of picklable arguments.

Each function does one node's work and writes its outputs atomically, so doit (or anything else)
can run them in threads or processes, in any order their dependencies allow, and a crash never
leaves a half-written output under its final name.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from pixibuild.files.atomic import atomic_write_bytes
from pixibuild.errors import BuildError
from pixibuild.pack.writer import PackContents
from pixibuild.pack.build import PackOutput, write_pack
from pixibuild.pack.repodata import repodata_json
from pixibuild.conda.records import CondaRecord, PypiRecord

if TYPE_CHECKING:
    from pixibuild.store.fetch import Fetcher

_FETCHERS: dict[str, "Fetcher"] = {}
_FETCHERS_LOCK = threading.Lock()


def shared_fetcher(store_root: str) -> "Fetcher":
    """One fetcher (one connection pool) per store per process, shared by every fetch node.
    (Imported here, not at module level: planning a no-op run must not pay for httpx.)"""
    from pixibuild.store.fetch import Fetcher
    from pixibuild.net.config import NetConfig
    from pixibuild.store.blobs import Store

    with _FETCHERS_LOCK:
        fetcher = _FETCHERS.get(store_root)
        if fetcher is None:
            fetcher = _FETCHERS[store_root] = Fetcher(Store(Path(store_root)), config=NetConfig.load(),
                                                      progress=False)
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
    from pixibuild.store.blobs import Store, hash_file

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


def unpack(platform: str, conda: Sequence[CondaRecord], wheels: Sequence[PypiRecord], base_dir: str,
           store_root: str, output_dir: str, env_name: str = "env", shell: str = "bash") -> None:
    """Unpack node: install the target from verified blobs into `<output_dir>/<env_name>` (swapped in
    whole) plus `activate.sh` — the same result as `pixibuild unpack` of the target's pack."""
    from pixibuild.install.activation import activate_script
    from pixibuild.files.atomic import atomic_directory
    from pixibuild.install import install_environment

    out = Path(output_dir).absolute()
    env_dir = out / env_name
    packages = [(r, blob_for(r, base_dir, store_root)) for r in conda]
    wheel_files = [(w, blob_for(w, base_dir, store_root)) for w in wheels]
    with atomic_directory(env_dir) as staging:  # blobs are named by hash: formats come from the records
        install_environment(packages, staging, target_prefix=str(env_dir), wheels=wheel_files, platform=platform)
    atomic_write_bytes(out / "activate.sh", activate_script(env_dir, str(env_dir), shell, platform=platform).encode())


@functools.lru_cache(maxsize=32)
def _layer_specs(records: tuple[CondaRecord, ...], platform: str, target_prefix: str, budget: int, base_dir: str,
                 store_root: str) -> dict:
    """key → LayerSpec for one image's packages, computed once per process: every layer node of
    that image asks for the same grouping."""
    from pixibuild.oci.build import package_layer_specs

    pairs = [(r, blob_for(r, base_dir, store_root)) for r in records]
    specs = package_layer_specs(pairs, platform=platform, target_prefix=target_prefix, budget=budget)
    return {spec.key: spec for spec, _ in specs}


def image_layer(key: str, records: Sequence[CondaRecord], platform: str, target_prefix: str, budget: int,
                base_dir: str, store_root: str, cache_root: str) -> None:
    """Layer node: one package group installed at the image prefix, tarred and gzipped into the
    layer cache (skipped when the cache already holds the layer for this key)."""
    from pixibuild.oci.build import build_package_layer
    from pixibuild.oci.layer import LayerCache

    spec = _layer_specs(tuple(records), platform, target_prefix, budget, base_dir, store_root).get(key)
    if spec is None:
        raise BuildError(f"layer {key[:40]}… is no longer part of this environment (re-plan the build)")
    build_package_layer(spec, LayerCache(Path(cache_root)))


def image(manifest_path: str, env: str, platform: str, conda: Sequence[CondaRecord], wheels: Sequence[PypiRecord],
          base_dir: str, store_root: str, cache_root: str, output: str, budget: int) -> None:
    """Image node: base + package layers (from the cache the layer nodes filled, grouped for the
    same `budget`) + environment and app layers → one tar, both an OCI layout and a docker-archive."""
    from pixibuild.inputs.manifest import read_manifest
    from pixibuild.oci.build import build_configured_image, image_tag
    from pixibuild.oci.layer import LayerCache
    from pixibuild.oci.layout import write_image_tar
    from pixibuild.oci.options import manifest_image_options

    manifest = read_manifest(manifest_path)
    name = manifest.name or manifest.root.name  # as Project.name
    options = manifest_image_options(manifest.tool, env, where=f"{manifest.path}: tool.pixibuild")
    result = build_configured_image(
        options, name=name, env=env, subdir=platform, project_root=Path(manifest.root),
        packages=[(r, blob_for(r, base_dir, store_root)) for r in conda],
        wheels=[(w, blob_for(w, base_dir, store_root)) for w in wheels],
        cache=LayerCache(Path(cache_root)), package_budget=budget)
    write_image_tar(result.image, Path(output), tag=image_tag(options, name, env))
