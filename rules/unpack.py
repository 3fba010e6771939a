"""unpack rule: the target installed into `build/…/<env>/<platform>/env` with `activate.sh`."""

from __future__ import annotations

import functools
from typing import Sequence

from pixibuild import steps
from pixibuild.plan import BuildGraph, Node, Workspace, content_key, target_dir, target_name
from pixibuild.project import Project, Resolved

from . import fetch


def declare(graph: BuildGraph, ws: Workspace, label: str, project: Project, target: Resolved,
            deps: Sequence[str] = ()) -> str:
    """Inputs: record and wheel digests and the install path (files embed it); output: the env
    directory (swapped in whole) and activate.sh; action: `steps.unpack`."""
    env, platform = target.env, target.platform
    out_dir = target_dir(ws, label, env, platform)
    wheels = [(w, d) for w, d in zip(target.pypi, target.pypi_digests) if w.is_wheel and not w.editable]
    verify = [fetch.declare(graph, ws, project, r, d) for r, d in zip(target.conda, target.conda_digests)]
    verify += [fetch.declare(graph, ws, project, w, d) for w, d in wheels]
    key = content_key("unpack", platform, list(target.conda_digests), sorted(d for _, d in wheels), str(out_dir))
    name = target_name(ws, "unpack", label, env, platform)
    graph.add(Node(name=name, kind="unpack", key=key, outputs=(out_dir / "env" / "conda-meta", out_dir / "activate.sh"),
                   deps=(*deps, *dict.fromkeys(verify)), target=(label, env, platform),
                   doc=f"install {label}, env {env}, {platform} into {out_dir / 'env'}",
                   action=functools.partial(steps.unpack, platform, list(target.conda), [w for w, _ in wheels],
                                            str(project.lock_path.parent), str(ws.store_root), str(out_dir))))
    return name
