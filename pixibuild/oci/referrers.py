"""OCI 1.1 referrers: documents about an image (SBOM, provenance) as artifact manifests whose
`subject` is the image manifest, so they travel with the image without changing its digest.

A registry with the referrers API indexes them by subject on push (it answers the manifest PUT
with an `OCI-Subject` header). One without it (Debian's docker-registry, distribution 2.8) gets the
fallback the distribution spec defines: an image index tagged `sha256-<subject hex>` listing them.
In an OCI layout they are listed in index.json beside the image.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from pixibuild.files.digest import canonical_json, sha256_digest
from pixibuild.net.mediatypes import EMPTY_JSON, MEDIA_TYPE_EMPTY, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST

EMPTY_DESCRIPTOR = {"mediaType": MEDIA_TYPE_EMPTY, "digest": sha256_digest(EMPTY_JSON), "size": len(EMPTY_JSON),
                    "data": base64.b64encode(EMPTY_JSON).decode()}


@dataclass(frozen=True)
class Artifact:
    """One document attached to an image manifest (`subject`, its descriptor)."""

    artifact_type: str
    payload: bytes
    subject: dict
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def payload_descriptor(self) -> dict:
        return {"mediaType": self.artifact_type, "digest": sha256_digest(self.payload), "size": len(self.payload)}

    @property
    def manifest(self) -> bytes:
        manifest: dict = {"schemaVersion": 2, "mediaType": MEDIA_TYPE_MANIFEST, "artifactType": self.artifact_type,
                          "config": EMPTY_DESCRIPTOR, "layers": [self.payload_descriptor],
                          "subject": {k: self.subject[k] for k in ("mediaType", "digest", "size")}}
        if self.annotations:
            manifest["annotations"] = dict(self.annotations)
        return canonical_json(manifest)

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    def descriptor(self) -> dict:
        """How a referrers list (API answer, fallback tag index, layout index.json) names it."""
        desc: dict = {"mediaType": MEDIA_TYPE_MANIFEST, "digest": self.digest, "size": len(self.manifest),
                      "artifactType": self.artifact_type}
        if self.annotations:
            desc["annotations"] = dict(self.annotations)
        return desc

    def blobs(self) -> dict[str, bytes]:
        """The blobs a push uploads (the empty config and the document)."""
        return {EMPTY_DESCRIPTOR["digest"]: EMPTY_JSON, sha256_digest(self.payload): self.payload}


def fallback_tag(subject_digest: str) -> str:
    """The distribution spec's referrers tag schema: `<alg>-<hex>`."""
    algorithm, _, hexdigest = subject_digest.partition(":")
    return f"{algorithm}-{hexdigest}"


def referrers_index(descriptors: list[dict]) -> bytes:
    """The image index a fallback tag points at (also the referrers API's answer format)."""
    return canonical_json({"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": descriptors})
