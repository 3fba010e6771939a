"""Base images: `scratch`, a local OCI layout directory, an oci-archive or docker-archive tar,
or an image pulled from a registry. Layer blobs land in the layer cache by digest (verified),
so the output writers and pushes treat base and own layers alike.

Reference forms: `scratch`; `oci:DIR[:TAG]`; `oci-archive:FILE[:TAG]`; `docker-archive:FILE`;
a plain existing path (directory → layout, file → archive, detected by content);
`docker://REF` or any other `[host/]repo[:tag][@digest]` → registry.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path

from pixibuild.errors import BuildError, InputError
from pixibuild.conda.platforms import oci_platform
from pixibuild.oci.assemble import SCRATCH, BaseImage
from pixibuild.oci.config import DOCKER_MANIFEST_LIST, MEDIA_TYPE_INDEX, sha256_digest
from pixibuild.oci.layer import MEDIA_TYPE_GZIP, MEDIA_TYPE_TAR, Layer, LayerCache
from pixibuild.net.registry import RegistryClient, parse_reference

_LAYER_TYPES = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": MEDIA_TYPE_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar": MEDIA_TYPE_TAR,
}
_INDEX_TYPES = (MEDIA_TYPE_INDEX, DOCKER_MANIFEST_LIST)


def _sniff_layer_type(path: Path) -> str:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return MEDIA_TYPE_GZIP
    if magic == b"\x28\xb5\x2f\xfd":
        return "application/vnd.oci.image.layer.v1.tar+zstd"
    return MEDIA_TYPE_TAR


def _pick_platform(manifests: list[dict], platform: str, where: str) -> dict:
    os_name, arch, variant = oci_platform(platform)
    candidates = [m for m in manifests if (m.get("platform") or {}).get("os") == os_name
                  and (m.get("platform") or {}).get("architecture") == arch]
    exact = [m for m in candidates if variant is None or m["platform"].get("variant") in (None, variant)]
    if not exact:
        have = sorted({f"{(m.get('platform') or {}).get('os')}/{(m.get('platform') or {}).get('architecture')}"
                       for m in manifests})
        raise InputError(f"no {os_name}/{arch} image (has: {', '.join(have) or 'none'})", path=where)
    return exact[0]


def _split_suffix(text: str) -> tuple[str, str | None]:
    """"path:tag" → (path, tag) unless the whole thing is an existing path."""
    if Path(text).exists() or ":" not in text:
        return text, None
    path, tag = text.rsplit(":", 1)
    return path, tag or None


def _from_parts(reference: str, config: dict, layer_files: list[tuple[Path, str, str | None]],
                cache: LayerCache) -> BaseImage:
    """Ingest layer files (path, expected digest or "", media type or None) with config diff_ids."""
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(layer_files):
        raise InputError(f"config lists {len(diff_ids)} diff_ids but the manifest {len(layer_files)} layers",
                         path=reference)
    layers = []
    for (path, digest, media_type), diff_id in zip(layer_files, diff_ids):
        stored = cache.add_blob_file(path, digest or None)
        layers.append(Layer(digest=f"sha256:{stored.name}", diff_id=diff_id, size=stored.stat().st_size,
                            path=stored, media_type=_LAYER_TYPES.get(media_type or "", media_type)
                            or _sniff_layer_type(stored)))
    return BaseImage(reference, config, tuple(layers))


def _read_json(path: Path, where: str) -> dict | list:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise InputError(f"missing {path.name}", path=where) from None
    except ValueError as exc:
        raise InputError(f"{path.name} is not JSON: {exc}", path=where) from None


def _blob(root: Path, digest: str, where: str) -> Path:
    algo, _, hexdigest = digest.partition(":")
    path = root / "blobs" / algo / hexdigest
    if not path.is_file():
        raise InputError(f"blob {digest} is missing", path=where)
    return path


def load_oci_layout(root: Path, tag: str | None, platform: str, cache: LayerCache, where: str) -> BaseImage:
    index = _read_json(root / "index.json", where)
    manifests = list(index.get("manifests") or [])  # type: ignore[union-attr]
    if tag:
        manifests = [m for m in manifests if tag in ((m.get("annotations") or {}).get("org.opencontainers.image.ref.name"),
                                                     (m.get("annotations") or {}).get("io.containerd.image.name"))]
        if not manifests:
            raise InputError(f"no image tagged {tag!r} in index.json", path=where)
    if not manifests:
        raise InputError("index.json lists no images", path=where)
    desc = manifests[0] if len(manifests) == 1 else _pick_platform(manifests, platform, where)
    while desc.get("mediaType") in _INDEX_TYPES:
        nested = _read_json(_blob(root, desc["digest"], where), where)
        desc = _pick_platform(nested.get("manifests") or [], platform, where)  # type: ignore[union-attr]
    manifest = _read_json(_blob(root, desc["digest"], where), where)
    config_path = _blob(root, manifest["config"]["digest"], where)  # type: ignore[index]
    if sha256_digest(config_path.read_bytes()) != manifest["config"]["digest"]:  # type: ignore[index]
        raise InputError("config blob does not match its digest", path=where)
    config = json.loads(config_path.read_bytes())
    files = [(_blob(root, l["digest"], where), l["digest"], l.get("mediaType"))
             for l in manifest.get("layers") or []]  # type: ignore[union-attr]
    return _from_parts(where, config, files, cache)


def load_docker_archive_dir(root: Path, cache: LayerCache, where: str) -> BaseImage:
    entries = _read_json(root / "manifest.json", where)
    if not isinstance(entries, list) or not entries:
        raise InputError("manifest.json lists no images", path=where)
    entry = entries[0]
    config = _read_json(root / entry["Config"], where)
    files = [(root / layer, "", None) for layer in entry.get("Layers") or []]
    for path, _, _ in files:
        if not path.is_file():
            raise InputError(f"layer {path.relative_to(root)} is missing", path=where)
    return _from_parts(where, config, files, cache)  # type: ignore[arg-type]


def load_archive(path: Path, tag: str | None, platform: str, cache: LayerCache, kind: str | None) -> BaseImage:
    """oci-archive or docker-archive: unpacked to a temp dir (streaming), then read like a directory."""
    where = str(path)
    if not path.is_file():
        raise InputError("base image archive not found", path=where)
    with tempfile.TemporaryDirectory(prefix="pixibuild-base-", dir=cache.root if cache.root.exists() else None) as tmp:
        try:
            with tarfile.open(path) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise InputError(f"not a readable image archive: {exc}", path=where) from None
        root = Path(tmp)
        if kind != "docker-archive" and (root / "index.json").exists():
            return load_oci_layout(root, tag, platform, cache, where)
        if (root / "manifest.json").exists():
            return load_docker_archive_dir(root, cache, where)
        raise InputError("archive has neither index.json (OCI) nor manifest.json (docker)", path=where)


def pull(reference: str, platform: str, cache: LayerCache, *, client: RegistryClient | None = None) -> BaseImage:
    """Pull from a registry: manifest (index → our platform), config, layers into the cache by digest."""
    ref = parse_reference(reference)
    own = client is None
    client = client or RegistryClient(ref.registry)
    try:
        data, media_type = client.get_manifest(ref.repository, ref.reference)
        manifest = json.loads(data)
        if media_type in _INDEX_TYPES or manifest.get("mediaType") in _INDEX_TYPES:
            desc = _pick_platform(manifest.get("manifests") or [], platform, str(ref))
            data, media_type = client.get_manifest(ref.repository, desc["digest"])
            manifest = json.loads(data)
        if manifest.get("schemaVersion") != 2 or "config" not in manifest:
            raise BuildError(f"unsupported manifest type {media_type!r}", path=str(ref))
        config_bytes = b"".join(client.iter_blob(ref.repository, manifest["config"]["digest"]))
        if sha256_digest(config_bytes) != manifest["config"]["digest"]:
            raise BuildError("config blob does not match its digest", path=str(ref))
        config = json.loads(config_bytes)
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(manifest.get("layers") or []):
            raise BuildError("config diff_ids and manifest layers differ in number", path=str(ref))
        layers = []
        for desc, diff_id in zip(manifest.get("layers") or [], diff_ids):
            path = cache.blob_path(desc["digest"])
            if not (path.is_file() and path.stat().st_size == desc["size"]):
                chunks = client.iter_blob(ref.repository, desc["digest"])
                path = cache.add_blob_stream(_IterReader(chunks), desc["digest"], name=f"{ref}@{desc['digest']}")
            layers.append(Layer(digest=desc["digest"], diff_id=diff_id, size=desc["size"], path=path,
                                media_type=_LAYER_TYPES.get(desc.get("mediaType", ""), desc.get("mediaType"))
                                or MEDIA_TYPE_GZIP))
        return BaseImage(str(ref), config, tuple(layers))
    finally:
        if own:
            client.close()


class _IterReader:
    """`read()` over an iterator of byte chunks (for LayerCache.add_blob_stream)."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)

    def read(self, _n: int = -1) -> bytes:
        return next(self._chunks, b"")


def load_base(reference: str | None, platform: str, cache: LayerCache) -> BaseImage:
    """The base image named by `reference` (None or "scratch" → no base)."""
    if not reference or reference == "scratch":
        return SCRATCH
    for prefix, kind in (("oci:", "oci"), ("oci-archive:", "oci-archive"), ("docker-archive:", "docker-archive")):
        if reference.startswith(prefix):
            path, tag = _split_suffix(reference[len(prefix):])
            if kind == "oci":
                if not Path(path).is_dir():
                    raise InputError("OCI layout directory not found", path=path)
                return load_oci_layout(Path(path), tag, platform, cache, path)
            return load_archive(Path(path), tag, platform, cache, kind)
    if reference.startswith("docker://"):
        return pull(reference, platform, cache)
    path = Path(reference)
    if path.is_dir():
        return load_oci_layout(path, None, platform, cache, reference)
    if path.is_file():
        return load_archive(path, None, platform, cache, None)
    if reference.startswith((".", "/")):
        raise InputError("base image path not found", path=reference)
    return pull(reference, platform, cache)
