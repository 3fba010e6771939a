"""The whole graph of a workspace: every project's targets, composed from the per-kind rules."""

from __future__ import annotations

from typing import Sequence

from pixibuild.conda.platforms import current_subdir
from pixibuild.graph.plan import BuildGraph, Workspace
from pixibuild.graph.shard import Shard, select, target_id
from pixibuild.store.session import FetchSession

from . import lock, pack, unpack

DEFAULT_KINDS = ("pack",)
OUTPUT_KINDS = ("pack", "unpack", "image")


def _outputs(project, kinds: Sequence[str] | None, platform: str, host: str) -> list[str]:
    wanted = kinds if kinds is not None else project.settings.get("outputs", DEFAULT_KINDS)
    return [k for k in OUTPUT_KINDS if k in wanted and (k != "unpack" or platform == host)
            and (k != "image" or platform.startswith("linux-"))]


def build_graph(ws: Workspace, kinds: Sequence[str] | None = None, shard: Shard | None = None) -> BuildGraph:
    """Nodes for `kinds` (pack, unpack, image) of every target the manifests ask for; by default
    each project's `[tool.pixibuild] outputs` (else packs only). Unpack targets exist only for this
    machine's platform: an installed environment is for running here. With `shard`, only the targets
    of that shard (`pixibuild.graph.shard`) and what they need."""
    graph = BuildGraph()
    host = current_subdir()
    targets = [(label, project, env, platform, _outputs(project, kinds, platform, host))
               for label, project in sorted(ws.projects.items()) for env, platform in project.targets()]
    if shard is not None:
        weights = {target_id(label, env, platform): len(outputs) * _package_bytes(project.target(env, platform))
                   for label, project, env, platform, outputs in targets if outputs}
        chosen = select(weights, shard)
        targets = [t for t in targets if target_id(t[0], t[2], t[3]) in chosen]
    sessions: dict[str, tuple[FetchSession, str]] = {}
    for label, project, env, platform, outputs in targets:
        if label not in sessions:  # one connection pool for the project's fetch nodes
            sessions[label] = (FetchSession(ws.store_root, project.root, remote=ws.remote, net_options=ws.net_options),
                               lock.declare(graph, ws, label, project))
        session, lock_node = sessions[label]
        target = project.target(env, platform)
        if "pack" in outputs:
            pack.declare(graph, ws, label, project, target, session, deps=(lock_node,))
        if "unpack" in outputs:
            unpack.declare(graph, ws, label, project, target, session, deps=(lock_node,))
        if "image" in outputs:
            # imported only for workspaces that build images: the image planner pulls in
            # networkx and the installer (~200 ms, python -X importtime)
            from . import image

            image.declare(graph, ws, label, project, target, session, deps=(lock_node,))
    return graph


def _package_bytes(target) -> int:
    return sum(getattr(r, "size", None) or 0 for r in [*target.conda, *target.pypi])
