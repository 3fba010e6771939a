"""layer and image rules: one layer node per planned package group (shared by every image that has
the same packages at the same prefix), then the image tar of a target.

The layer plan is made once, here, when the graph is loaded: the layer nodes and the image node
close over the same `LayerPlan`, so they cannot disagree about which packages share a layer.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from pixibuild.errors import InputError, PixibuildError
from pixibuild.files.digest import hash_file, json_digest
from pixibuild.inputs.git import git_state
from pixibuild.graph import steps
from pixibuild.graph.plan import BuildGraph, Node, Workspace, content_key, target_dir, target_name
from pixibuild.inputs.project import Project, Resolved
from pixibuild.oci.base import base_layer_count
from pixibuild.oci.layer import LayerCache
from pixibuild.oci.grouping import ImageSet, WorkspaceGrouping
from pixibuild.oci.layerplan import image_set as layer_image_set
from pixibuild.oci.layerplan import plan_layers
from pixibuild.oci.remote import ImageResult, LayerResult, entry_id
from pixibuild.oci.options import image_prefix, manifest_image_options
from pixibuild.pypi.sources import needs_build
from pixibuild.store.roots import layer_cache_root
from pixibuild.store.session import FetchSession

from . import fetch


def _file_fingerprint(root: Path, patterns: Sequence[str]) -> list:
    """Cheap identity of the app files and a local base image: path, size, mtime."""
    out = []
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            for p in [path, *sorted(path.rglob("*"))] if path.is_dir() else [path]:
                st = p.lstat()
                out.append((p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns, st.st_mode))
    return out


def _file_content(root: Path, patterns: Sequence[str]) -> list:
    """Identity of the app files by content: path, kind, executable bit, sha256 (or link target)."""
    out = []
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            for p in [path, *sorted(path.rglob("*"))] if path.is_dir() else [path]:
                st = p.lstat()
                what = os.readlink(p) if p.is_symlink() else hash_file(p).sha256.hexdigest() if p.is_file() else "dir"
                out.append((p.relative_to(root).as_posix(), bool(st.st_mode & 0o111), what))
    return out


def _base_content(base: str) -> list:
    path = Path(base.split(":", 1)[1] if base.startswith(("oci:", "oci-archive:", "docker-archive:")) else base)
    if path.is_file():
        return [base, hash_file(path).sha256.hexdigest()]
    if path.is_dir():
        return [base, _file_content(path, ["**/*"])]
    return [base]


def _portable(value: object, root: str) -> object:
    """`value` with every string below `root` written relative to it (`<project>/…`)."""
    if isinstance(value, str):
        return "<project>" + value[len(root):] if value == root or value.startswith(root + "/") else \
            value.replace(f":{root}/", ":<project>/")  # oci:/abs/dir:tag
    if isinstance(value, dict):
        return {k: _portable(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_portable(v, root) for v in value]
    return value


def _portable_base(base: str) -> str:
    """A local base reference without its directory (`oci:<local>:busybox`): the remote cache keys it by
    content, so two checkouts in different places share entries."""
    for prefix in ("oci:", "oci-archive:", "docker-archive:"):
        if base.startswith(prefix):
            path, _, tag = base[len(prefix):].rpartition(":") if not Path(base[len(prefix):]).exists() else \
                (base[len(prefix):], "", "")
            return f"{prefix}<local>" + (f":{tag}" if tag else "")
    return "<local>" if Path(base).exists() else base


def _base_fingerprint(base: str) -> list:
    path = Path(base.split(":", 1)[1] if base.startswith(("oci:", "oci-archive:", "docker-archive:")) else base)
    if path.exists():
        st = path.stat()
        return [base, st.st_size, st.st_mtime_ns]
    return [base]  # a registry reference: pin it by digest for reproducible images


@dataclass(frozen=True)
class PlatformImage:
    """A declared per-platform image node and what an index node over it needs."""

    name: str
    key: str
    platform: str
    inputs: tuple  # steps.ImagePlatform
    deps: tuple[str, ...]
    build_deps: tuple[str, ...]
    remote_key: Callable[[], str]
    """Its key for the remote cache (files by content, not mtime)."""


def _git_fingerprint(manifest_path: str) -> list | None:
    """The checkout's revision and origin (None when dirty or not in git): read again by the plan cache."""
    git = git_state(Path(manifest_path))
    return [git.revision, git.source] if git else None


def _project_inputs(graph: BuildGraph | None, project: Project, env: str, platform: str) -> list:
    """What an image takes from the project besides packages and image settings: the manifest's
    activation and version, its activation scripts' files, and the git checkout's state (the last
    two are volatile inputs the plan cache checks again). Without `graph`: the scripts by content
    (the remote cache's key)."""
    activation = project.manifest.activation(env, platform)
    scripts = tuple(s for s in activation.scripts if not s.startswith("/"))
    if graph is None:
        files, git = _file_content(project.root, scripts), _git_fingerprint(str(project.manifest.path))
    else:
        files = graph.watch(functools.partial(_file_fingerprint, project.root, scripts))
        git = graph.watch(functools.partial(_git_fingerprint, str(project.manifest.path)))
    return [activation.scripts, activation.env, project.manifest.version, project.manifest.name,
            project.manifest.environment_platforms(env), files, git]


