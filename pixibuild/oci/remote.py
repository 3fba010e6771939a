"""Images and their layers through the remote cache: local layer cache → remote cache → build (and publish).

A layer's entry (`layer-<key>`, see `pixibuild.store.remote`) holds the compressed layer blob and, for a
package layer, a small tar of the files `get_or_build(..., keep=...)` kept beside it (activation scripts),
with the layer's digest, diff_id, size and media type as metadata. Restoring one writes the blob, the kept
directory and, last, the cache entry: a crash in between leaves nothing the cache would use.

The key is the layer cache entry's own (its content key, the layer format version, the gzip level) plus
pixibuild's version: a runner with another pixibuild never takes a layer it might build differently.

`RemoteLayerCache` is the layer cache every image build uses (the CLI, the image node's environment, app
and wheel layers); the doit layer nodes go through the graph's pull/publish instead (`LayerResult`).
With `lazy=True` (an image pushed to the registry the cache lives in) a layer found remotely is not
downloaded: the push mounts it from the cache repository (`ensure_local` downloads it when it cannot).
It also counts the layers this process compressed (`COMPRESSED`), for the run's summary.

An image node's entry (`ImageResult`) is not its tar: it is the image's manifest and config plus its layer
blobs, which the registry already holds once (the layer nodes put them there, and images share them).
Restoring one downloads the layers it lacks into the layer cache and writes the same tar again
(`write_image_tar` is deterministic): a runner pulling twenty images of one monorepo downloads each
shared layer once, and the cache stores it once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from pixibuild import __version__
from pixibuild.files.atomic import atomic_directory, atomic_write_bytes
from pixibuild.net.mediatypes import MEDIA_TYPE_GZIP
from pixibuild.oci.layer import Layer, LayerCache
from pixibuild.oci.layout import write_tar_entries
from pixibuild.store.lease import hold
from pixibuild.store.remote import RemoteCache, RemoteEntry

KEPT_MEDIA_TYPE = "application/vnd.pixibuild.kept-files.v1.tar"


@dataclass
class _Counter:
    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.count += n


COMPRESSED = _Counter()
"""Layers tarred and compressed by this process (every image build goes through RemoteLayerCache)."""


def entry_id(cache: LayerCache, key: str, modes: str = "normalize") -> str:
    """The layer cache's name for `key` (a sha256 of the key, the layer format, the compression and the
    file mode policy)."""
    return cache._entry_path(key, modes).stem


def remote_key(cache: LayerCache, key: str, modes: str = "normalize") -> str:
    return hashlib.sha256(f"pixibuild {__version__}\0layer\0{entry_id(cache, key, modes)}".encode()).hexdigest()


def _kept_tar(kept: Path, out: Path) -> None:
    """The kept files as a deterministic tar (sorted, mtime 0, root-owned, their modes)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(kept.rglob("*")):
            rel = path.relative_to(kept).as_posix()
            info = tarfile.TarInfo(rel)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_symlink():
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
                tar.addfile(info)
            elif path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = path.stat().st_size, path.stat().st_mode & 0o777
                with open(path, "rb") as f:
                    tar.addfile(info, f)


