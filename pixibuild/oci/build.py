"""Packages → image: per-package (group) layers, one environment-wide layer, an optional app layer.

Each package layer is content-addressed by its packages' sha256s, the target prefix, platform,
python version (for noarch python) and LAYER_FORMAT_VERSION: it is built once with the
installer's `install_package` into a staging dir and then served from the layer cache, so a
one-package change rebuilds one layer (plus the env layer if activation changed, and the
config/manifest). The doit rules call `package_layer_specs`/`LayerCache.get_or_build` per layer
and `build_image` for the rest; the CLI calls `build_image`.

Layer order, base-most first: base image layers, package layers (most depended-on first), the
environment layer (`conda-meta/history`, PyPI wheels, `/entrypoint.sh`), the app layer.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

from pixibuild.install.activation import activation_env, entrypoint_script
from pixibuild.errors import InputError
from pixibuild.install import dependency_order, install_package
from pixibuild.install.noarch import PythonLayout, environment_python_version, site_packages_override
from pixibuild.install.wheels import install_wheels
from pixibuild.conda.platforms import oci_platform
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.oci.assemble import SCRATCH, BaseImage, LayerSpec, assemble_image, build_layers
from pixibuild.oci.config import ImageSettings, canonical_json, created_timestamp, standard_labels
from pixibuild.oci.grouping import DEFAULT_MAX_LAYERS, group_packages, layer_key
from pixibuild.oci.layer import Layer, LayerCache
from pixibuild.oci.layout import Image
from pixibuild.oci.options import ImageOptions, image_prefix

log = logging.getLogger(__name__)

ENTRYPOINT_PATH = "/entrypoint.sh"
DEFAULT_BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _activation_file(rel: str) -> bool:
    """Files a package layer keeps beside its cache entry: what activation reads."""
    return rel.startswith(("etc/conda/activate.d/", "etc/conda/env_vars.d/")) or rel == "conda-meta/state"


@dataclass
class BuildResult:
    image: Image
    layers_built: int
    layers_reused: int
    package_groups: list[list[str]] = field(default_factory=list)


def _python(records: Sequence[CondaRecord], platform: str) -> tuple[str | None, str | None]:
    return environment_python_version(records), site_packages_override(records)


def package_layer_specs(packages: Sequence[tuple[CondaRecord, Path]], *, platform: str, target_prefix: str,
                        budget: int) -> list[tuple[LayerSpec, list[CondaRecord]]]:
    """One LayerSpec per package group (see grouping.py), installing its packages at `target_prefix`."""
    records = [r for r, _ in packages]
    archives = {r.name: Path(p) for r, p in packages}
    python_version, site_packages = _python(records, platform)
    mount = target_prefix.strip("/")
    specs = []
    for group in group_packages(records, budget):
        ordered = dependency_order(group)
        key = layer_key(group, target_prefix) + f"\0platform={platform}"
        if any(r.noarch == "python" for r in group):
            key += f"\0python={python_version}\0site={site_packages}"

        def populate(staging: Path, ordered: list[CondaRecord] = ordered) -> None:
            # store blobs are named by hash: the installer takes the format from the record
            for record, archive in [(r, archives[r.name]) for r in ordered]:
                install_package(record, archive, staging, target_prefix=target_prefix,
                                python_version=python_version, platform=platform,
                                site_packages_path=site_packages)

        names = ", ".join(r.dist_name for r in ordered)
        specs.append((LayerSpec(key, populate, mount=mount, created_by=f"pixibuild conda: {names}"), ordered))
    return specs


def build_package_layer(spec: LayerSpec, cache: LayerCache) -> Layer:
    """One package layer from the cache or built now (what a doit task per layer calls); its
    activation files are kept beside the cache entry for the environment layer."""
    return cache.get_or_build(spec.key, spec.populate, mount=spec.mount, keep=_activation_file)


def _activation_view(cache: LayerCache, specs: Sequence[LayerSpec], view: Path) -> Path:
    """A directory with the union of the package layers' activation files (layer order: upper wins)."""
    for spec in specs:
        kept = cache.kept_dir(spec.key)
        for path in sorted(kept.rglob("*")):
            if path.is_file():
                target = view / path.relative_to(kept)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
    return view


def _tree_digest(sources: Sequence[tuple[str, Path]]) -> str:
    """Content hash of app files (path, mode bit, bytes), for the app layer's cache key."""
    h = hashlib.sha256()
    for dest, source in sources:
        for path in [source] if source.is_file() else sorted(p for p in source.rglob("*")):
            rel = dest if path == source else f"{dest}/{path.relative_to(source).as_posix()}"
            st = path.lstat()
            h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{bool(st.st_mode & 0o111)}\0".encode())
            if path.is_symlink():
                h.update(os.readlink(path).encode())
            elif path.is_file():
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
            h.update(b"\0")
    return h.hexdigest()


