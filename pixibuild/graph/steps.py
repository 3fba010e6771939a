"""The actions of the build graph's nodes after `verify`: index, archive, unpack, layer, image.

Each reads only verified blobs, named by the `BlobRef`s the plan hands it (resolving one looks in
the store and nowhere else: these actions can never start a download; the fetch node's action
lives in `pixibuild.store.session`). Every blob's sha256 is checked again while the action reads it
(files/verified.py, no extra pass): a blob damaged since its verify node ran fails the action naming
the package, is evicted, and the next run fetches it again. Each writes its outputs atomically, so doit can run them in
threads in any order their dependencies allow, and a crash never leaves a half-written output
under its final name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.files.atomic import atomic_directory, atomic_write_bytes
from pixibuild.files.progress import Progress, counting_opener
from pixibuild.files.verified import VerifiedBlob, verifying
from pixibuild.pypi.wheels import WheelRef
from pixibuild.pypi.wheels import resolve as resolve_built
from pixibuild.store.blobs import BlobRef, Store

if TYPE_CHECKING:
    from pixibuild.oci.layerplan import LayerPlan, PackageLayer
    from pixibuild.store.remote import RemoteCache

# The installer (~85 ms to import), the image builder (~200 ms, networkx included) and the pack writer
# (~20 ms; measured with `python -X importtime`) are imported inside the actions that use them: loading
# the graph of a pack-only workspace, or a no-op run, must not pay for them, nor each forked planning
# worker of a cold monorepo.

Planned = Sequence[tuple[CondaRecord, BlobRef]]
PlannedWheels = Sequence[tuple[PypiRecord, BlobRef]]


def _paths(store: Store, planned: Sequence[tuple[CondaRecord | PypiRecord, BlobRef]]) -> list:
    return [(record, store.resolve(ref)) for record, ref in planned]


def _blobs(store: Store, planned: Sequence[tuple[CondaRecord | PypiRecord, BlobRef]]) -> list[tuple]:
    """(record, VerifiedBlob) pairs: the consumer's reads check each blob's sha256."""
    return [(record, store.open_blob(ref)) for record, ref in planned]


def _built(store: Store, built: Sequence[WheelRef]) -> list[tuple[PypiRecord, VerifiedBlob]]:
    """Wheels the target's wheel nodes built (pixibuild.pypi), by their keys: from the store only,
    checked while read like every other blob."""
    out = []
    for ref in built:
        record, path = resolve_built(store.root, ref)
        out.append((record, store.verified(path, record.file_name)))
    return out


def _sources(*pairs: Sequence[tuple]) -> list[VerifiedBlob]:
    return [blob for group in pairs for _, blob in group]


def verify(ref: BlobRef, store_root: str) -> None:
    """Verify node: re-hash the stored blob against every hash and size the lock gives."""
    Store(store_root).check(ref)


def index(records: Sequence[CondaRecord], index_dir: str) -> None:
    """Index node: `<index_dir>/<subdir>/repodata.json`, rebuilt whole and swapped in, so no stale
    subdir survives a change of platforms."""
    from pixibuild.pack.repodata import repodata_json

    by_subdir: dict[str, list[CondaRecord]] = {}
    for record in records:
        by_subdir.setdefault(record.subdir, []).append(record)
    with atomic_directory(index_dir) as tmp:
        for subdir, recs in sorted(by_subdir.items()):
            atomic_write_bytes(tmp / subdir / "repodata.json", repodata_json(subdir, recs), fsync=False)


def read_index(index_dir: str | Path) -> dict[str, bytes]:
    """The repodata files an index node wrote, by subdir."""
    root = Path(index_dir)
    return {p.parent.name: p.read_bytes() for p in sorted(root.glob("*/repodata.json"))}


def archive(platform: str, conda: Planned, wheels: PlannedWheels, store_root: str, index_dir: str, output: str,
            directory_only: bool = False, built: Sequence[WheelRef] = (), label: str = "pack") -> None:
    """Archive node: stream the verified blobs, the built wheels and the index into environment.tar
    (progress lines, named `label`, when it takes long)."""
    from pixibuild.pack.build import PackOutput, write_pack
    from pixibuild.pack.writer import PackContents

    store = Store(store_root)
    contents = PackContents(platform=platform, conda=_blobs(store, conda),
                            wheels=_blobs(store, wheels) + _built(store, built), index=read_index(index_dir))
    total = sum(blob.path.stat().st_size for blob in _sources(contents.conda, contents.wheels))
    with Progress(label, nbytes=total, lines=True) as progress:
        write_pack(contents, PackOutput(output, directory_only=directory_only), progress)


def unpack(platform: str, conda: Planned, wheels: PlannedWheels, store_root: str, output_dir: str,
           env_name: str = "env", shell: str = "bash", built: Sequence[WheelRef] = (), label: str = "unpack") -> None:
    """Unpack node: install the target into `<output_dir>/<env_name>` (swapped in whole) plus
    `activate.sh` — the same result as `pixibuild unpack` of the target's pack."""
    from pixibuild.install.environment import install_environment
    from pixibuild.install.activation import activate_script

    store = Store(store_root)
    out = Path(output_dir).absolute()
    env_dir = out / env_name
    packages, pypi = _blobs(store, conda), _blobs(store, wheels) + _built(store, built)
    total = sum(blob.path.stat().st_size for _, blob in packages)
    with Progress(label, nbytes=total, lines=True) as progress, atomic_directory(env_dir) as staging, \
            verifying(_sources(packages, pypi)):
        # blobs are named by hash: formats come from the records; the bytes read tell how far it is
        counted = [(record, counting_opener(blob, progress)) for record, blob in packages]
        install_environment(counted, staging, target_prefix=str(env_dir), wheels=pypi, platform=platform)
        progress.update(nbytes=max(0, total - progress.bytes))  # reads of a forked second linker are not seen
    atomic_write_bytes(out / "activate.sh", activate_script(env_dir, str(env_dir), shell, platform=platform).encode())


