"""Packages → image: per-package (group) layers, one environment-wide layer, an optional app layer.

Each package layer is content-addressed by its packages' sha256s, the target prefix, platform,
python version (for noarch python) and LAYER_FORMAT_VERSION: it is built once with the
installer's `install_package` into a staging dir and then served from the layer cache, so a
one-package change rebuilds one layer (plus the env layer if activation changed, and the
config/manifest). Which packages share a layer is the one plan of `layerplan.py`: the doit rules
plan it when the graph is loaded and run `build_package_layer` per planned layer, then the image
node runs `build_configured_image` with the same plan; the CLI plans it after loading the base.

Layer order, base-most first: base image layers, package layers (most depended-on first), the
environment layer (`conda-meta/history`, PyPI wheels, `/entrypoint.sh`), the app layer, and the
project's own built wheels (pixibuild.pypi) in a small top layer, so a code change rebuilds only that.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Sequence

from pixibuild.install.activation import (ManifestActivation, activation_scripts, entrypoint_script,
                                          static_activation)
from pixibuild.errors import BuildError, InputError
from pixibuild.files.digest import hash_file
from pixibuild.files.verified import verifying
from pixibuild.install.conda_meta import HISTORY_PIXI_UNPACK
from pixibuild.install.noarch import PythonLayout, environment_python_version, site_packages_override
from pixibuild.install.wheels import install_wheels
from pixibuild.conda.platforms import oci_platform
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.oci.assemble import SCRATCH, BaseImage, LayerSpec, assemble_image, build_layers
from pixibuild.oci.base import load_base
from pixibuild.files.digest import canonical_json
from pixibuild.oci.config import HistoryEntry, ImageSettings, created_timestamp, standard_labels
from pixibuild.oci.clobbers import plan_image_clobbers, settle_clobbers
from pixibuild.oci.rootfs import base_facts
from pixibuild.oci.user import RunAs, build_user_layer, parse_user
from pixibuild.oci.grouping import DEFAULT_MAX_LAYERS
from pixibuild.oci.layerplan import LayerPlan, plan_layers
from pixibuild.oci.layer import Layer, LayerCache
from pixibuild.oci.layout import Image
from pixibuild.oci.options import ImageOptions, image_prefix
from pixibuild.store.blobs import blob_source

if TYPE_CHECKING:  # network settings only travel through here (see oci/base.py)
    from pixibuild.net.config import NetConfig

log = logging.getLogger(__name__)

ENTRYPOINT_PATH = "/entrypoint.sh"
DEFAULT_BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


SHELL_PATH = "bin/sh"


def _activation_file(rel: str) -> bool:
    """Files a package layer keeps beside its cache entry: what activation reads, `bin/sh` (whether
    the environment brings a shell to run the entrypoint with) and the package's conda-meta record
    (its installed paths: what two packages clobber)."""
    return (rel.startswith(("etc/conda/activate.d/", "etc/conda/env_vars.d/")) or rel == "conda-meta/state"
            or rel == SHELL_PATH or (rel.startswith("conda-meta/") and rel.endswith(".json")))


@dataclass
class BuildResult:
    image: Image
    layers_built: int
    layers_reused: int
    package_groups: list[list[str]] = field(default_factory=list)
    base: BaseImage = SCRATCH


def build_package_layer(spec: LayerSpec, cache: LayerCache) -> Layer:
    """One package layer from the cache or built now (what a doit task per layer calls); its
    activation files are kept beside the cache entry for the environment layer."""
    return cache.get_or_build(spec.key, spec.populate, mount=spec.mount, keep=_activation_file, modes=spec.modes,
                              archive_bytes=spec.archive_bytes)


def _activation_view(cache: LayerCache, specs: Sequence[LayerSpec], view: Path) -> Path:
    """A directory with the union of the package layers' activation files (layer order: upper wins)."""
    for spec in specs:
        kept = cache.kept_dir(spec.key, modes=spec.modes)
        for path in sorted(kept.rglob("*")):
            target = view / path.relative_to(kept)
            if path.is_symlink() or path.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink() or target.exists():
                    target.unlink()
                if path.is_symlink():
                    target.symlink_to(os.readlink(path))
                else:
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


