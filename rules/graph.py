"""The whole graph of a workspace: every project's targets, composed from the per-kind rules."""

from __future__ import annotations

from typing import Sequence

from pixibuild.plan import BuildGraph, Workspace

from . import lock, pack

DEFAULT_KINDS = ("pack",)


def build_graph(ws: Workspace, kinds: Sequence[str] = DEFAULT_KINDS) -> BuildGraph:
    """Nodes for `kinds` (pack, unpack, image) of every target the manifests ask for."""
    graph = BuildGraph()
    for label, project in sorted(ws.projects.items()):
        lock_node = lock.declare(graph, ws, label, project)
        for env, platform in project.targets():
            target = project.target(env, platform)
            if "pack" in kinds:
                pack.declare(graph, ws, label, project, target, deps=(lock_node,))
    return graph
