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
from pixibuild.files.digest import json_digest
from pixibuild.graph import steps
from pixibuild.graph.plan import BuildGraph, Node, Workspace, content_key, target_dir, target_name
from pixibuild.inputs.project import Project, Resolved
from pixibuild.oci.base import base_layer_count
from pixibuild.oci.layer import LayerCache
from pixibuild.oci.grouping import ImageSet, WorkspaceGrouping
from pixibuild.oci.layerplan import image_set as layer_image_set
from pixibuild.oci.layerplan import plan_layers
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


def _base_fingerprint(base: str) -> list:
    path = Path(base.split(":", 1)[1] if base.startswith(("oci:", "oci-archive:", "docker-archive:")) else base)
    if path.exists():
        st = path.stat()
        return [base, st.st_size, st.st_mtime_ns]
    return [base]  # a registry reference: pin it by digest for reproducible images


def image_set(ws: Workspace, project: Project, target: Resolved) -> ImageSet | None:
    """What workspace grouping needs to know about the target's image (None when the lock gives no
    sha256s: its layers are then planned by the image node itself)."""
    if not all(fetch.blob_path(ws, r.sha256) for r in target.conda):
        return None
    options = manifest_image_options(project.manifest.tool, target.env, where=f"{project.manifest.path}: tool.pixibuild")
    lock_dir = project.lock_path.parent
    return layer_image_set(target.conda, platform=target.subdir, target_prefix=image_prefix(options, target.env),
                           max_layers=options.max_layers, base_layers=base_layer_count(options.base, target.subdir),
                           app_layer=bool(options.include), base=f"base image {options.base}",
                           wheel_layer=any(needs_build(w, lock_dir) for w in target.pypi))


def declare(graph: BuildGraph, ws: Workspace, label: str, project: Project, target: Resolved,
            session: FetchSession, deps: Sequence[str] = (), grouping: WorkspaceGrouping | None = None) -> str:
    """layer:<id> per planned package group (grouped for the whole workspace by `grouping`) — inputs:
    package sha256s, prefix, platform, python version (the layer cache key); image:… — inputs: layer
    keys, image settings, base, app files."""
    env, platform = target.env, target.platform
    where = f"{project.manifest.path}: tool.pixibuild"
    options = manifest_image_options(project.manifest.tool, env, where=where)
    prefix = image_prefix(options, env)
    cache = LayerCache(layer_cache_root(ws.store_root))
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
                           wheel_layer=bool(packages.built), grouping=grouping)
        digests = dict(zip((r.name for r in target.conda), target.conda_digests))
        for layer in plan.packages:
            name = f"layer:{hashlib.sha256(layer.spec.key.encode()).hexdigest()[:16]}"
            graph.add(Node(name=name, kind="layer", key=content_key("layer", layer.spec.key),
                           deps=tuple(dict.fromkeys(verify[r.name] for r in layer.records)),
                           present=functools.partial(_layer_present, str(cache.root), layer.spec.key),
                           doc=f"image layer: {', '.join(r.dist_name for r in layer.records)} at {prefix}",
                           action=functools.partial(steps.image_layer, layer, str(cache.root)),
                           inputs={**fetch.package_inputs(layer.records, [digests[r.name] for r in layer.records]),
                                   "prefix": prefix, "platform": subdir, "layer key": layer.spec.key},
                           where=where))
            layer_nodes.append(name)
            layer_inputs[f"layer:{','.join(r.name for r in layer.records)}"] = name.split(":", 1)[1]
    out = target_dir(ws, label, env, platform) / "image.tar"
    layer_keys = [layer.spec.key for layer in plan.packages] if plan else list(target.conda_digests)
    base = graph.watch(functools.partial(_base_fingerprint, options.base or "scratch"))
    app_files = graph.watch(functools.partial(_file_fingerprint, project.root, tuple(options.include)))
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    key = content_key("image", subdir, env, label, layer_keys, sorted(packages.wheel_digests), vars(options),
                      base, app_files, epoch, sorted(packages.built_keys))
    name = target_name(ws, "image", label, env, platform)
    graph.add(Node(name=name, kind="image", key=key, outputs=(out,),
                   deps=(*deps, *layer_nodes, *packages.verify_nodes),
                   doc=f"OCI/docker image of {label}, env {env}, {platform} → {out}",
                   action=functools.partial(steps.image, str(project.manifest.path), env, subdir, packages.conda,
                                            packages.wheels, str(ws.store_root), str(cache.root), str(out), plan,
                                            built=packages.built),
                   inputs={**packages.inputs(target), **layer_inputs, "platform": subdir,
                           "settings": json_digest(vars(options))[:16], "base": json_digest(base)[:16],
                           "app files": json_digest(app_files)[:16], "SOURCE_DATE_EPOCH": epoch,
                           "push": options.push},
                   where=where))
    return name


def _layer_present(cache_root: str, key: str) -> bool:
    cache = LayerCache(Path(cache_root))
    try:
        return cache.lookup(key) is not None and cache.kept_dir(key).is_dir()
    except (OSError, PixibuildError):
        return False
