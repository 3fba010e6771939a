"""unpack rule: the target installed into `build/…/<env>/<platform>/env` with `activate.sh`."""

from __future__ import annotations

import functools
from typing import Sequence

from pixibuild.graph import steps
from pixibuild.graph.plan import BuildGraph, Node, Workspace, content_key, target_dir, target_name
from pixibuild.inputs.project import Project, Resolved
from pixibuild.store.session import FetchSession

from . import fetch


def declare(graph: BuildGraph, ws: Workspace, label: str, project: Project, target: Resolved,
            session: FetchSession, deps: Sequence[str] = ()) -> str:
    """Inputs: record and wheel digests and the install path (files embed it); output: the env
    directory (swapped in whole) and activate.sh; action: `steps.unpack` over the verified blobs."""
    env, platform = target.env, target.platform
    out_dir = target_dir(ws, label, env, platform)
    packages = fetch.declare_target(graph, ws, project, target, session)
    key = content_key("unpack", target.subdir, list(target.conda_digests), sorted(packages.wheel_digests),
                      str(out_dir), sorted(packages.built_keys))
    name = target_name(ws, "unpack", label, env, platform)
    graph.add(Node(name=name, kind="unpack", key=key, outputs=(out_dir / "env" / "conda-meta", out_dir / "activate.sh"),
                   deps=(*deps, *packages.verify_nodes),
                   doc=f"install {label}, env {env}, {platform} into {out_dir / 'env'}",
                   action=functools.partial(steps.unpack, target.subdir, packages.conda, packages.wheels,
                                            str(ws.store_root), str(out_dir), built=packages.built, label=name),
                   inputs=fetch.deferred_inputs(functools.partial(packages.inputs, target),
                                                 {"platform": target.subdir, "prefix": str(out_dir / "env")}),
                   where=fetch.where_of(ws, project, env, platform)))
    return name