def publish_layer(cache: LayerCache, remote: RemoteCache, key: str, layer: Layer, *, keep: bool,
                  modes: str = "normalize") -> bool:
    """Upload a layer this machine built (and its kept files)."""
    meta = {"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size, "media_type": layer.media_type}
    files = {"layer": layer.path}
    types = {"layer": layer.media_type}
    with tempfile.TemporaryDirectory(prefix="pixibuild-kept-") as tmp:
        if keep:
            kept = cache.kept_dir(key, modes=modes)
            if not kept.is_dir():
                return False
            files["kept.tar"] = Path(tmp) / "kept.tar"
            _kept_tar(kept, files["kept.tar"])
            types["kept.tar"] = KEPT_MEDIA_TYPE
        return remote.publish("layer", remote_key(cache, key, modes), files, meta, types)


def _layer_of(cache: LayerCache, entry: RemoteEntry) -> Layer | None:
    meta = entry.meta
    try:
        layer = Layer(digest=str(meta["digest"]), diff_id=str(meta["diff_id"]), size=int(meta["size"]),  # type: ignore[arg-type]
                      path=cache.blob_path(str(meta["digest"])), media_type=str(meta.get("media_type", MEDIA_TYPE_GZIP)))
    except (KeyError, TypeError, ValueError):
        return None
    blob = entry.files.get("layer")
    if blob is None or blob.digest != layer.digest or blob.size != layer.size:
        return None
    return layer


def restore_layer(cache: LayerCache, remote: RemoteCache, key: str, entry: RemoteEntry, *, keep: bool,
                  lazy: bool = False, modes: str = "normalize") -> Layer | None:
    """Put a remote layer into the local cache (blob, kept files, then the entry); with `lazy`, only the
    kept files: the blob stays in the registry (the caller mounts it). None when the entry is unusable."""
    layer = _layer_of(cache, entry)
    if layer is None or (keep and "kept.tar" not in entry.files):
        remote._poisoned(f"layer-{entry.key}", ValueError("its metadata does not describe its layer blob"))
        return None
    if keep:
        with tempfile.TemporaryDirectory(prefix="pixibuild-kept-", dir=_mkdir(cache.root)) as tmp:
            kept_tar = Path(tmp) / "kept.tar"
            if not remote.download(_only(entry, "kept.tar"), {"kept.tar": kept_tar}):
                return None
            with atomic_directory(cache.kept_dir(key, modes=modes), keep_existing=True) as kept, tarfile.open(kept_tar) as tar:
                tar.extractall(kept, filter="data")
    if lazy:
        return layer
    if not layer.path.exists() and not remote.download(_only(entry, "layer"), {"layer": layer.path}):
        return None
    record = {k: v for k, v in asdict(layer).items() if k != "path"}
    atomic_write_bytes(cache._entry_path(key, modes), json.dumps(record, sort_keys=True).encode(), fsync=False)
    return layer


def _only(entry: RemoteEntry, name: str) -> RemoteEntry:
    return RemoteEntry(entry.kind, entry.key, {name: entry.files[name]}, entry.meta)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


class RemoteLayerCache(LayerCache):
    """A LayerCache that asks the remote cache before building a layer, publishes what it builds, and
    counts the layers it compressed."""

    def __init__(self, root: Path | None = None, *, remote: RemoteCache | None = None, lazy: bool = False,
                 **kwargs):
        super().__init__(root, **kwargs)
        self.remote = remote
        self.lazy = lazy
        self.remote_hits = 0
        self.remote_only: dict[str, Layer] = {}
        """Layers left in the registry (lazy mode): digest → layer."""

    def get_or_build(self, key: str, populate: Callable[[Path], None], *, mount: str = "",
                     keep: Callable[[str], bool] | None = None, modes: str = "normalize",
                     archive_bytes: int | None = None) -> Layer:
        if self.root.name == "oci":  # the store's layer cache: leased before looking, so prune keeps it
            hold(self.root.parent, [f"layer:{entry_id(self, key, modes)}"])
        found = self.lookup(key, modes=modes)
        if (found is None or (keep is not None and not self.kept_dir(key, modes=modes).is_dir())) \
                and self.remote is not None and self.remote.readable:
            entry = self.remote.lookup("layer", remote_key(self, key, modes))
            layer = restore_layer(self, self.remote, key, entry, keep=keep is not None, lazy=self.lazy,
                                  modes=modes) if entry is not None else None
            if layer is not None:
                with self._count_lock:
                    self.hits += 1
                    self.remote_hits += 1
                    if self.lazy and not layer.path.exists():
                        self.remote_only[layer.digest] = layer
                return layer
        built: list[bool] = []  # populate runs only when the layer is built here (threads share this cache)

        def staging(directory: Path) -> None:
            built.append(True)
            populate(directory)

        layer = super().get_or_build(key, staging, mount=mount, keep=keep, modes=modes, archive_bytes=archive_bytes)
        if built:
            COMPRESSED.add()
            if self.remote is not None and self.remote.writable:
                publish_layer(self, self.remote, key, layer, keep=keep is not None, modes=modes)
        return layer

    def ensure_local(self, layer: Layer) -> bool:
        """Download a layer left in the registry (lazy mode), e.g. when mounting it was refused."""
        if not layer.path.exists() and self.remote is not None:
            self.remote.download_digest(layer.digest, layer.size, layer.path, media_type=layer.media_type)
        return layer.path.exists()


@dataclass
class LayerResult:
    """A doit layer node's remote result: the layer of `key` in `cache` (with its kept files)."""

    cache: LayerCache
    layer_key: str
    modes: str = "keep"
    """Package layers keep their archives' file modes (oci/layer.py MODES)."""
    kind: str = "layer"

    def key(self) -> str:
        return remote_key(self.cache, self.layer_key, self.modes)

    def restore(self, remote: RemoteCache, entry: RemoteEntry) -> bool:
        return restore_layer(self.cache, remote, self.layer_key, entry, keep=True, modes=self.modes) is not None

    def publish(self, remote: RemoteCache) -> bool:
        layer = self.cache.lookup(self.layer_key, modes=self.modes)
        return layer is not None and publish_layer(self.cache, remote, self.layer_key, layer, keep=True,
                                                   modes=self.modes)


@dataclass
class ImageResult:
    """An image node's remote result (one platform, or an index with its referrers): the image tar at
    `output`, stored as its layer blobs plus one small JSON of every other member (index.json, manifests,
    configs, SBOM/provenance artifacts, docker's manifest.json); `remote_key` gives the key (content, not
    mtimes, of the app files and a local base)."""

    output: Path
    cache: LayerCache
    node_key: str
    remote_key: Callable[[], str] | None = None
    kind: str = "image"
    _key: str | None = field(default=None, repr=False)

    def key(self) -> str:
        if self._key is None:
            self._key = self.remote_key() if self.remote_key is not None else self.node_key
        return self._key

    def publish(self, remote: RemoteCache) -> bool:
        with tarfile.open(self.output) as tar, tempfile.TemporaryDirectory(prefix="pixibuild-image-") as tmp:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            layers = _layer_descriptors(lambda name: tar.extractfile(members[name]).read())  # type: ignore[union-attr]
            small = {}
            files: dict[str, Path] = {}
            for name, member in sorted(members.items()):
                digest = _blob_digest(name)
                if digest in layers:
                    path = self.cache.blob_path(digest)
                    if not (path.is_file() and path.stat().st_size == member.size):  # not in the cache: from the tar
                        path = Path(tmp) / digest.split(":", 1)[1]
                        with tar.extractfile(member) as src, open(path, "wb") as out:  # type: ignore[union-attr]
                            shutil.copyfileobj(src, out)
                    files[f"layer-{digest.split(':', 1)[1]}"] = path
                else:
                    small[name] = base64.b64encode(tar.extractfile(member).read()).decode()  # type: ignore[union-attr]
            files["members"] = Path(tmp) / "members.json"
            files["members"].write_text(json.dumps(small, sort_keys=True))
            meta = {"layers": {d: layers[d] for d in sorted(layers)}}
            return remote.publish(self.kind, self.key(), files, meta)

    def restore(self, remote: RemoteCache, entry: RemoteEntry) -> bool:
        with tempfile.TemporaryDirectory(prefix="pixibuild-image-", dir=_mkdir(self.cache.root)) as tmp:
            small_path = {"members": Path(tmp) / "members.json"}
            if "members" not in entry.files or not remote.download(_only_files(entry, small_path), small_path):
                return False
            try:
                small = {name: base64.b64decode(data, validate=True)
                         for name, data in json.loads(small_path["members"].read_bytes()).items()}
                for name, data in small.items():  # every blob is the bytes its name says
                    digest = _blob_digest(name)
                    if digest is not None and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                        raise ValueError(f"{name} does not hash to its name")
                layers = _layer_descriptors(lambda name: small[name])
                wanted: dict[str, Path] = {}
                for digest, size in layers.items():
                    name = f"layer-{digest.split(':', 1)[1]}"
                    if name not in entry.files or entry.files[name].digest != digest or entry.files[name].size != size:
                        raise ValueError(f"{name} is not the layer the manifests name")
                    path = self.cache.blob_path(digest)
                    if not (path.is_file() and path.stat().st_size == size):
                        wanted[name] = path
            except (ValueError, KeyError, TypeError) as exc:
                remote._poisoned(f"image-{entry.key}", exc)
                return False
            if wanted and not remote.download(_only_files(entry, wanted), wanted):
                return False
            entries: dict[str, bytes | Path] = dict(small)
            entries.update({f"blobs/sha256/{d.split(':', 1)[1]}": self.cache.blob_path(d) for d in layers})
            write_tar_entries(entries, self.output)
        return True


def _blob_digest(name: str) -> str | None:
    """`blobs/sha256/<hex>` → `sha256:<hex>` (None for the layout's other files)."""
    prefix = "blobs/sha256/"
    return "sha256:" + name[len(prefix):] if name.startswith(prefix) else None


def _layer_descriptors(read: Callable[[str], bytes]) -> dict[str, int]:
    """Layer digest → size of every image the layout's index.json reaches (through image indexes)."""
    layers: dict[str, int] = {}
    todo = [d for d in json.loads(read("index.json")).get("manifests", [])]
    seen: set[str] = set()
    while todo:
        descriptor = todo.pop()
        digest = descriptor["digest"]
        if digest in seen:
            continue
        seen.add(digest)
        document = json.loads(read(f"blobs/sha256/{digest.split(':', 1)[1]}"))
        todo.extend(document.get("manifests", []))  # an image index
        if "config" in document and document.get("layers") and \
                document["config"].get("mediaType", "").endswith(("image.config.v1+json", "container.image.v1+json")):
            for layer in document["layers"]:
                layers[layer["digest"]] = int(layer["size"])
    return layers


def _only_files(entry: RemoteEntry, names) -> RemoteEntry:
    return RemoteEntry(entry.kind, entry.key, {n: entry.files[n] for n in names}, entry.meta)


def layer_cache(root: Path | str, remote: RemoteCache | None = None, **kwargs) -> RemoteLayerCache:
    """The layer cache image builds use (counting, and asking `remote` when given)."""
    return RemoteLayerCache(Path(root), remote=remote, **kwargs)


__all__ = ["COMPRESSED", "ImageResult", "LayerResult", "RemoteLayerCache", "layer_cache", "publish_layer",
           "restore_layer"]
