"""A multi-platform image: one OCI image index over one image manifest per platform.

Platform-independent layers (noarch packages, app files, the manifest's activation scripts) are
the same blobs in every platform's manifest, so a registry stores and a client pulls them once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from pixibuild.errors import InputError
from pixibuild.files.digest import canonical_json, sha256_digest
from pixibuild.net.mediatypes import MEDIA_TYPE_INDEX
from pixibuild.oci.layer import Layer
from pixibuild.oci.layout import Image


@dataclass(frozen=True)
class ImageIndex:
    """Images (one per platform, in the order given) and the index that lists them."""

    images: tuple[Image, ...]
    annotations: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        platforms = [tuple(sorted(i.platform.items())) for i in self.images]
        if len(set(platforms)) != len(platforms):
            raise InputError("two images of the index are for the same platform")

    @property
    def manifest(self) -> bytes:
        """The index JSON (canonical): its digest is what a multi-arch tag points at."""
        index: dict = {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX,
                       "manifests": [image.manifest_descriptor() for image in self.images]}
        if self.annotations:
            index["annotations"] = dict(self.annotations)
        return canonical_json(index)

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    def descriptor(self, annotations: dict[str, str] | None = None) -> dict:
        desc = {"mediaType": MEDIA_TYPE_INDEX, "digest": self.digest, "size": len(self.manifest)}
        if annotations:
            desc["annotations"] = annotations
        return desc

    def layers(self) -> list[Layer]:
        """Every layer blob once (shared ones are one blob)."""
        seen: dict[str, Layer] = {}
        for image in self.images:
            for layer in image.layers:
                seen.setdefault(layer.digest, layer)
        return list(seen.values())


def make_index(images: Sequence[Image], annotations: dict[str, str] | None = None) -> ImageIndex:
    return ImageIndex(tuple(images), dict(annotations or {}))
