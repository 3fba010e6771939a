"""layer and image rules: one layer node per planned package group (shared by every image that has
the same packages at the same prefix), then the image tar of a target.

The layer plan is made once, here, when the graph is loaded: the layer nodes and the image node
close over the same `LayerPlan`, so they cannot disagree about which packages share a layer.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Sequence

from pixibuild.errors import PixibuildError
from pixibuild.files.digest import hash_file
from pixibuild.graph import steps
from pixibuild.graph.plan import BuildGraph, Node, Workspace, content_key, target_dir, target_name
from pixibuild.inputs.project import Project, Resolved
from pixibuild.oci.base import base_layer_count
from pixibuild.oci.layer import LayerCache
from pixibuild.oci.layerplan import plan_layers
from pixibuild.oci.remote import ImageResult, LayerResult, entry_id
from pixibuild.oci.options import image_prefix, manifest_image_options
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


def _base_fingerprint(base: str) -> list:
    path = Path(base.split(":", 1)[1] if base.startswith(("oci:", "oci-archive:", "docker-archive:")) else base)
    if path.exists():
        st = path.stat()
        return [base, st.st_size, st.st_mtime_ns]
    return [base]  # a registry reference: pin it by digest for reproducible images


def declare(graph: BuildGraph, ws: Workspace, label: str, project: Project, target: Resolved,
            session: FetchSession, deps: Sequence[str] = ()) -> str:
    """layer:<id> per planned package group — inputs: package sha256s, prefix, platform, python
    version (the layer cache key); image:… — inputs: layer keys, image settings, base, app files.
    Both are shared through the remote cache; an image found there needs neither its layers nor its packages."""
    env, platform = target.env, target.platform
    where = f"{project.manifest.path}: tool.pixibuild"
    options = manifest_image_options(project.manifest.tool, env, where=where)
    prefix = image_prefix(options, env)
    cache = LayerCache(layer_cache_root(ws.store_root))
    packages = fetch.declare_target(graph, ws, project, target, session)
    verify = {r.name: node for r, node in zip(target.conda, packages.conda_verify)}
    blobs = [fetch.blob_path(ws, r.sha256) for r in target.conda]
    plan = None
    layer_nodes: list[str] = []
    if all(blobs):  # else (a lock without sha256s) the image node plans its layers once the blobs are fetched
        plan = plan_layers(list(zip(target.conda, blobs)), platform=platform, target_prefix=prefix,
                           max_layers=options.max_layers, base_layers=base_layer_count(options.base, platform),
                           app_layer=bool(options.include), base=f"base image {options.base}",
                           wheel_layer=bool(packages.built))
        for layer in plan.packages:
            name = f"layer:{hashlib.sha256(layer.spec.key.encode()).hexdigest()[:16]}"
            graph.add(Node(name=name, kind="layer", key=content_key("layer", layer.spec.key),
                           build_deps=tuple(dict.fromkeys(verify[r.name] for r in layer.records)),
                           present=functools.partial(_layer_present, cache, layer.spec.key),
                           doc=f"image layer: {', '.join(r.dist_name for r in layer.records)} at {prefix}",
                           action=functools.partial(steps.image_layer, layer, str(cache.root)),
                           remote=LayerResult(cache, layer.spec.key), holds=(f"layer:{entry_id(cache, layer.spec.key)}",)))
            layer_nodes.append(name)
    out = target_dir(ws, label, env, platform) / "image.tar"
    layer_keys = [layer.spec.key for layer in plan.packages] if plan else list(target.conda_digests)
    def image_key(base: list, files: list) -> str:
        return content_key("image", platform, env, label, layer_keys, sorted(packages.wheel_digests), vars(options),
                           base, files, os.environ.get("SOURCE_DATE_EPOCH"), sorted(packages.built_keys))

    key = image_key(_base_fingerprint(options.base or "scratch"), _file_fingerprint(project.root, options.include))

    def remote_key() -> str:
        """The same inputs with app files and a local base by content, not mtime: another checkout has
        other mtimes but builds the same image."""
        return image_key(_base_content(options.base or "scratch"), _file_content(project.root, options.include))

    name = target_name(ws, "image", label, env, platform)
    graph.add(Node(name=name, kind="image", key=key, outputs=(out,), deps=tuple(deps),
                   build_deps=(*layer_nodes, *packages.verify_nodes),
                   remote=ImageResult(out, cache, key, remote_key=remote_key),
                   doc=f"OCI/docker image of {label}, env {env}, {platform} → {out}",
                   action=functools.partial(steps.image, str(project.manifest.path), env, platform, packages.conda,
                                            packages.wheels, str(ws.store_root), str(cache.root), str(out), plan,
                                            built=packages.built, remote=ws.remote)))
    return name


def _layer_present(cache: LayerCache, key: str) -> bool:
    try:
        return cache.lookup(key) is not None and cache.kept_dir(key).is_dir()
    except (OSError, PixibuildError):
        return False
