"""An environment's images, one per platform (an index over them when there are several), as
`pixibuild image` and the doit image nodes build them — one function, so both build the same bytes.

Besides its packages an image takes from its project: the manifest's `[activation]` for the
environment and platform (as `pixi shell-hook` applies it), the version, and the checkout's git
state; and, on request, an SBOM and a provenance statement attached as OCI referrers.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

from pixibuild.errors import BuildError, InputError
from pixibuild.inputs.git import git_state
from pixibuild.inputs.manifest import Manifest
from pixibuild.install.activation import ManifestActivation, pixi_metadata
from pixibuild.attest.provenance import MEDIA_TYPE as PROVENANCE_MEDIA_TYPE
from pixibuild.attest.provenance import Byproduct, ProvenanceInput, provenance_statement
from pixibuild.attest.purl import oci_purl
from pixibuild.attest.sbom import FORMATS as SBOM_FORMATS
from pixibuild.attest.sbom import SbomInput, Subject, sbom_json
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.files.digest import hash_file, sha256_digest
from pixibuild.net.mediatypes import MEDIA_TYPE_MANIFEST
from pixibuild.net.config import NetConfig
from pixibuild.oci.build import BuildResult, ProjectFacts, build_configured_image, image_annotations, image_project_dir
from pixibuild.oci.config import created_timestamp, standard_annotations
from pixibuild.oci.index import ImageIndex, make_index
from pixibuild.oci.layer import LayerCache
from pixibuild.oci.layerplan import LayerPlan
from pixibuild.oci.layout import Image
from pixibuild.oci.options import ImageOptions, image_prefix
from pixibuild.oci.referrers import Artifact

log = logging.getLogger(__name__)

POSIX_SCRIPT_SUFFIXES = (".sh", ".bash")


def manifest_activation(manifest: Manifest, env: str, platform: str, project_dir: str
                        ) -> tuple[ManifestActivation, tuple[tuple[str, Path], ...]]:
    """The manifest's part of activation with paths as they will be inside the image (the project
    lives at `project_dir`), and (destination, source file) of each activation script to copy in."""
    activation = manifest.activation(env, platform)
    field = f"{manifest.field_prefix}activation.scripts"
    scripts: list[str] = []
    sources: list[tuple[str, Path]] = []
    for rel in activation.scripts:
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts:
            raise InputError(f"activation script {rel!r} must be a path inside the project", path=manifest.path,
                             field=field)
        source = manifest.root / rel
        if not source.is_file():
            raise InputError(f"activation script {rel} not found in {manifest.root}", path=manifest.path, field=field)
        if pure.suffix not in POSIX_SCRIPT_SUFFIXES:  # pixi warns the same way, and sources it anyway
            log.warning("%s: activation script %s does not end in .sh or .bash but is sourced on %s",
                        manifest.path, rel, platform)
        destination = f"{project_dir.rstrip('/')}/{pure.as_posix()}"
        scripts.append(destination)
        sources.append((destination, source))
    metadata = pixi_metadata(project_root=project_dir, project_name=manifest.name,
                             manifest_path=f"{project_dir.rstrip('/')}/{manifest.path.name}", version=manifest.version,
                             environment=env, platforms=manifest.environment_platforms(env))
    return ManifestActivation(metadata, tuple(scripts), activation.env), tuple(sources)


def project_facts(manifest: Manifest, env: str, platform: str, options: ImageOptions) -> ProjectFacts:
    """Everything the image of (`env`, `platform`) needs from `manifest`'s project."""
    project_dir = image_project_dir(options)
    activation, sources = manifest_activation(manifest, env, platform, project_dir)
    git = git_state(manifest.path)
    annotations = standard_annotations(version=manifest.version, source=git.source if git else None,
                                       revision=git.revision if git else None)
    return ProjectFacts(name=manifest.name or manifest.root.name, root=manifest.root, activation=activation,
                        activation_sources=sources, annotations=annotations)


@dataclass
class PlatformPackages:
    """One platform's verified packages (and, in the doit graph, its planned layers)."""

    platform: str
    """The lock's platform name."""
    subdir: str
    conda: list[tuple[CondaRecord, Path]]
    wheels: list[tuple[PypiRecord, Path]] = field(default_factory=list)
    plan: LayerPlan | None = None
    project_wheels: list[tuple[PypiRecord, Path]] = field(default_factory=list)
    """Wheels built from the project's PyPI sources (pixibuild.pypi): their own top layer."""


@dataclass
class BuiltImages:
    target: Image | ImageIndex
    """The image, or the index over one image per platform."""
    results: dict[str, BuildResult]
    """Per platform (lock name)."""
    referrers: list[Artifact] = field(default_factory=list)


def build_images(manifest: Manifest, options: ImageOptions, env: str, platforms: Sequence[PlatformPackages],
                 cache: LayerCache, *, net: NetConfig | None = None, tag: str | None = None) -> BuiltImages:
    """Every platform's image (layers shared through `cache`), the index when there are several, and
    the SBOM / provenance referrers of each platform's image when the options ask for them."""
    if not platforms:
        raise InputError("no platform to build an image for", field="platforms")
    results: dict[str, BuildResult] = {}
    facts = None
    for item in platforms:
        facts = project_facts(manifest, env, item.platform, options)
        results[item.platform] = build_configured_image(options, project=facts, env=env, subdir=item.subdir,
                                                        packages=item.conda, wheels=item.wheels, cache=cache,
                                                        plan=item.plan, net=net, project_wheels=item.project_wheels)
    images = [r.image for r in results.values()]
    referrers: list[Artifact] = []
    if options.sbom or options.provenance:
        lock_sha256 = hash_file(manifest.lock_path).sha256.hexdigest()
        for item in platforms:
            referrers += attachments(manifest, options, env, item, results[item.platform], tag or manifest.name,
                                     lock_sha256)
    if len(images) == 1:
        return BuiltImages(images[0], results, referrers)
    assert facts is not None
    _, annotations = image_annotations(options, facts, created_timestamp())
    return BuiltImages(make_index(images, annotations), results, referrers)