def _normalize_modes(root: Path) -> None:
    """0755 for executables, 0644 for other files: files pixibuild writes itself (wheels via pypa
    installer, the entrypoint, copied scripts) would otherwise carry the umask."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o755 if path.stat().st_mode & 0o111 or path.name == "entrypoint.sh" else 0o644)


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
                jobs: int | None = None, plan: LayerPlan | None = None,
                project_wheels: Sequence[tuple[PypiRecord, Path]] = (),
                activation: ManifestActivation | None = None,
                activation_sources: Sequence[tuple[str, Path]] = (),
                run_as: RunAs | None = None, annotations: dict[str, str] | None = None) -> BuildResult:
    """The whole image for an environment; layers come from `cache` when their inputs are unchanged.

    `plan` is the package layering the doit rules planned (its layer nodes filled the cache);
    without one, the packages are planned here for `max_layers` and this base. `activation` is the
    manifest's part of the entrypoint, `activation_sources` its scripts ((path in image, file));
    `run_as` the non-root user to run as."""
    if not target_prefix.startswith("/"):
        raise InputError(f"target prefix must be absolute, got {target_prefix!r}", field="prefix")
    oci_platform(platform)  # an InputError for a subdir no image can be built for
    settings = settings or ImageSettings()
    if plan is None:
        plan = plan_layers(packages, platform=platform, target_prefix=target_prefix, max_layers=max_layers,
                           base_layers=len(base.layers), app_layer=bool(app_files), base=base.reference,
                           wheel_layer=bool(project_wheels), user_layer=run_as is not None)
    elif plan.base_layers != len(base.layers):
        raise BuildError(f"base image {base.reference} has {len(base.layers)} layers now, but the build was "
                         f"planned for {plan.base_layers}: it changed since planning; run the build again")
    created = created or created_timestamp()
    cache.root.mkdir(parents=True, exist_ok=True)
    # store blobs are named by hash: the installers take formats and wheel names from the records
    return _build_image(packages, platform=platform, target_prefix=target_prefix, cache=cache, base=base,
                        settings=settings, wheels=wheels, app_files=app_files, plan=plan, created=created,
                        jobs=jobs, project_wheels=project_wheels, activation=activation, activation_sources=tuple(activation_sources),
                        run_as=run_as, annotations=annotations)


_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


def _warn_once(message: str) -> None:
    """One warning per distinct message and process: a doit run that builds four images of one
    environment says it once."""
    with _WARNED_LOCK:
        if message in _WARNED:
            return
        _WARNED.add(message)
    log.warning("%s", message)


def _runner(base_has_shell: bool, env_has_shell: bool, target_prefix: str) -> list[str] | None:
    """How /entrypoint.sh is started: by the base's /bin/sh, else by the environment's own shell,
    else not at all (no shell in the image)."""
    if base_has_shell:
        return [ENTRYPOINT_PATH]
    if env_has_shell:
        return [f"{target_prefix.rstrip('/')}/{SHELL_PATH}", ENTRYPOINT_PATH]
    return None


def _build_image(packages: Sequence[tuple[CondaRecord, Path]], *, platform: str, target_prefix: str,
                 cache: LayerCache, base: BaseImage, settings: ImageSettings,
                 wheels: Sequence[tuple[PypiRecord, Path]], app_files: Sequence[tuple[str, Path]], plan: LayerPlan,
                 created: str, jobs: int | None, project_wheels: Sequence[tuple[PypiRecord, Path]],
                 activation: ManifestActivation | None, activation_sources: tuple[tuple[str, Path], ...],
                 run_as: RunAs | None, annotations: dict[str, str] | None) -> BuildResult:
    hits, misses = cache.hits, cache.misses
    specs = [layer.spec for layer in plan.packages]
    # Layers are independent: build them in parallel (zlib, zstd and sha256 release the GIL), the
    # largest first, so a big layer started last does not leave the other cores idle at the end.
    with ThreadPoolExecutor(max_workers=max(1, jobs or os.cpu_count() or 1)) as pool:
        largest_first = sorted(range(len(specs)), key=lambda i: -(specs[i].archive_bytes or 0))
        futures = {i: pool.submit(build_package_layer, specs[i], cache) for i in largest_first}
        try:
            built = [futures[i].result() for i in range(len(specs))]
        except BaseException:
            for future in futures.values():  # a failed layer fails the image: start no more
                future.cancel()
            raise
    layers = [(layer, _history(spec)) for layer, spec in zip(built, specs)]
    facts = base_facts(tuple(base.layers), cache.root)

    # Environment layer: activation needs the union of the packages' activation files.
    base_env = dict(item.partition("=")[::2] for item in ((base.config or {}).get("config") or {}).get("Env") or [])
    base_env.setdefault("PATH", DEFAULT_BASE_PATH)
    with tempfile.TemporaryDirectory(prefix="pixibuild-activation-", dir=cache.root) as tmp:
        view = _activation_view(cache, specs, Path(tmp) / "prefix")
        view.mkdir(parents=True, exist_ok=True)
        env_has_shell = (view / SHELL_PATH).is_symlink() or (view / SHELL_PATH).exists()
        runner = _runner(facts.has_shell, env_has_shell, target_prefix)
        script = entrypoint_script(view, target_prefix, manifest=activation)
        package_scripts = activation_scripts(view, target_prefix, "bash")
        static = static_activation(view, target_prefix, platform, base_env=base_env, manifest=activation,
                                   scripts_run=runner is not None)
        clobbers = plan_image_clobbers([r for r, _ in packages], view / "conda-meta")
    if runner is None:
        # named without the prefix, so the images of several environments warn once together
        cannot = [s[len(target_prefix.rstrip("/")) + 1:] for s in package_scripts]
        cannot += [dest for dest, _ in activation_sources]
        if cannot or static.unresolved:
            what = (f"activation scripts cannot run ({', '.join(cannot)})" if cannot else "") + \
                ("; " if cannot and static.unresolved else "") + \
                (f"{', '.join(static.unresolved)} need a shell to expand" if static.unresolved else "")
            _warn_once(f"{platform} image: no /bin/sh in the base image or the environment: {what}. The image runs its command "
                       f"directly, with the activation's variables in its config (use a base with a shell, "
                       f"e.g. --base oci:DIR, or add a shell package to run them)")
    records = [r for r, _ in packages]
    python_version, site_packages = environment_python_version(records), site_packages_override(records)
    env_key = canonical_json({"kind": "environment", "prefix": target_prefix, "platform": platform,
                              "entrypoint": script if runner is not None else None,
                              "python": python_version, "site": site_packages,
                              "scripts": [(dest, _tree_digest([(dest, src)])) for dest, src in activation_sources],
                              "clobbers": [clobbers.aside, clobbers.clobbered, clobbers.roots, sorted(
                                  r.sha256 or r.md5 or r.url for r, _ in packages if r.name in clobbers.involved)],
                              "wheels": sorted(f"{w.name}={w.sha256 or hash_file(p).sha256.hexdigest()}" for w, p in wheels)}).decode()
    mount = target_prefix.strip("/")

    def populate_env(staging: Path) -> None:
        prefix_dir = staging / mount
        (prefix_dir / "conda-meta").mkdir(parents=True)
        (prefix_dir / "conda-meta" / "history").write_bytes(HISTORY_PIXI_UNPACK)  # what pixi and unpack write
        layout = PythonLayout(python_version, platform, site_packages) if python_version else None
        if wheels:
            if layout is None:
                raise InputError("PyPI wheels need a python package in the environment")
            sources = [(w, blob_source(p, w.file_name)) for w, p in wheels]  # store blobs: checked as read
            with verifying(source for _, source in sources):
                install_wheels(sources, prefix_dir, target_prefix, layout)
        if runner is not None:
            entry = staging / ENTRYPOINT_PATH.lstrip("/")
            entry.write_text(script)
            for dest, source in activation_sources:
                _copy_into(staging, dest, source)
        _normalize_modes(staging)  # what we wrote here: the same bytes whatever the umask
        if clobbers:
            with tempfile.TemporaryDirectory(prefix="clobbers-", dir=cache.root) as scratch:
                settle_clobbers(clobbers, packages, prefix_dir, Path(scratch), target_prefix=target_prefix,
                                platform=platform, python=layout)

    what = "conda-meta/history, wheels" + (", entrypoint" if runner is not None else "") + \
        (", activation scripts" if activation_sources and runner is not None else "")
    if clobbers:
        what += f", {len(clobbers.clobbered)} clobbered paths settled"
    [env_layer] = build_layers([LayerSpec(env_key, populate_env, created_by=f"pixibuild environment: {what}",
                                          modes="keep")], cache)
    layers.append(env_layer)

    if app_files:
        app_key = f"app\0{_tree_digest(app_files)}"
        layers += build_layers([LayerSpec(app_key, lambda d: [_copy_into(d, dst, src) for dst, src in app_files],
                                          created_by="pixibuild app files: " + ", ".join(d for d, _ in app_files))],
                               cache)

    if project_wheels:
        layers += build_layers([_project_wheel_layer(project_wheels, target_prefix, platform, python_version,
                                                     site_packages)], cache)

    env = dict(static.env)
    workdir = settings.working_dir or _project_dir(target_prefix)
    if run_as is not None:
        user_layer, home = build_user_layer(run_as, workdir=workdir, facts=facts, cache=cache)
        layers.append((user_layer, HistoryEntry(created_by=f"pixibuild user {run_as.config_user}: {workdir} and "
                                                           f"{home} writable")))
        env.setdefault("HOME", home)
    settings = _with_environment(settings, env, target_prefix, runner, run_as)
    image = assemble_image(platform=platform, layers=layers, settings=settings, base=base, created=created,
                           annotations=annotations)
    return BuildResult(image, layers_built=cache.misses - misses, layers_reused=cache.hits - hits,
                       package_groups=[[r.dist_name for r in layer.records] for layer in plan.packages],
                       base=base)


def _project_wheel_layer(wheels: Sequence[tuple[PypiRecord, Path]], target_prefix: str, platform: str,
                         python_version: str | None, site_packages: str | None) -> LayerSpec:
    """The project's own wheels (built from its sources), installed non-editable in one top layer:
    keyed by their hashes, so editing the code rebuilds (and pushes) this layer alone."""
    if python_version is None:
        raise InputError("PyPI wheels need a python package in the environment")
    mount = target_prefix.strip("/")
    key = canonical_json({"kind": "project-wheels", "prefix": target_prefix, "platform": platform,
                          "python": python_version, "site": site_packages,
                          "wheels": sorted(f"{w.file_name}={w.sha256 or hash_file(p).sha256.hexdigest()}"
                                           for w, p in wheels)}).decode()

    def populate(staging: Path) -> None:
        sources = [(w, blob_source(p, w.file_name)) for w, p in wheels]  # store blobs: checked as read
        with verifying(source for _, source in sources):
            install_wheels(sources, staging / mount, target_prefix, PythonLayout(python_version, platform, site_packages))
        _normalize_modes(staging)  # the same bytes whatever the umask

    names = ", ".join(sorted(f"{w.name} {w.version}" for w, _ in wheels))
    return LayerSpec(key, populate, created_by=f"pixibuild project wheels: {names}", modes="keep")


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


@dataclass(frozen=True)
class ProjectFacts:
    """What an image needs from its project that oci/ does not read itself (the manifest and git
    live in inputs/): see `pixibuild.graph.imageinputs.project_facts`."""

    name: str
    root: Path
    activation: ManifestActivation | None = None
    activation_sources: tuple[tuple[str, Path], ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    """The project's standard annotations: version, and source/revision of a clean git checkout."""


