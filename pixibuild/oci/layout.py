"""Image outputs: an OCI layout directory, and one deterministic tar that is both an OCI layout
and a docker-archive (`index.json`, `oci-layout`, `blobs/sha256/…` plus docker's `manifest.json`).

Blob files are hardlinked (or copied) from the layer cache; the tar streams them, so memory stays
flat whatever the image size.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pixibuild.files.atomic import atomic_directory, atomic_output
from pixibuild.files.tar import DeterministicTarWriter
from pixibuild.files.digest import canonical_json, sha256_digest
from pixibuild.net.mediatypes import MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST
from pixibuild.oci.layer import Layer

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


def _index_json(image: Image, tag: str | None) -> bytes:
    full, short = split_tag(tag)
    annotations = {}
    if full:
        annotations = {"io.containerd.image.name": full, "org.opencontainers.image.ref.name": short or full}
    return canonical_json({"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX,
                           "manifests": [image.manifest_descriptor(annotations or None)]})


def _docker_manifest_json(image: Image, tag: str | None) -> bytes:
    full, _ = split_tag(tag)
    return canonical_json([{
        "Config": f"blobs/sha256/{image.config_digest.split(':', 1)[1]}",
        "RepoTags": [full] if full else [],
        "Layers": [f"blobs/sha256/{layer.digest.split(':', 1)[1]}" for layer in image.layers],
    }])


def _small_files(image: Image, tag: str | None) -> dict[str, bytes]:
    """Everything except layer blobs, by archive path."""
    return {
        "oci-layout": OCI_LAYOUT,
        "index.json": _index_json(image, tag),
        "manifest.json": _docker_manifest_json(image, tag),
        f"blobs/sha256/{image.digest.split(':', 1)[1]}": image.manifest,
        f"blobs/sha256/{image.config_digest.split(':', 1)[1]}": image.config,
    }


def _layer_files(image: Image) -> dict[str, Path]:
    return {f"blobs/sha256/{layer.digest.split(':', 1)[1]}": layer.path for layer in image.layers}


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def write_oci_dir(image: Image, directory: Path, *, tag: str | None = None) -> Path:
    """Write (replace) an OCI image layout directory at `directory`; blobs hardlinked when possible."""
    with atomic_directory(directory) as tmp:
        (tmp / "blobs" / "sha256").mkdir(parents=True)
        for name, data in _small_files(image, tag).items():
            (tmp / name).write_bytes(data)
        for name, source in _layer_files(image).items():
            if not (tmp / name).exists():
                _link_or_copy(source, tmp / name)
    return Path(directory)


def write_image_tar(image: Image, out_path: Path, *, tag: str | None = None) -> Path:
    """One tar that `skopeo oci-archive:`, `docker load` and `podman load` all accept; deterministic."""
    entries: dict[str, bytes | Path] = {**_small_files(image, tag), **_layer_files(image)}
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
