"""Layers + settings + base → an `Image` (config and manifest bytes). No I/O besides what's given."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from pixibuild.conda.platforms import oci_platform
from pixibuild.files.digest import canonical_json
from pixibuild.oci.config import (HistoryEntry, ImageSettings, created_timestamp,
    image_config, image_manifest)
from pixibuild.oci.layer import Layer, LayerCache
from pixibuild.oci.layout import Image


@dataclass(frozen=True)
class LayerSpec:
    """A layer to build: its cache key, how to stage its files, where they go, and its history line."""

    key: str
    populate: Callable[[Path], None] = field(compare=False)
    mount: str = ""
    created_by: str = ""
    comment: str = ""
    modes: str = "normalize"
    """File mode policy (`pixibuild.oci.layer.MODES`): "keep" for installed packages, as unpack does."""
    archive_bytes: int | None = field(default=None, compare=False)
    """Sum of the package archives' sizes it installs (None: unknown): small layers are staged in RAM."""


@dataclass(frozen=True)
class BaseImage:
    """A base image: its config (dict) and its layer blobs, base-most first. `scratch` has neither."""

    reference: str
    config: dict | None
    layers: tuple[Layer, ...] = ()
    digest: str | None = None
    """The base's manifest digest (for a docker-archive, which has no manifest: its config's)."""


SCRATCH = BaseImage("scratch", None, ())


def build_layers(specs: Sequence[LayerSpec], cache: LayerCache) -> list[tuple[Layer, HistoryEntry]]:
    """Each spec's layer from the cache, or built once and cached."""
    return [(cache.get_or_build(spec.key, spec.populate, mount=spec.mount, modes=spec.modes),
             HistoryEntry(created_by=spec.created_by or f"pixibuild layer {spec.key}", comment=spec.comment))
            for spec in specs]


def assemble_image(*, platform: str, layers: Sequence[tuple[Layer, HistoryEntry]],
                   settings: ImageSettings, base: BaseImage = SCRATCH, created: str | None = None,
                   annotations: dict[str, str] | None = None) -> Image:
    """Config and manifest for `base` + `layers`; the manifest lists base layers first."""
    created = created or created_timestamp()
    config = image_config(platform=platform, layers=[l for l, _ in layers], history=[h for _, h in layers],
                          settings=settings, created=created, base=base.config)
    config_bytes = canonical_json(config)
    all_layers = list(base.layers) + [l for l, _ in layers]
    manifest = image_manifest(config_bytes, [l.descriptor() for l in all_layers], annotations)
    os_name, arch, variant = oci_platform(platform)
    plat = {"os": os_name, "architecture": arch}
    if variant:
        plat["variant"] = variant
    return Image(manifest=canonical_json(manifest), config=config_bytes, layers=tuple(all_layers), platform=plat)
