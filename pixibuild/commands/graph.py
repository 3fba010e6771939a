"""Print the task graph: `pixibuild graph [TASK…] [-C WORKSPACE] [--format dot|mermaid|json]`.

Nodes are clustered per project (`lock:api`, `pack:api:prod:linux-64`…); the nodes projects share
by content (a package's fetch/verify, an image layer, a built wheel) sit in a `shared` cluster. With
TASKs (names or kinds), only those and everything they depend on. Graphviz: `pixibuild graph |
dot -Tsvg > graph.svg`; mermaid renders in GitHub markdown; json is networkx's node-link data.
Nothing is written.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from pixibuild.errors import InputError

COMMAND_NAME = "graph"
SHARED = "shared"
_TARGET_KINDS = frozenset({"pack", "image", "unpack", "index"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tasks", nargs="*", metavar="TASK", help="task names or kinds (default: the whole graph)")
    parser.add_argument("-C", "--directory", default=".", help="workspace root (project dir or monorepo root)")
    parser.add_argument("--format", choices=("dot", "mermaid", "json"), default="dot",
                        help="graphviz dot (default), a mermaid flowchart, or networkx node-link JSON")


def cluster_of(name: str, kind: str, single: bool, label: str) -> str:
    """The project a node belongs to (its name says so), or `shared` for content-keyed nodes."""
    if single:
        return label if kind in _TARGET_KINDS or kind == "lock" else SHARED
    parts = name.split(":")
    if kind == "lock" or (kind in _TARGET_KINDS and len(parts) >= 4):
        return parts[1]
    return SHARED


def run(args: argparse.Namespace) -> int:
    import networkx as nx

    from pixibuild.graph.explain import select
    from pixibuild.graph.plan import load_workspace
    from pixibuild.rules.graph import build_graph

    ws = load_workspace(args.directory, use_plan_cache=True, readonly=True)
    graph = build_graph(ws)
    dag = graph.to_networkx()
    if args.tasks:
        try:
            wanted = set(select(graph, args.tasks))
        except KeyError as exc:
            raise InputError(f"no task or kind named {exc.args[0]!r} (see `pixibuild build --list`)",
                             field="TASK") from None
        for name in list(wanted):
            wanted |= nx.ancestors(dag, name)
        dag = dag.subgraph(wanted).copy()
    single_label = next(iter(ws.project_dirs), "") if ws.single else ""
    for name in dag.nodes:
        node = graph.node(name)
        dag.nodes[name].update(kind=node.kind, doc=node.doc, broken=node.broken,
                               project=cluster_of(name, node.kind, ws.single, single_label))
    write = {"dot": _dot, "mermaid": _mermaid, "json": _json}[args.format]
    sys.stdout.write(write(dag))
    return 0


def _clusters(dag) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in sorted(dag.nodes):
        out.setdefault(dag.nodes[name]["project"], []).append(name)
    return dict(sorted(out.items(), key=lambda kv: (kv[0] == SHARED, kv[0])))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot(dag) -> str:
    lines = ["digraph pixibuild {", "  rankdir=LR;", "  node [shape=box, fontsize=10];"]
    for i, (cluster, names) in enumerate(_clusters(dag).items()):
        lines.append(f"  subgraph cluster_{i} {{")
        lines.append(f"    label={_quote(cluster)};")
        for name in names:
            attrs = dag.nodes[name]
            style = ', color=red, fontcolor=red' if attrs.get("broken") else ""
            lines.append(f"    {_quote(name)} [tooltip={_quote(attrs.get('doc') or '')}{style}];")
        lines.append("  }")
    for dep, node in sorted(dag.edges):
        lines.append(f"  {_quote(dep)} -> {_quote(node)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid(dag) -> str:
    ids = {name: f"n{i}" for i, name in enumerate(sorted(dag.nodes))}
    lines = ["flowchart LR"]
    for i, (cluster, names) in enumerate(_clusters(dag).items()):
        lines.append(f"  subgraph c{i}[\"{_mermaid_text(cluster)}\"]")
        for name in names:
            lines.append(f"    {ids[name]}[\"{_mermaid_text(name)}\"]")
        lines.append("  end")
    for dep, node in sorted(dag.edges):
        lines.append(f"  {ids[dep]} --> {ids[node]}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return re.sub(r'["<>]', "_", text)


def _json(dag) -> str:
    import networkx as nx

    return json.dumps(nx.node_link_data(dag), indent=2, sort_keys=True) + "\n"