def image_set(ws: Workspace, project: Project, target: Resolved) -> ImageSet | None:
    """What workspace grouping needs to know about the target's image (None when the lock gives no
    sha256s: its layers are then planned by the image node itself)."""
    if not all(fetch.blob_path(ws, r.sha256) for r in target.conda):
        return None
    options = manifest_image_options(project.manifest.tool, target.env, where=f"{project.manifest.path}: tool.pixibuild",
                                     root=project.root)
    lock_dir = project.lock_path.parent
    return layer_image_set(target.conda, platform=target.subdir, target_prefix=image_prefix(options, target.env),
                           max_layers=options.max_layers, base_layers=base_layer_count(options.base, target.subdir),
                           app_layer=bool(options.include), base=f"base image {options.base}",
                           wheel_layer=any(needs_build(w, lock_dir) for w in target.pypi),
                           user_layer=bool(options.user))


def declare(graph: BuildGraph, ws: Workspace, label: str, project: Project, target: Resolved,
            session: FetchSession, deps: Sequence[str] = (), grouping: WorkspaceGrouping | None = None) -> PlatformImage:
    """layer:<id> per planned package group (grouped for the whole workspace by `grouping`) — inputs:
    package sha256s, prefix, platform, python version (the layer cache key); image:… — inputs: layer
    keys, image settings, base, app files, the manifest's activation and version, git state. Both are
    shared through the remote cache; an image found there needs neither its layers nor its packages."""
    env, platform = target.env, target.platform
    where = f"{project.manifest.path}: tool.pixibuild"
    options = manifest_image_options(project.manifest.tool, env, where=where, root=project.root)
    prefix = image_prefix(options, env)
    cache = LayerCache(layer_cache_root(ws.store_root), compression=options.compression)
    packages = fetch.declare_target(graph, ws, project, target, session)
    verify = {r.name: node for r, node in zip(target.conda, packages.conda_verify)}
    blobs = [fetch.blob_path(ws, r.sha256) for r in target.conda]
    subdir = target.subdir
    where = fetch.where_of(ws, project, env, platform)
    plan = None
    layer_nodes: list[str] = []
    layer_inputs: dict[str, str] = {}
    if all(blobs):  # else (a lock without sha256s) the image node plans its layers once the blobs are fetched
        plan = plan_layers(list(zip(target.conda, blobs)), platform=subdir, target_prefix=prefix,
                           max_layers=options.max_layers, base_layers=base_layer_count(options.base, subdir),
                           app_layer=bool(options.include), base=f"base image {options.base}",
                           wheel_layer=bool(packages.built), user_layer=bool(options.user), grouping=grouping)
        digests = dict(zip((r.name for r in target.conda), target.conda_digests))
        for layer in plan.packages:
            name = f"layer:{hashlib.sha256((layer.spec.key + cache.compression).encode()).hexdigest()[:16]}"
            graph.add(Node(name=name, kind="layer", key=content_key("layer", layer.spec.key, cache.compression),
                           build_deps=tuple(dict.fromkeys(verify[r.name] for r in layer.records)),
                           doc=f"image layer: {', '.join(r.dist_name for r in layer.records)} at {prefix}",
                           present=functools.partial(_layer_present, str(cache.root), cache.compression,
                                                     layer.spec.key),
                           action=functools.partial(steps.image_layer, layer, str(cache.root), cache.compression, label=name),
                           inputs=fetch.deferred_inputs(
                               functools.partial(fetch.package_inputs, layer.records,
                                                 [digests[r.name] for r in layer.records]),
                               {"prefix": prefix, "platform": subdir, "layer key": layer.spec.key}),
                           where=where, remote=LayerResult(cache, layer.spec.key, modes="keep"),
                           holds=(f"layer:{entry_id(cache, layer.spec.key, 'keep')}",)))
            layer_nodes.append(name)
            layer_inputs[f"layer:{','.join(r.name for r in layer.records)}"] = name.split(":", 1)[1]
    out = target_dir(ws, label, env, platform) / "image.tar"
    layer_keys = [layer.spec.key for layer in plan.packages] if plan else list(target.conda_digests)
    base = graph.watch(functools.partial(_base_fingerprint, options.base or "scratch"))
    app_files = graph.watch(functools.partial(_file_fingerprint, project.root, tuple(options.include)))
    project_inputs = _project_inputs(graph, project, env, platform)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")

    def image_key(base: list, app_files: list, project_inputs: list) -> str:
        return content_key("image", subdir, env, label, layer_keys, sorted(packages.wheel_digests), vars(options),
                           base, app_files, project_inputs, epoch, sorted(packages.built_keys))

    key = image_key(base, app_files, project_inputs)

    def remote_key() -> str:
        """The same inputs with app files, activation scripts and a local base by content, not mtime, and
        paths below the project as relative ones: another checkout elsewhere builds the same image."""
        portable = functools.partial(_portable, root=str(project.root))
        base = options.base or "scratch"
        settings = {**vars(options), "base": _portable_base(base)}
        return content_key("image", subdir, env, label, layer_keys, sorted(packages.wheel_digests),
                           portable(settings), [_portable_base(base), *_base_content(base)[1:]],
                           _file_content(project.root, options.include), _project_inputs(None, project, env, platform),
                           epoch, sorted(packages.built_keys))

    name = target_name(ws, "image", label, env, platform)
    build_deps = (*layer_nodes, *packages.verify_nodes)
    inputs = (platform, subdir, packages.conda, packages.wheels, plan, packages.built)
    graph.add(Node(name=name, kind="image", key=key, outputs=(out,), deps=tuple(deps), build_deps=build_deps,
                   remote=ImageResult(out, cache, key, remote_key=remote_key),
                   doc=f"OCI/docker image of {label}, env {env}, {platform} → {out}",
                   action=functools.partial(steps.image, str(project.manifest.path), env, [inputs],
                                            str(ws.store_root), str(out), remote=ws.remote, label=name),
                   inputs=fetch.deferred_inputs(functools.partial(packages.inputs, target), layer_inputs, {
                       "platform": subdir, "settings": json_digest(vars(options))[:16],
                       "base": json_digest(base)[:16], "app files": json_digest(app_files)[:16],
                       "project": json_digest(project_inputs)[:16], "SOURCE_DATE_EPOCH": epoch,
                       "push": options.push}),
                   where=where))
    return PlatformImage(name, key, platform, inputs, tuple(deps), build_deps, remote_key)


