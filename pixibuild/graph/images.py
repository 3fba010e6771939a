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
from pixibuild.conda.records import CondaRecord, PypiRecord
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


@dataclass
class BuiltImages:
    target: Image | ImageIndex
    """The image, or the index over one image per platform."""
    results: dict[str, BuildResult]
    """Per platform (lock name)."""
    referrers: list[Artifact] = field(default_factory=list)


def build_images(manifest: Manifest, options: ImageOptions, env: str, platforms: Sequence[PlatformPackages],
                 cache: LayerCache, *, net: NetConfig | None = None) -> BuiltImages:
    """Every platform's image (layers shared through `cache`), and the index when there are several."""
    if not platforms:
        raise InputError("no platform to build an image for", field="platforms")
    results: dict[str, BuildResult] = {}
    facts = None
    for item in platforms:
        facts = project_facts(manifest, env, item.platform, options)
        results[item.platform] = build_configured_image(options, project=facts, env=env, subdir=item.subdir,
                                                        packages=item.conda, wheels=item.wheels, cache=cache,
                                                        plan=item.plan, net=net)
    images = [r.image for r in results.values()]
    if len(images) == 1:
        return BuiltImages(images[0], results)
    assert facts is not None
    _, annotations = image_annotations(options, facts, created_timestamp())
    return BuiltImages(make_index(images, annotations), results)


def check_against_unpack(image: Image, item: PlatformPackages, options: ImageOptions, env: str,
                         work_dir: Path | None = None) -> int:
    """Install `item`'s packages as `pixibuild unpack` does, at the image's prefix, and fail unless
    the image holds exactly that tree there. Returns the number of paths compared."""
    from pixibuild.install import install_environment  # the installer (~85 ms to import) only on request
    from pixibuild.oci.verify import differences, directory_environment, image_environment

    prefix = image_prefix(options, env)
    with tempfile.TemporaryDirectory(prefix="pixibuild-check-", dir=work_dir) as tmp:
        installed = Path(tmp) / "env"
        install_environment(item.conda, installed, target_prefix=prefix, wheels=item.wheels, platform=item.subdir)
        theirs = directory_environment(installed)
    ours = image_environment(image.layers, prefix)
    found = differences(ours, theirs, limit=5)
    if found:
        raise BuildError(f"the {item.platform} image ({image.digest}) differs from `pixibuild unpack` at {prefix}: "
                         + "; ".join(found))
    log.info("%s image ≡ unpack at %s: %d paths", item.platform, prefix, len(ours))
    return len(ours)