def image_layer(layer: "PackageLayer", cache_root: str, compression: str = "gzip", label: str = "layer") -> None:
    """Layer node: one planned package group installed at the image prefix, tarred and compressed
    into the layer cache (nothing to do when the cache already holds the layer for its key)."""
    from pixibuild.oci.build import build_package_layer
    from pixibuild.oci.remote import layer_cache

    with Progress(label, lines=True, heartbeat=True):  # nothing to count: the time it has taken, if long
        build_package_layer(layer.spec, layer_cache(cache_root, compression=compression))  # (the graph pulls and publishes layer nodes)


ImagePlatform = tuple[str, str, Planned, PlannedWheels, "LayerPlan | None", Sequence[WheelRef]]
"""(platform, subdir, conda, wheels, layer plan, built wheels) of one platform of an image node."""


def image(manifest_path: str, env: str, platforms: Sequence[ImagePlatform], store_root: str, output: str,
          remote: "RemoteCache | None" = None, label: str = "image") -> None:
    """Image node: base + the planned package layers (from the cache the layer nodes filled) +
    environment and app layers + the built wheels' own top layer → one tar, both an OCI layout and a
    docker-archive; with several platforms (the `image:<env>` index node) an OCI archive of the index.
    The environment, app and wheel layers are asked of the remote cache too."""
    from pixibuild.graph.images import PlatformPackages, build_images
    from pixibuild.inputs.manifest import read_manifest
    from pixibuild.oci.build import image_tag
    from pixibuild.oci.layout import Image, write_image_tar
    from pixibuild.oci.remote import layer_cache
    from pixibuild.oci.options import manifest_image_options
    from pixibuild.store.roots import layer_cache_root

    store = Store(store_root)
    manifest = read_manifest(manifest_path)
    name = manifest.name or manifest.root.name  # as Project.name
    options = manifest_image_options(manifest.tool, env, where=f"{manifest.path}: tool.pixibuild", root=manifest.root)
    items = [PlatformPackages(platform, subdir, _paths(store, conda), _paths(store, wheels), plan,
                              [resolve_built(store.root, ref) for ref in built])
             for platform, subdir, conda, wheels, plan, built in platforms]
    cache = layer_cache(layer_cache_root(store_root), remote, compression=options.compression)
    tag = image_tag(options, name, env)
    with Progress(label, lines=True, heartbeat=True):
        images = build_images(manifest, options, env, items, cache, tag=tag)
        write_image_tar(images.target, Path(output), tag=tag, referrers=images.referrers,
                        docker=isinstance(images.target, Image))
