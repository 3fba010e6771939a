"""layer and image rules: one layer node per package group (shared by every image that has the
same packages at the same prefix), then the image tar of a target."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Sequence

from pixibuild.graph import steps
from pixibuild.errors import PixibuildError
from pixibuild.oci.grouping import DEFAULT_MAX_LAYERS
from pixibuild.oci.layer import LayerCache
from pixibuild.oci.options import image_prefix, manifest_image_options
from pixibuild.graph.plan import BuildGraph, Node, Workspace, content_key, target_dir, target_name
from pixibuild.inputs.project import Project, Resolved

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


def declare(graph: BuildGraph, ws: Workspace, label: str, project: Project, target: Resolved,
            deps: Sequence[str] = ()) -> str:
    """layer:<id> per package group — inputs: package sha256s, prefix, platform, python version
    (the layer cache key); image:… — inputs: layer keys, image settings, base, app files."""
    from pixibuild.oci.build import package_layer_specs

    env, platform = target.env, target.platform
    options = manifest_image_options(project.manifest.tool, env, where=f"{project.manifest.path}: tool.pixibuild")
    prefix = image_prefix(options, env)
    max_layers = options.max_layers or DEFAULT_MAX_LAYERS
    reserve = 0 if options.base in (None, "scratch") else 20  # base layers, unknown until loaded
    budget = max_layers - reserve - 1 - (1 if options.include else 0)
    base_dir, store_root = str(project.lock_path.parent), str(ws.store_root)
    cache = LayerCache()
    packages = fetch.declare_target(graph, ws, project, target)
    wheels = packages.wheels
    verify = {r.name: node for r, node in zip(target.conda, packages.conda_verify)}
    layer_nodes: list[str] = []
    layer_keys: list[str] = []
    blobs = [fetch.blob_path(ws, r.sha256) for r in target.conda]
    if all(blobs):
        pairs = list(zip(target.conda, blobs))
        for spec, group in package_layer_specs(pairs, platform=platform, target_prefix=prefix, budget=budget):
            lid = hashlib.sha256(spec.key.encode()).hexdigest()[:16]
            name = f"layer:{lid}"
            graph.add(Node(name=name, kind="layer", key=content_key("layer", spec.key),
                           deps=tuple(dict.fromkeys(verify[r.name] for r in group)),
                           present=functools.partial(_layer_present, cache, spec.key),
                           doc=f"image layer: {', '.join(r.dist_name for r in group)} at {prefix}",
                           action=functools.partial(steps.image_layer, spec.key, list(target.conda), platform,
                                                    prefix, budget, base_dir, store_root, str(cache.root))))
            layer_nodes.append(name)
            layer_keys.append(spec.key)
    out = target_dir(ws, label, env, platform) / "image.tar"
    key = content_key("image", platform, env, label, layer_keys or list(target.conda_digests),
                      sorted(d for _, d in wheels), vars(options), _base_fingerprint(options.base or "scratch"),
                      _file_fingerprint(project.root, options.include), os.environ.get("SOURCE_DATE_EPOCH"))
    name = target_name(ws, "image", label, env, platform)
    graph.add(Node(name=name, kind="image", key=key, outputs=(out,),
                   deps=(*deps, *layer_nodes, *packages.verify_nodes),
                   doc=f"OCI/docker image of {label}, env {env}, {platform} → {out}",
                   action=functools.partial(steps.image, str(project.manifest.path), env, platform,
                                            list(target.conda), [w for w, _ in wheels], base_dir, store_root,
                                            str(cache.root), str(out), budget)))
    return name


def _layer_present(cache: LayerCache, key: str) -> bool:
    try:
        return cache.lookup(key) is not None and cache.kept_dir(key).is_dir()
    except (OSError, PixibuildError):
        return False
