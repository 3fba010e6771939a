"""An in-toto Statement (v1) with a SLSA Provenance v1 predicate: how an image (or pack) was built.

- subject: the artifact by digest (an image's manifest digest, a pack's sha256);
- buildDefinition: `buildType` (pixibuild's, per output kind), `externalParameters` = what the
  user chose (manifest, environment, platform, the lock by sha256, the image settings),
  `internalParameters` = pixibuild's version, `resolvedDependencies` = the lock, every package
  (URL without credentials + sha256) and the base image by digest;
- runDetails: `builder.id` (pixibuild and its version) and `byproducts` (layers, config, SBOM by
  digest). No timestamps: the same inputs give the same statement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from pixibuild import __version__
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.files.digest import canonical_json
from pixibuild.net.auth import storage_key

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
MEDIA_TYPE = "application/vnd.in-toto+json"
BUILD_TYPES = {"image": "urn:pixibuild:build-type:oci-image:v1", "archive": "urn:pixibuild:build-type:pixi-pack:v1"}


@dataclass(frozen=True)
class Byproduct:
    name: str
    digest: str
    """sha256:<hex>"""
    media_type: str | None = None


@dataclass(frozen=True)
class ProvenanceInput:
    kind: str
    """"image" or "archive"."""
    subject_name: str
    subject_digest: str
    """sha256:<hex>"""
    manifest: str
    """The manifest's path relative to the project (pixi.toml, pyproject.toml)."""
    environment: str
    platform: str
    lock_name: str
    lock_sha256: str
    conda: Sequence[CondaRecord]
    pypi: Sequence[PypiRecord] = ()
    settings: dict = field(default_factory=dict)
    base: tuple[str, str] | None = None
    """(reference, sha256:<hex> manifest digest) of an image's base."""
    byproducts: Sequence[Byproduct] = ()


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1] if ":" in digest else digest


def _uri(location: str) -> str:
    return storage_key(location) if "://" in location else location


def _dependency(name: str, uri: str, sha256: str | None, md5: str | None = None) -> dict:
    digest = {k: v for k, v in (("sha256", sha256), ("md5", md5)) if v}
    entry: dict = {"name": name, "uri": uri}
    if digest:
        entry["digest"] = digest
    return entry


def provenance_statement(data: ProvenanceInput) -> bytes:
    dependencies = [_dependency(data.lock_name, data.lock_name, data.lock_sha256)]
    dependencies += [_dependency(r.dist_name, _uri(r.url), r.sha256, r.md5) for r in data.conda]
    dependencies += [_dependency(f"{w.name}-{w.version}", _uri(w.location), w.sha256, w.md5) for w in data.pypi]
    if data.base is not None:
        reference, digest = data.base
        dependencies.append(_dependency(f"base image {reference}", reference, _hex(digest)))
    external: dict = {"manifest": data.manifest, "environment": data.environment, "platform": data.platform,
                      "lock": {"path": data.lock_name, "sha256": data.lock_sha256}}
    if data.settings:
        external["settings"] = data.settings
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": data.subject_name, "digest": {"sha256": _hex(data.subject_digest)}}],
        "predicateType": SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {"buildType": BUILD_TYPES[data.kind], "externalParameters": external,
                                "internalParameters": {"pixibuild": __version__},
                                "resolvedDependencies": dependencies},
            "runDetails": {
                "builder": {"id": f"urn:pixibuild:builder:{__version__}"},
                "byproducts": [{"name": b.name, "digest": {"sha256": _hex(b.digest)},
                                **({"mediaType": b.media_type} if b.media_type else {})} for b in data.byproducts],
            },
        },
    }
    return canonical_json(statement)
