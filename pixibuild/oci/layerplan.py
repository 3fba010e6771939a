"""The one layer plan of an image: how many layers the packages may use, and which packages share
a layer. The doit rules plan it once when the graph is loaded — grouped for the whole workspace, so
images share layer blobs — and hand the same plan to every layer node and to the image node;
`pixibuild image` plans it after loading the base (grouped on the image's own).

Layers of an image, base-most first: the base image's, the package layers, one environment layer
(conda-meta/history, wheels, entrypoint, the manifest's activation scripts), an app layer when files
are included, and a user layer for a non-root `--user`. All of them must fit in `max_layers`
(Docker and overlayfs stop near 125/128).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pixibuild.conda.platforms import is_windows
from pixibuild.conda.records import CondaRecord
from pixibuild.errors import InputError
from pixibuild.files.verified import verifying
from pixibuild.install.environment import dependency_order, install_package
from pixibuild.install.noarch import environment_python_version, site_packages_override
from pixibuild.oci.assemble import LayerSpec
from pixibuild.oci.grouping import (DEFAULT_MAX_LAYERS, ImageSet, WorkspaceGrouping, group_packages, layer_domain,
                                    layer_key)
from pixibuild.store.blobs import blob_source

ENVIRONMENT_LAYERS = 1


def package_budget(max_layers: int, base_layers: int, app_layer: bool, *, base: str = "the base image",
                   wheel_layer: bool = False, user_layer: bool = False) -> int:
    """Layers left for packages; an InputError naming the numbers when none are left. `wheel_layer`:
    the project's built wheels get their own top layer (pixibuild.pypi); `user_layer`: the non-root
    user's layer (oci/user.py)."""
    extra = (1 if app_layer else 0) + (1 if wheel_layer else 0) + (1 if user_layer else 0)
    fixed = base_layers + ENVIRONMENT_LAYERS + extra
    if max_layers - fixed < 1:
        app = (", 1 app layer" if app_layer else "") + (", 1 project-wheel layer" if wheel_layer else "") + \
            (", 1 user layer" if user_layer else "")
        raise InputError(f"{max_layers} layers leave none for packages: {base} has {base_layers} layers, plus "
                         f"1 environment layer{app} (at least {fixed + 1} needed)", field="max-layers")
    return max_layers - fixed


@dataclass(frozen=True)
class PackageLayer:
    """One planned package layer: how to build it (its content key and populate function) and its packages."""

    spec: LayerSpec
    records: tuple[CondaRecord, ...]


@dataclass(frozen=True)
class LayerPlan:
    """Package layers for one image, planned for a base with `base_layers` layers."""

    base_layers: int
    packages: tuple[PackageLayer, ...]


def image_set(records: Sequence[CondaRecord], *, platform: str, target_prefix: str, max_layers: int | None,
              base_layers: int, app_layer: bool, base: str = "the base image", wheel_layer: bool = False,
              user_layer: bool = False) -> ImageSet:
    """What workspace grouping (oci/grouping.py) needs to know about one image: its layer domain, its
    package budget (from the same `package_budget` as its plan) and its packages."""
    budget = package_budget(max_layers or DEFAULT_MAX_LAYERS, base_layers, app_layer, base=base,
                            wheel_layer=wheel_layer, user_layer=user_layer)
    return ImageSet.of(records, budget, layer_domain(target_prefix, platform))


def _archive_bytes(group: Sequence[CondaRecord], archives: dict[str, Path]) -> int | None:
    """The group's archive sizes: the lock's `size`, else the archive's if it is already here
    (the rules plan before fetching); None when one is unknown."""
    total = 0
    for record in group:
        if record.size is not None:
            total += record.size
            continue
        try:
            total += archives[record.name].stat().st_size
        except OSError:
            return None
    return total


def plan_layers(packages: Sequence[tuple[CondaRecord, Path]], *, platform: str, target_prefix: str,
                max_layers: int | None, base_layers: int, app_layer: bool, base: str = "the base image",
                wheel_layer: bool = False, user_layer: bool = False,
                grouping: WorkspaceGrouping | None = None) -> LayerPlan:
    """Group `packages` (records with their verified archives) into the layers the budget allows:
    by the workspace's `grouping` when given (shared with the workspace's other images), else on
    the image's own (`group_packages`).

    A layer of noarch packages only is keyed by the platform family, not the platform (on Linux
    they install the same files whatever the architecture): a multi-arch image shares its blob."""
    budget = package_budget(max_layers or DEFAULT_MAX_LAYERS, base_layers, app_layer, base=base,
                            wheel_layer=wheel_layer, user_layer=user_layer)
    records = [r for r, _ in packages]
    archives = {r.name: Path(p) for r, p in packages}
    python_version, site_packages = environment_python_version(records), site_packages_override(records)
    mount = target_prefix.strip("/")
    planned = []
    groups = (grouping.group(records, budget, layer_domain(target_prefix, platform)) if grouping is not None
              else group_packages(records, budget))
    for group in groups:
        ordered = dependency_order(group)
        shared = all(r.noarch or r.subdir == "noarch" for r in group) and not is_windows(platform)
        key = layer_key(group, target_prefix) + f"\0platform={'unix' if shared else platform}"
        if any(r.noarch == "python" for r in group):
            key += f"\0python={python_version}\0site={site_packages}"

        def populate(staging: Path, ordered: list[CondaRecord] = ordered) -> None:
            # store blobs are named by hash: the installer takes the format from the record; their
            # sha256 is checked as the installer reads them (a damaged blob fails the layer, evicted)
            sources = [(record, blob_source(archives[record.name], record.file_name)) for record in ordered]
            with verifying(source for _, source in sources):
                for record, source in sources:
                    install_package(record, source, staging, target_prefix=target_prefix,
                                    python_version=python_version, platform=platform,
                                    site_packages_path=site_packages)

        names = ", ".join(r.dist_name for r in ordered)
        spec = LayerSpec(key, populate, mount=mount, created_by=f"pixibuild conda: {names}", modes="keep",
                         archive_bytes=_archive_bytes(group, archives))
        planned.append(PackageLayer(spec, tuple(ordered)))
    return LayerPlan(base_layers, tuple(planned))
