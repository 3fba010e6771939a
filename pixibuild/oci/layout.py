"""Image outputs: an OCI layout directory, and one deterministic tar that is both an OCI layout
and a docker-archive (`index.json`, `oci-layout`, `blobs/sha256/…` plus docker's `manifest.json`).
A multi-platform index is written as an OCI layout only (docker-archive has no place for it);
referrers (SBOM, provenance) are listed in index.json after the tagged image.

Blob files are hardlinked (or copied) from the layer cache; the tar streams them, so memory stays
flat whatever the image size.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from pixibuild.files.clone import clone_or_copy
from pixibuild.files.atomic import atomic_directory, atomic_output
from pixibuild.files.tar import DeterministicTarWriter
from pixibuild.files.digest import canonical_json, sha256_digest
from pixibuild.net.mediatypes import MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST
from pixibuild.oci.layer import Layer

if TYPE_CHECKING:
    from pixibuild.oci.index import ImageIndex
    from pixibuild.oci.referrers import Artifact

OCI_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})
TAR_MTIME = 0


@dataclass(frozen=True)
class Image:
    """A built image: manifest and config bytes plus its layer blobs (base layers first)."""

    manifest: bytes
    config: bytes
    layers: Sequence[Layer]
    platform: dict

    @property
    def digest(self) -> str:
        """The manifest digest: the image's identity in a registry."""
        return sha256_digest(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256_digest(self.config)

    def manifest_descriptor(self, annotations: dict[str, str] | None = None) -> dict:
        desc = {"mediaType": MEDIA_TYPE_MANIFEST, "digest": self.digest, "size": len(self.manifest),
                "platform": self.platform}
        if annotations:
            desc["annotations"] = annotations
        return desc


def split_tag(name: str | None) -> tuple[str | None, str | None]:
    """"repo/name:tag" → (full ref, tag); a missing tag means "latest"."""
    if not name:
        return None, None
    last = name.rsplit("/", 1)[-1]
    if "@" in last:
        return name, None
    if ":" in last:
        return name, last.rsplit(":", 1)[1]
    return f"{name}:latest", "latest"


def _ref_annotations(tag: str | None) -> dict[str, str] | None:
    full, short = split_tag(tag)
    if not full:
        return None
    return {"io.containerd.image.name": full, "org.opencontainers.image.ref.name": short or full}


def _index_json(target: "Image | ImageIndex", tag: str | None, referrers: Sequence["Artifact"]) -> bytes:
    """index.json: the tagged image (or multi-platform index), then any referrers (untagged)."""
    annotations = _ref_annotations(tag)
    if isinstance(target, Image):
        first = target.manifest_descriptor(annotations)
    else:
        first = target.descriptor(annotations)
    return canonical_json({"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX,
                           "manifests": [first, *(a.descriptor() for a in referrers)]})


def _docker_manifest_json(image: Image, tag: str | None) -> bytes:
    full, _ = split_tag(tag)
    return canonical_json([{
        "Config": f"blobs/sha256/{image.config_digest.split(':', 1)[1]}",
        "RepoTags": [full] if full else [],
        "Layers": [f"blobs/sha256/{layer.digest.split(':', 1)[1]}" for layer in image.layers],
    }])


def _blob_name(digest: str) -> str:
    return f"blobs/sha256/{digest.split(':', 1)[1]}"


def _images(target: "Image | ImageIndex") -> tuple[Image, ...]:
    return (target,) if isinstance(target, Image) else target.images


def _small_files(target: "Image | ImageIndex", tag: str | None, referrers: Sequence["Artifact"] = (),
                 docker: bool = True) -> dict[str, bytes]:
    """Everything except layer blobs, by archive path."""
    files = {"oci-layout": OCI_LAYOUT, "index.json": _index_json(target, tag, referrers)}
    if docker and isinstance(target, Image):
        files["manifest.json"] = _docker_manifest_json(target, tag)
    if not isinstance(target, Image):
        files[_blob_name(target.digest)] = target.manifest
    for image in _images(target):
        files[_blob_name(image.digest)] = image.manifest
        files[_blob_name(image.config_digest)] = image.config
    for artifact in referrers:
        files[_blob_name(artifact.digest)] = artifact.manifest
        for digest, data in artifact.blobs().items():
            files[_blob_name(digest)] = data
    return files


def _layer_files(target: "Image | ImageIndex") -> dict[str, Path]:
    return {_blob_name(layer.digest): layer.path for image in _images(target) for layer in image.layers}


def write_oci_dir(image: "Image | ImageIndex", directory: Path, *, tag: str | None = None,
                  referrers: Sequence["Artifact"] = ()) -> Path:
    """Write (replace) an OCI image layout directory at `directory`. Layer blobs are copies of the layer
    cache's (reflinks where the filesystem can), never hard links: the layout is the user's to change."""
    with atomic_directory(directory) as tmp:
        (tmp / "blobs" / "sha256").mkdir(parents=True)
        for name, data in _small_files(image, tag, referrers).items():
            (tmp / name).write_bytes(data)
        for name, source in _layer_files(image).items():
            if not (tmp / name).exists():
                clone_or_copy(source, tmp / name)
    return Path(directory)


def write_image_tar(image: "Image | ImageIndex", out_path: Path, *, tag: str | None = None,
                    referrers: Sequence["Artifact"] = (), docker: bool = True) -> Path:
    """One tar that `skopeo oci-archive:`, `docker load` and `podman load` all accept; deterministic.
    An index (several platforms) is an OCI archive only: docker's manifest.json holds one image, so
    `docker`=False is the only choice for it; `docker`=False also leaves manifest.json out of a
    single image's tar (an oci-archive: output)."""
    return write_tar_entries({**_small_files(image, tag, referrers, docker), **_layer_files(image)}, out_path)


def write_tar_entries(entries: "dict[str, bytes | Path]", out_path: Path) -> Path:
    """The image tar of `entries` (archive path → bytes, or a file to copy): what `write_image_tar` writes,
    also used to write an image again from its parts (the remote cache): same entries, same bytes."""
    with atomic_output(out_path) as out:
        tar = DeterministicTarWriter(out, mtime=TAR_MTIME, tar_format=tarfile.PAX_FORMAT)
        tar.add_dir("blobs", 0o755)
        tar.add_dir("blobs/sha256", 0o755)
        for name in sorted(entries):
            value = entries[name]
            if isinstance(value, bytes):
                tar.add_bytes(name, value, 0o644)
            else:
                tar.add_file(name, value, 0o644)
        tar.close()
    return Path(out_path)