def _copy_into(staging: Path, dest: str, source: Path) -> None:
    target = staging / dest.strip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(source, target, follow_symlinks=False)


def build_image(packages: Sequence[tuple[CondaRecord, Path]], *, platform: str, target_prefix: str,
                cache: LayerCache, base: BaseImage = SCRATCH, settings: ImageSettings | None = None,
                wheels: Sequence[tuple[PypiRecord, Path]] = (), app_files: Sequence[tuple[str, Path]] = (),
                max_layers: int = DEFAULT_MAX_LAYERS, created: str | None = None,
                jobs: int | None = None) -> BuildResult:
    """The whole image for an environment; layers come from `cache` when their inputs are unchanged."""
    if not target_prefix.startswith("/"):
        raise InputError(f"target prefix must be absolute, got {target_prefix!r}", field="prefix")
    try:
        oci_platform(platform)
    except ValueError as exc:
        raise InputError(str(exc), field="platform") from None
    settings = settings or ImageSettings()
    if base.config is None and settings.entrypoint is None:
        log.warning("scratch base: %s runs with /bin/sh, which must then come from a package at /bin/sh "
                    "(or use --base / --entrypoint)", ENTRYPOINT_PATH)
    budget = max_layers - len(base.layers) - 1 - (1 if app_files else 0)
    if budget < 1:
        raise InputError(f"{max_layers} layers are not enough: the base image alone has {len(base.layers)}",
                         field="max-layers")
    created = created or created_timestamp()
    cache.root.mkdir(parents=True, exist_ok=True)
    # store blobs are named by hash: the installers take formats and wheel names from the records
    return _build_image(packages, platform=platform, target_prefix=target_prefix, cache=cache, base=base,
                        settings=settings, wheels=wheels, app_files=app_files, budget=budget, created=created,
                        jobs=jobs)


def _build_image(packages: Sequence[tuple[CondaRecord, Path]], *, platform: str, target_prefix: str,
                 cache: LayerCache, base: BaseImage, settings: ImageSettings,
                 wheels: Sequence[tuple[PypiRecord, Path]], app_files: Sequence[tuple[str, Path]], budget: int,
                 created: str, jobs: int | None) -> BuildResult:
    hits, misses = cache.hits, cache.misses
    pkg_specs = package_layer_specs(packages, platform=platform, target_prefix=target_prefix, budget=budget)
    # Layers are independent: build them in parallel (zlib and sha256 release the GIL).
    with ThreadPoolExecutor(max_workers=max(1, jobs or os.cpu_count() or 1)) as pool:
        built = list(pool.map(lambda spec: build_package_layer(spec, cache), [s for s, _ in pkg_specs]))
    layers = [(layer, _history(spec)) for layer, (spec, _) in zip(built, pkg_specs)]

    # Environment layer: activation needs the union of the packages' activation files.
    base_env = dict(item.partition("=")[::2] for item in ((base.config or {}).get("config") or {}).get("Env") or [])
    with tempfile.TemporaryDirectory(prefix="pixibuild-activation-", dir=cache.root) as tmp:
        view = _activation_view(cache, [s for s, _ in pkg_specs], Path(tmp) / "prefix")
        view.mkdir(parents=True, exist_ok=True)
        script = entrypoint_script(view, target_prefix)
        env = activation_env(view, target_prefix, platform, base_path=base_env.get("PATH", DEFAULT_BASE_PATH))
    records = [r for r, _ in packages]
    python_version, site_packages = _python(records, platform)
    env_key = canonical_json({"kind": "environment", "prefix": target_prefix, "platform": platform,
                              "entrypoint": script, "python": python_version, "site": site_packages,
                              "wheels": sorted(f"{w.name}={w.sha256 or _file_sha256(p)}" for w, p in wheels)}).decode()
    mount = target_prefix.strip("/")

    def populate_env(staging: Path) -> None:
        prefix_dir = staging / mount
        (prefix_dir / "conda-meta").mkdir(parents=True)
        (prefix_dir / "conda-meta" / "history").write_bytes(b"")
        if wheels:
            if python_version is None:
                raise InputError("PyPI wheels need a python package in the environment")
            install_wheels(list(wheels), prefix_dir, target_prefix, PythonLayout(python_version, platform, site_packages))
        entry = staging / ENTRYPOINT_PATH.lstrip("/")
        entry.write_text(script)
        entry.chmod(0o755)

    [env_layer] = build_layers([LayerSpec(env_key, populate_env, created_by="pixibuild environment: "
                                          "conda-meta/history, wheels, entrypoint")], cache)
    layers.append(env_layer)

    if app_files:
        app_key = f"app\0{_tree_digest(app_files)}"
        layers += build_layers([LayerSpec(app_key, lambda d: [_copy_into(d, dst, src) for dst, src in app_files],
                                          created_by="pixibuild app files: " + ", ".join(d for d, _ in app_files))],
                               cache)

    settings = _with_environment(settings, env, target_prefix)
    image = assemble_image(platform=platform, layers=layers, settings=settings, base=base, created=created)
    return BuildResult(image, layers_built=cache.misses - misses, layers_reused=cache.hits - hits,
                       package_groups=[[r.dist_name for r in group] for _, group in pkg_specs])


