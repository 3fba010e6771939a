"""Base images: `scratch`, a local OCI layout directory, an oci-archive or docker-archive tar,
or an image pulled from a registry. Layer blobs land in the layer cache by digest (verified),
so the output writers and pushes treat base and own layers alike.

Reference forms: `scratch`; `oci:DIR[:TAG]`; `oci-archive:FILE[:TAG]`; `docker-archive:FILE`;
a plain existing path (directory → layout, file → archive, detected by content);
`docker://REF`, `https://HOST/REPO[:TAG]`, `http://HOST/REPO[:TAG]` or any other `[host/]repo[:tag][@digest]`
→ registry, reached through the shared network stack with the caller's `NetConfig` (CA bundle, retries)
and credentials (see `pixibuild.net.registry` for which scheme is used).
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pixibuild.errors import BuildError, InputError
from pixibuild.conda.platforms import oci_platform
from pixibuild.oci.assemble import SCRATCH, BaseImage
from pixibuild.files.digest import sha256_digest
from pixibuild.net.mediatypes import (DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR, INDEX_TYPES, MEDIA_TYPE_GZIP,
                                      MEDIA_TYPE_TAR, MEDIA_TYPE_ZSTD)
from pixibuild.oci.layer import Layer, LayerCache

if TYPE_CHECKING:  # the network stack (httpx, ssl) is imported when a registry base is pulled, not by every build
    from pixibuild.net.auth import AuthStore
    from pixibuild.net.config import NetConfig
    from pixibuild.net.registry import Reference, RegistryClient

_LAYER_TYPES = {DOCKER_LAYER_GZIP: MEDIA_TYPE_GZIP, DOCKER_LAYER_TAR: MEDIA_TYPE_TAR}


def _sniff_layer_type(path: Path) -> str:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return MEDIA_TYPE_GZIP
    if magic == b"\x28\xb5\x2f\xfd":
        return MEDIA_TYPE_ZSTD
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
                cache: LayerCache, manifest_digest: str | None = None) -> BaseImage:
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
    return BaseImage(reference, config, tuple(layers), manifest_digest)


def _read_json(path: Path, where: str) -> dict | list:
    try:
        return _parse_json(path.read_bytes(), path.name, where)
    except FileNotFoundError:
        raise InputError(f"missing {path.name}", path=where) from None


def _parse_json(data: bytes, name: str, where: str) -> dict | list:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise InputError(f"{name} is not JSON: {exc}", path=where) from None


def _blob(root: Path, digest: str, where: str) -> Path:
    algo, _, hexdigest = digest.partition(":")
    path = root / "blobs" / algo / hexdigest
    if not path.is_file():
        raise InputError(f"blob {digest} is missing", path=where)
    return path


def _layout_manifest(read: Callable[[str], bytes | None], tag: str | None, platform: str, where: str) -> dict:
    """The image manifest an OCI layout's index.json names for `tag` and `platform`; `read(name)` gives
    a file of the layout (None when missing), so directories and archives share this walk."""

    def json_file(name: str) -> dict:
        data = read(name)
        if data is None:
            raise InputError(f"missing {name}" if "/" not in name else f"blob {name} is missing", path=where)
        value = _parse_json(data, name, where)
        if not isinstance(value, dict):
            raise InputError(f"{name} is not a JSON object", path=where)
        return value

    def blob_name(digest: str) -> str:
        algo, _, hexdigest = str(digest).partition(":")
        return f"blobs/{algo}/{hexdigest}"

    index = json_file("index.json")
    manifests = list(index.get("manifests") or [])
    if tag:
        manifests = [m for m in manifests if tag in ((m.get("annotations") or {}).get("org.opencontainers.image.ref.name"),
                                                     (m.get("annotations") or {}).get("io.containerd.image.name"))]
        if not manifests:
            raise InputError(f"no image tagged {tag!r} in index.json", path=where)
    if not manifests:
        raise InputError("index.json lists no images", path=where)
    desc = manifests[0] if len(manifests) == 1 else _pick_platform(manifests, platform, where)
    while desc.get("mediaType") in INDEX_TYPES:
        nested = json_file(blob_name(desc["digest"]))
        desc = _pick_platform(nested.get("manifests") or [], platform, where)
    manifest = json_file(blob_name(desc["digest"]))
    manifest["__digest__"] = str(desc["digest"])  # the caller's record of which manifest this is
    return manifest


def _read_dir_file(root: Path) -> Callable[[str], bytes | None]:
    def read(name: str) -> bytes | None:
        try:
            return (root / name).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
    return read


def load_oci_layout(root: Path, tag: str | None, platform: str, cache: LayerCache, where: str) -> BaseImage:
    manifest = _layout_manifest(_read_dir_file(root), tag, platform, where)
    config_path = _blob(root, manifest["config"]["digest"], where)  # type: ignore[index]
    if sha256_digest(config_path.read_bytes()) != manifest["config"]["digest"]:  # type: ignore[index]
        raise InputError("config blob does not match its digest", path=where)
    config = json.loads(config_path.read_bytes())
    files = [(_blob(root, l["digest"], where), l["digest"], l.get("mediaType"))
             for l in manifest.get("layers") or []]  # type: ignore[union-attr]
    return _from_parts(where, config, files, cache, manifest.get("__digest__"))


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
    config_digest = sha256_digest((root / entry["Config"]).read_bytes())
    return _from_parts(where, config, files, cache, config_digest)  # type: ignore[arg-type]


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


def _registry_manifest(client: RegistryClient, ref: Reference, platform: str) -> dict:
    """The image manifest of `ref` for `platform` (an index is resolved to our platform's entry)."""
    data, media_type = client.get_manifest(ref.repository, ref.reference)
    manifest = json.loads(data)
    if media_type in INDEX_TYPES or manifest.get("mediaType") in INDEX_TYPES:
        desc = _pick_platform(manifest.get("manifests") or [], platform, str(ref))
        data, media_type = client.get_manifest(ref.repository, desc["digest"])
        manifest = json.loads(data)
    if manifest.get("schemaVersion") != 2 or "config" not in manifest:
        raise BuildError(f"unsupported manifest type {media_type!r}", path=str(ref))
    manifest["__digest__"] = sha256_digest(data)
    return manifest


def pull(reference: str, platform: str, cache: LayerCache, *, client: RegistryClient | None = None,
         net: NetConfig | None = None, auth: AuthStore | None = None) -> BaseImage:
    """Pull from a registry: manifest (index → our platform), config, layers into the cache by digest."""
    from pixibuild.net.registry import connect, parse_reference

    ref = parse_reference(reference)
    own = client is None
    client = client or connect(ref, net, auth=auth)
    try:
        manifest = _registry_manifest(client, ref, platform)
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
        return BaseImage(str(ref), config, tuple(layers), manifest["__digest__"])
    finally:
        if own:
            client.close()


class _IterReader:
    """`read()` over an iterator of byte chunks (for LayerCache.add_blob_stream)."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)

    def read(self, _n: int = -1) -> bytes:
        return next(self._chunks, b"")


@dataclass(frozen=True)
class BaseSource:
    """Where a base reference points: `kind` is scratch, oci (a layout directory), oci-archive,
    docker-archive, archive (a tar of either kind) or registry."""

    kind: str
    location: str = ""
    tag: str | None = None


_LOCAL_PREFIXES = ("oci:", "oci-archive:", "docker-archive:")


def relative_to(reference: str, root: Path) -> str:
    """`reference` with a relative local path resolved against `root` (a manifest's directory: a
    `base = "oci:../base"` in pixi.toml means next to the project, wherever the build runs from).
    Registry references and absolute paths are returned unchanged."""
    for prefix in _LOCAL_PREFIXES:
        if reference.startswith(prefix):
            text = reference[len(prefix):]
            if (root / text).exists() or ":" not in text:
                path, tag = text, None
            else:
                path, tag = text.rsplit(":", 1)
            if not Path(path).is_absolute():
                path = os.path.normpath(root / path)
            return f"{prefix}{path}" + (f":{tag}" if tag else "")
    if reference.startswith((".", "..")) or (not Path(reference).is_absolute() and (root / reference).exists()):
        return os.path.normpath(root / reference)
    return reference


def classify(reference: str | None) -> BaseSource:
    """What kind of base `reference` names (see the module docstring for the forms)."""
    if not reference or reference == "scratch":
        return BaseSource("scratch")
    for prefix in _LOCAL_PREFIXES:
        if reference.startswith(prefix):
            path, tag = _split_suffix(reference[len(prefix):])
            kind = prefix[:-1]
            if kind == "oci" and not Path(path).is_dir():
                raise InputError("OCI layout directory not found", path=path)
            return BaseSource(kind, path, tag)
    if reference.startswith(("docker://", "https://", "http://")):
        return BaseSource("registry", reference)
    path = Path(reference)
    if path.is_dir():
        return BaseSource("oci", reference)
    if path.is_file():
        return BaseSource("archive", reference)
    if reference.startswith((".", "/")):
        raise InputError("base image path not found", path=reference)
    return BaseSource("registry", reference)


def load_base(reference: str | None, platform: str, cache: LayerCache, *, net: NetConfig | None = None,
              auth: AuthStore | None = None) -> BaseImage:
    """The base image named by `reference` (None or "scratch" → no base), its layers in the cache.
    `net`/`auth` are for a registry pull (default: pixi's config files and their auth file)."""
    source = classify(reference)
    if source.kind == "scratch":
        return SCRATCH
    if source.kind == "oci":
        return load_oci_layout(Path(source.location), source.tag, platform, cache, source.location)
    if source.kind == "registry":
        return pull(source.location, platform, cache, net=net, auth=auth)
    kind = None if source.kind == "archive" else source.kind
    return load_archive(Path(source.location), source.tag, platform, cache, kind)


def _tar_reader(tar: tarfile.TarFile) -> Callable[[str], bytes | None]:
    """`read(name)`: a member's bytes, None when the archive has no such file."""
    def read(name: str) -> bytes | None:
        try:
            member = tar.extractfile(name)
        except KeyError:
            return None
        return member.read() if member is not None else None

    return read


def archive_blobs(path: Path, platform: str) -> list[tuple[str, int]]:
    """(digest, size) of the config and layers of the image in an OCI archive (an image.tar the build
    wrote), read from its manifests only: what a push would have to upload at most."""
    where = str(path)
    try:
        with tarfile.open(path) as tar:
            read = _tar_reader(tar)
            manifest = _layout_manifest(read, None, platform, where)
    except (tarfile.TarError, OSError) as exc:
        raise InputError(f"not a readable image archive: {exc}", path=where) from None
    return [(str(d.get("digest")), int(d.get("size") or 0)) for d in [manifest.get("config") or {},
                                                                      *(manifest.get("layers") or [])]]


def base_layer_count(reference: str | None, platform: str, *, net: NetConfig | None = None) -> int:
    """How many layers the base brings, read from its manifests only (no layer is copied or pulled):
    what planning an image's layer budget needs. A registry base costs one or two manifest requests."""
    source = classify(reference)
    where = source.location
    if source.kind == "scratch":
        return 0
    if source.kind == "oci":
        return len(_layout_manifest(_read_dir_file(Path(where)), source.tag, platform, where).get("layers") or [])
    if source.kind == "registry":
        from pixibuild.net.registry import connect, parse_reference

        ref = parse_reference(where)
        with connect(ref, net) as client:
            return len(_registry_manifest(client, ref, platform).get("layers") or [])
    path = Path(where)
    if not path.is_file():
        raise InputError("base image archive not found", path=where)
    try:
        with tarfile.open(path) as tar:
            read = _tar_reader(tar)
            if source.kind != "docker-archive" and read("index.json") is not None:
                return len(_layout_manifest(read, source.tag, platform, where).get("layers") or [])
            entries = read("manifest.json")
            if entries is None:
                raise InputError("archive has neither index.json (OCI) nor manifest.json (docker)", path=where)
            parsed = _parse_json(entries, "manifest.json", where)
            if not isinstance(parsed, list) or not parsed or not isinstance(parsed[0], dict):
                raise InputError("manifest.json lists no images", path=where)
            return len(parsed[0].get("Layers") or [])
    except (tarfile.TarError, OSError) as exc:
        raise InputError(f"not a readable image archive: {exc}", path=where) from None