def _repository_and_tag(tag: str) -> tuple[str, str | None]:
    last = tag.rsplit("/", 1)[-1]
    if ":" in last:
        return tag.rsplit(":", 1)[0], tag.rsplit(":", 1)[1]
    return tag, None


def _image_settings(options: ImageOptions) -> dict:
    """The image settings a provenance statement records (what the user chose; no output paths)."""
    keep = ("base", "cmd", "entrypoint", "expose", "labels", "annotations", "env", "include", "prefix", "workdir",
            "user", "max_layers", "compression", "sbom")
    return {k: v for k, v in vars(options).items() if k in keep and v not in (None, [], {})}


def _base_subject(reference: str, digest: str) -> Subject:
    """A base image as an SBOM entry: its purl names the registry repository (or the local layout/
    archive file) and pins the manifest digest."""
    from pixibuild.net.registry import parse_reference

    local = reference.startswith(("oci:", "oci-archive:", "docker-archive:")) or Path(reference).exists()
    if local:
        name = Path(reference.split(":", 1)[1] if ":" in reference and not Path(reference).exists() else reference).name
        purl, supplier = oci_purl(name or "base", digest), f"local image {name or reference}"
    else:
        ref = parse_reference(reference)
        purl = oci_purl(f"{ref.registry}/{ref.repository}", digest, ref.tag)
        supplier = f"{ref.registry}/{ref.repository.rsplit('/', 1)[0]}" if "/" in ref.repository else ref.registry
    return Subject(reference, "image", sha256=digest.split(":", 1)[1], purl=purl, supplier=supplier)


def attachments(manifest: Manifest, options: ImageOptions, env: str, item: PlatformPackages, result: BuildResult,
                tag: str, lock_sha256: str) -> list[Artifact]:
    """The SBOM and provenance of one platform's image, as referrers of its manifest."""
    image = result.image
    subject = {"mediaType": MEDIA_TYPE_MANIFEST, "digest": image.digest, "size": len(image.manifest)}
    created = created_timestamp()
    annotations = {"org.opencontainers.image.created": created}
    repository, short_tag = _repository_and_tag(tag)
    base = result.base
    base_subject = _base_subject(base.reference, base.digest) if base.digest else None
    conda = [r for r, _ in item.conda]
    wheels = [w for w, _ in item.wheels]
    artifacts = []
    byproducts = [Byproduct(f"layer {i}", layer.digest, layer.media_type) for i, layer in enumerate(image.layers)]
    byproducts.append(Byproduct("config", image.config_digest, "application/vnd.oci.image.config.v1+json"))
    if options.sbom:
        data = SbomInput(project=manifest.name, environment=env, platform=item.platform, conda=conda, pypi=wheels,
                         subject=Subject(tag, "image", version=manifest.version, sha256=image.digest.split(":", 1)[1],
                                         purl=oci_purl(repository, image.digest, short_tag)),
                         base=base_subject, created=created, lock_sha256=lock_sha256)
        document = sbom_json(data, options.sbom)
        artifacts.append(Artifact(SBOM_FORMATS[options.sbom], document, subject, annotations))
        byproducts.append(Byproduct(f"sbom ({options.sbom})", sha256_digest(document), SBOM_FORMATS[options.sbom]))
    if options.provenance:
        statement = provenance_statement(ProvenanceInput(
            kind="image", subject_name=tag, subject_digest=image.digest, manifest=manifest.path.name,
            environment=env, platform=item.platform, lock_name=manifest.lock_path.name, lock_sha256=lock_sha256,
            conda=conda, pypi=wheels, settings=_image_settings(options),
            base=(base.reference, base.digest) if base.digest else None, byproducts=byproducts))
        artifacts.append(Artifact(PROVENANCE_MEDIA_TYPE, statement, subject, annotations))
    return artifacts


def check_against_unpack(image: Image, item: PlatformPackages, options: ImageOptions, env: str,
                         work_dir: Path | None = None) -> int:
    """Install `item`'s packages as `pixibuild unpack` does, at the image's prefix, and fail unless
    the image holds exactly that tree there. Returns the number of paths compared."""
    from pixibuild.install.environment import install_environment  # the installer (~85 ms) only on request
    from pixibuild.install.conda_meta import HISTORY_PIXI_UNPACK
    from pixibuild.oci.verify import differences, directory_environment, image_environment

    prefix = image_prefix(options, env)
    with tempfile.TemporaryDirectory(prefix="pixibuild-check-", dir=work_dir) as tmp:
        installed = Path(tmp) / "env"
        install_environment(item.conda, installed, target_prefix=prefix, wheels=item.wheels, platform=item.subdir,
                            history=HISTORY_PIXI_UNPACK)
        theirs = directory_environment(installed)
    ours = image_environment(image.layers, prefix)
    found = differences(ours, theirs, limit=5)
    if found:
        raise BuildError(f"the {item.platform} image ({image.digest}) differs from `pixibuild unpack` at {prefix}: "
                         + "; ".join(found))
    log.info("%s image ≡ unpack at %s: %d paths", item.platform, prefix, len(ours))
    return len(ours)