def image_project_dir(options: ImageOptions) -> str:
    """Where the project lives in the image (pixi's layout: the working directory, default /app)."""
    return options.workdir or "/app"


def image_annotations(options: ImageOptions, project: ProjectFacts, created: str) -> tuple[dict, dict]:
    """(config labels, manifest annotations): the standard `org.opencontainers.image.*` values in
    both, a user's label of a standard key overriding it in both, `annotations` only in the manifest."""
    standard = {**standard_labels(title=project.name, created=created), **project.annotations}
    labels = {**standard, **options.labels}
    annotations = {k: labels[k] for k in standard}
    annotations.update(options.annotations)
    return labels, annotations


def build_configured_image(options: ImageOptions, *, project: ProjectFacts, env: str, subdir: str,
                           packages: Sequence[tuple[CondaRecord, Path]], wheels: Sequence[tuple[PypiRecord, Path]],
                           cache: LayerCache, plan: LayerPlan | None = None,
                           net: NetConfig | None = None,
                           project_wheels: Sequence[tuple[PypiRecord, Path]] = ()) -> BuildResult:
    """The image `options` describe for one environment: base, prefix, settings, labels, app files.
    Shared by `pixibuild image` and the doit image node, so both build the same bytes; the doit
    node passes the layer `plan` its layer nodes were built from. `net` is how a registry base image is
    reached (CA bundle, auth file; default: pixi's config files). `project_wheels` (built from the
    project's PyPI sources) go in their own top layer."""
    workdir = image_project_dir(options)
    base = load_base(options.base, subdir, cache, net=net)
    created = created_timestamp()
    labels, annotations = image_annotations(options, project, created)
    settings = ImageSettings(env=options.env, entrypoint=options.entrypoint, cmd=options.cmd, working_dir=workdir,
                             exposed_ports=options.expose, labels=labels, user=options.user)
    apps = app_files(project.root, options.include, workdir)
    return build_image(list(packages), platform=subdir, target_prefix=image_prefix(options, env), cache=cache,
                       base=base, settings=settings, wheels=list(wheels), app_files=apps,
                       max_layers=options.max_layers or DEFAULT_MAX_LAYERS, created=created, plan=plan,
                       project_wheels=list(project_wheels), activation=project.activation,
                       activation_sources=project.activation_sources,
                       run_as=parse_user(options.user) if options.user else None, annotations=annotations)


