"""The whole graph of a workspace: every project's targets, composed from the per-kind rules."""

from __future__ import annotations

from typing import Sequence

from pixibuild.conda.platforms import current_subdir
from pixibuild.graph.plan import BuildGraph, Workspace
from pixibuild.store.session import FetchSession

from . import lock, pack, unpack

DEFAULT_KINDS = ("pack",)
OUTPUT_KINDS = ("pack", "unpack", "image")


def build_graph(ws: Workspace, kinds: Sequence[str] | None = None) -> BuildGraph:
    """Nodes for `kinds` (pack, unpack, image) of every target the manifests ask for; by default
    each project's `[tool.pixibuild] outputs` (else packs only). Unpack targets exist only for this
    machine's platform: an installed environment is for running here."""
    graph = BuildGraph()
    host = current_subdir()
    for label, project in sorted(ws.projects.items()):
        wanted = kinds if kinds is not None else project.settings.get("outputs", DEFAULT_KINDS)
        session = FetchSession(ws.store_root, project.root)  # one connection pool for the project's fetch nodes
        lock_node = lock.declare(graph, ws, label, project)
        images: dict[str, list] = {}
        for env, platform in project.targets():
            target = project.target(env, platform)
            if "pack" in wanted:
                pack.declare(graph, ws, label, project, target, session, deps=(lock_node,))
            if "unpack" in wanted and platform == host:
                unpack.declare(graph, ws, label, project, target, session, deps=(lock_node,))
            if "image" in wanted and platform.startswith("linux-"):
                # imported only for workspaces that build images: the image planner pulls in
                # networkx and the installer (~200 ms, python -X importtime)
                from . import image

                images.setdefault(env, []).append(
                    image.declare(graph, ws, label, project, target, session, deps=(lock_node,)))
        for env, declared in images.items():
            from . import image

            image.declare_index(graph, ws, label, project, env, declared)
    return graph
