"""The whole graph of a workspace: every project's targets, composed from the per-kind rules."""

from __future__ import annotations

from typing import Sequence

from pixibuild.graph.plan import BuildGraph, Workspace

from pixibuild.conda.platforms import current_subdir

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
        lock_node = lock.declare(graph, ws, label, project)
        for env, platform in project.targets():
            target = project.target(env, platform)
            if "pack" in wanted:
                pack.declare(graph, ws, label, project, target, deps=(lock_node,))
            if "unpack" in wanted and platform == host:
                unpack.declare(graph, ws, label, project, target, deps=(lock_node,))
            if "image" in wanted and platform.startswith("linux-"):
                from . import image

                image.declare(graph, ws, label, project, target, deps=(lock_node,))
    return graph