def declare_index(graph: BuildGraph, ws: Workspace, label: str, project: Project, env: str,
                  images: Sequence[PlatformImage]) -> str | None:
    """image:<env> (image:<project>:<env> in a monorepo): one OCI image index over the env's
    per-platform images — `[tool.pixibuild.image] platforms` when given, else every one declared (none
    when two of them are named platforms of one subdir) —
    written to `build/[<project>/]<env>/image.tar`. Its inputs are theirs; the per-platform nodes
    are its dependencies, so the layers are built (and shared) once."""
    options = manifest_image_options(project.manifest.tool, env, where=f"{project.manifest.path}: tool.pixibuild",
                                     root=project.root)
    by_platform = {i.platform: i for i in images}
    wanted = options.platforms or sorted(by_platform)
    missing = [p for p in wanted if p not in by_platform]
    if missing:
        raise InputError(f"image platforms {', '.join(missing)} are not locked image targets of environment "
                         f"{env!r} (have: {', '.join(sorted(by_platform)) or 'none'})",
                         path=project.manifest.path, field="tool.pixibuild.image.platforms")
    chosen = [by_platform[p] for p in wanted]
    subdirs = [i.inputs[1] for i in chosen]
    if len(set(subdirs)) < len(subdirs):  # named platforms (lock v7) for one subdir: an index holds each once
        if options.platforms:
            raise InputError(f"image platforms {', '.join(wanted)} name the same conda subdir more than once "
                             f"({', '.join(subdirs)}): an image index holds one image per platform",
                             path=project.manifest.path, field="tool.pixibuild.image.platforms")
        return None
    if not chosen:
        return None
    out_dir = ws.build_dir / env if ws.single else ws.build_dir / label / env
    name = f"image:{env}" if ws.single else f"image:{label}:{env}"
    key = content_key("image-index", [i.key for i in chosen])

    def remote_key() -> str:
        return content_key("image-index", [i.remote_key() for i in chosen])

    graph.add(Node(name=name, kind="image", key=key, outputs=(out_dir / "image.tar",),
                   remote=ImageResult(out_dir / "image.tar", LayerCache(layer_cache_root(ws.store_root),
                                                                        compression=options.compression),
                                      key, remote_key=remote_key),
                   deps=tuple(dict.fromkeys(d for i in chosen for d in (i.name, *i.deps))),
                   build_deps=tuple(dict.fromkeys(d for i in chosen for d in i.build_deps)),
                   doc=f"multi-platform OCI image index of {label}, env {env} ({', '.join(wanted)}) → "
                       f"{out_dir / 'image.tar'}",
                   action=functools.partial(steps.image, str(project.manifest.path), env, [i.inputs for i in chosen],
                                            str(ws.store_root), str(out_dir / "image.tar"), remote=ws.remote,
                                            label=name),
                   inputs={f"image:{i.platform}": i.key[:16] for i in chosen},
                   where=fetch.where_of(ws, project, env)))
    return name


def _layer_present(cache_root: str, compression: str, key: str) -> bool:
    cache = LayerCache(Path(cache_root), compression=compression)
    try:
        return cache.has(key, modes="keep", keep=True)
    except (OSError, PixibuildError):
        return False