def image_tag(options: ImageOptions, name: str, env: str) -> str:
    return options.tag or f"{name.lower()}:{env}"


def _project_dir(target_prefix: str) -> str:
    """/app for /app/.pixi/envs/<env> (where pixi puts envs relative to the project), else /."""
    parts = PurePosixPath(target_prefix).parts
    if len(parts) >= 4 and parts[-3:-1] == (".pixi", "envs"):
        return str(PurePosixPath(*parts[:-3]))
    return "/"


def _history(spec: LayerSpec) -> HistoryEntry:
    return HistoryEntry(created_by=spec.created_by, comment=spec.comment)


def _with_environment(settings: ImageSettings, activation: dict[str, str], target_prefix: str,
                      runner: list[str] | None, run_as: "RunAs | None") -> ImageSettings:
    """Image Env = the activated environment (PATH = prefix entries + base PATH, CONDA_PREFIX,
    package and manifest variables with plain values) + user env; defaults: Entrypoint the runner of
    /entrypoint.sh (none without a shell: Cmd is exec'd directly), WorkingDir /app."""
    env = dict(activation)
    env.update(settings.env)
    entrypoint = settings.entrypoint if settings.entrypoint is not None else runner
    return ImageSettings(env=env, entrypoint=entrypoint,
                         cmd=settings.cmd, working_dir=settings.working_dir or _project_dir(target_prefix),
                         exposed_ports=settings.exposed_ports, labels=settings.labels,
                         user=run_as.config_user if run_as is not None else settings.user)


__all__ = ["BuildResult", "build_image", "build_package_layer", "standard_labels"]