def app_files(root: Path, patterns: list[str], workdir: str) -> list[tuple[str, Path]]:
    """(destination in image, source) for each file matching the globs, under the working dir."""
    found: dict[str, Path] = {}
    for pattern in patterns:
        if pattern.startswith("/") or ".." in Path(pattern).parts:
            raise InputError(f"--include {pattern!r} must be relative to the project root, without '..'",
                             field="include")
        matches = sorted(root.glob(pattern))
        if not matches:
            raise InputError(f"--include {pattern!r} matches nothing under {root}", field="include")
        for path in matches:
            rel = path.relative_to(root).as_posix()
            if rel.startswith(".pixi/") or rel == ".pixi":
                continue
            found[f"{workdir.rstrip('/')}/{rel}"] = path
    # a directory match covers its files: drop entries inside an included directory
    dirs = [d for d, p in found.items() if p.is_dir()]
    return sorted((d, p) for d, p in found.items() if not any(d.startswith(x + "/") for x in dirs))


def build_configured_image(options: ImageOptions, *, name: str, env: str, subdir: str, project_root: Path,
                           packages: Sequence[tuple[CondaRecord, Path]], wheels: Sequence[tuple[PypiRecord, Path]],
                           cache: LayerCache, package_budget: int | None = None) -> BuildResult:
    """The image `options` describe for one environment: base, prefix, settings, labels, app files.
    Shared by `pixibuild image` and the doit image node, so both build the same bytes. With
    `package_budget`, packages are grouped into exactly that many layers at most (what the layer
    nodes planned), whatever the base image turns out to hold."""
    from pixibuild.oci.base import load_base

    workdir = options.workdir or "/app"
    base = load_base(options.base, subdir, cache)
    created = created_timestamp()
    labels = {**standard_labels(title=name, created=created), **options.labels}
    settings = ImageSettings(env=options.env, entrypoint=options.entrypoint, cmd=options.cmd, working_dir=workdir,
                             exposed_ports=options.expose, labels=labels, user=options.user)
    apps = app_files(project_root, options.include, workdir)
    if package_budget is None:
        max_layers = options.max_layers or DEFAULT_MAX_LAYERS
    else:
        max_layers = package_budget + len(base.layers) + 1 + (1 if apps else 0)
    return build_image(list(packages), platform=subdir, target_prefix=image_prefix(options, env), cache=cache,
                       base=base, settings=settings, wheels=list(wheels), app_files=apps, max_layers=max_layers,
                       created=created)


def image_tag(options: ImageOptions, name: str, env: str) -> str:
    return options.tag or f"{name.lower()}:{env}"


def _project_dir(target_prefix: str) -> str:
    """/app for /app/.pixi/envs/<env> (where pixi puts envs relative to the project), else /."""
    parts = PurePosixPath(target_prefix).parts
    if len(parts) >= 4 and parts[-3:-1] == (".pixi", "envs"):
        return str(PurePosixPath(*parts[:-3]))
    return "/"


def _history(spec: LayerSpec):
    from pixibuild.oci.config import HistoryEntry

    return HistoryEntry(created_by=spec.created_by, comment=spec.comment)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _with_environment(settings: ImageSettings, activation: dict[str, str], target_prefix: str) -> ImageSettings:
    """Image Env = the activated environment (PATH = prefix entries + base PATH, CONDA_PREFIX,
    env_vars.d values) + user env; defaults: Entrypoint /entrypoint.sh, WorkingDir /app."""
    env = dict(activation)
    env.update(settings.env)
    return ImageSettings(env=env, entrypoint=settings.entrypoint if settings.entrypoint is not None else [ENTRYPOINT_PATH],
                         cmd=settings.cmd, working_dir=settings.working_dir or _project_dir(target_prefix),
                         exposed_ports=settings.exposed_ports, labels=settings.labels, user=settings.user)


__all__ = ["BuildResult", "build_image", "build_package_layer", "package_layer_specs", "standard_labels"]
