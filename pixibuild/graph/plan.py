"""The build graph: every node keyed by the hash of its inputs (Nix-style), independent of doit.

Node names are the task names users type (`pack:prod:linux-64`, or `pack:<project>:prod:linux-64`
in a monorepo). Nodes that several targets share — a package's fetch and verify, a package's image
layer — are keyed by content only, so they exist once however many projects ask for them.

The graph is a networkx DiGraph (edge = "must run before"); `rules/` turns it into doit tasks.

With a remote cache (`Workspace.remote`), a node that carries a `RemoteResult` is asked local → remote →
build: `pull_node` restores its result from the cache; only when that fails does the node run (and its
`build_deps`, the inputs it needs only to build, are run first), and `run_node` then publishes what it built.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from pixibuild import __version__
from pixibuild.files.atomic import atomic_write_bytes
from pixibuild.files.digest import json_digest
from pixibuild.store import roots
from pixibuild.inputs.project import Project, discover_projects, load_project, project_labels
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.graph.summary import RUN

if TYPE_CHECKING:
    from pixibuild.graph.remote import RemoteResult
    from pixibuild.store.remote import RemoteCache

log = logging.getLogger(__name__)

GRAPH_FORMAT = 1
"""Bumped when an action's output format changes, so every key changes with it."""

def content_key(*parts: Any) -> str:
    """sha256 of the canonical JSON of `parts`, salted with our version and graph format."""
    return json_digest([__version__, GRAPH_FORMAT, *parts])


@dataclass
class Node:
    """One unit of work: `action()` turns inputs (summarised by `key`) into `outputs`."""

    name: str
    kind: str
    key: str
    action: Callable[[], Any]
    outputs: tuple[Path, ...] = ()
    deps: tuple[str, ...] = ()
    doc: str = ""
    present: Callable[[], bool] | None = None
    """Extra up-to-date predicate for outputs that live outside the build dir (store blobs)."""
    build_deps: tuple[str, ...] = ()
    """Nodes needed only to build this one here (its packages' verify nodes, an image's layers, a pack's
    index): run before it like `deps`, except when its result comes from the remote cache."""
    remote: "RemoteResult | None" = None
    """How the result is shared through the remote cache (None: never; e.g. an unpacked prefix)."""
    holds: tuple[str, ...] = ()
    """Store items (`blob:<sha256>`, `layer:<entry>`, `wheel:<key>`…) this node uses: a running build
    leases them, so `pixibuild cache prune` leaves them alone."""


@dataclass
class BuildGraph:
    """Nodes by name; edges are each node's `deps`. Kept as plain dicts so planning a no-op run
    stays cheap; `to_networkx()` gives the DAG for analysis (ordering, closures, layer grouping)."""

    _nodes: dict[str, Node] = field(default_factory=dict)

    def add(self, node: Node) -> Node:
        """Add a node; a node already present under the same name must have the same key."""
        existing = self._nodes.get(node.name)
        if existing is not None:
            if existing.key != node.key:
                raise ValueError(f"two different nodes named {node.name}")
            return existing
        self._nodes[node.name] = node
        return node

    def has(self, name: str) -> bool:
        return name in self._nodes

    def node(self, name: str) -> Node:
        return self._nodes[name]

    def nodes(self, kind: str | None = None) -> list[Node]:
        return [n for n in self._nodes.values() if kind is None or n.kind == kind]

    def to_networkx(self):
        """The dependency DAG (edge dep → node), checked for unknown deps and cycles."""
        import networkx as nx  # 125 ms to import (python -X importtime): a no-op doit run never needs it

        graph = nx.DiGraph()
        for node in self._nodes.values():
            graph.add_node(node.name)
            for dep in (*node.deps, *node.build_deps):
                if dep not in self._nodes:
                    raise ValueError(f"{node.name} depends on unknown node {dep}")
                graph.add_edge(dep, node.name)
        if not nx.is_directed_acyclic_graph(graph):
            raise ValueError(f"dependency cycle: {nx.find_cycle(graph)}")
        return graph

    def closure(self, names: Iterable[str]) -> list[str]:
        """`names` and everything they depend on, in an order that respects dependencies."""
        import networkx as nx  # see to_networkx

        graph = self.to_networkx()
        wanted: set[str] = set()
        for name in names:
            wanted.add(name)
            wanted |= nx.ancestors(graph, name)
        return [n for n in nx.topological_sort(graph) if n in wanted]


@dataclass(frozen=True)
class Workspace:
    """Where things go: the shared store, and the build dir for outputs and doit's database."""

    root: Path
    store_root: Path
    build_dir: Path
    projects: dict[str, Project]
    single: bool
    """One project: task names omit the project label."""
    remote: "RemoteCache | None" = None
    """The shared remote cache of this run (None: none)."""
    net_options: dict = field(default_factory=dict, hash=False, compare=False)
    """NetConfig.load overrides from the command line (`pixibuild build --ca-bundle/--auth-file`)."""


def default_build_dir(root: Path) -> Path:
    return Path(os.environ.get("PIXIBUILD_BUILD_DIR") or (root / "build"))


def load_workspace(root: str | Path, *, store_root: str | Path | None = None,
                   build_dir: str | Path | None = None) -> Workspace:
    """A single project (root has a manifest) or a monorepo (projects found below root)."""
    root = Path(root).resolve()
    if (root / "pixi.lock").exists():
        project_dirs = [root]
    else:
        project_dirs = discover_projects(root)
    projects = [load_project(d) for d in project_dirs]
    labels = project_labels(projects, root)
    return Workspace(root=root, store_root=roots.store_root(store_root),
                     build_dir=Path(build_dir) if build_dir else default_build_dir(root),
                     projects=labels, single=len(labels) == 1 and project_dirs == [root])


def record_id(record: CondaRecord | PypiRecord) -> str:
    """Short id of a package's bytes: its sha256 (or a hash of URL+md5 when the lock has none)."""
    if record.sha256:
        return record.sha256[:16]
    location = getattr(record, "url", None) or getattr(record, "location", "")
    return hashlib.sha256(f"{location}|{record.md5}".encode()).hexdigest()[:16]


def target_name(ws: Workspace, kind: str, label: str, env: str, platform: str) -> str:
    """`kind:env:platform` for a single project, `kind:project:env:platform` in a monorepo."""
    return f"{kind}:{env}:{platform}" if ws.single else f"{kind}:{label}:{env}:{platform}"


def target_dir(ws: Workspace, label: str, env: str, platform: str) -> Path:
    """`build/<env>/<platform>/` (single project) or `build/<project>/<env>/<platform>/`."""
    return ws.build_dir / env / platform if ws.single else ws.build_dir / label / env / platform


def stamp_path(ws: Workspace, node: Node) -> Path:
    """Where a node's key is recorded once its action succeeded (the source of truth for
    up-to-date checks: doit's own database is only a cache and may be lost in a crash)."""
    safe = hashlib.sha256(node.name.encode()).hexdigest()[:24]
    return ws.build_dir / ".stamps" / node.kind / safe


def is_up_to_date(ws: Workspace, node: Node) -> bool:
    """Outputs present, store outputs present, and the recorded key equals the current key."""
    if node.present is not None and not node.present():
        return False
    if any(not p.exists() for p in node.outputs):
        return False
    try:
        return stamp_path(ws, node).read_text() == node.key
    except OSError:
        return False


def _node_lock(ws: Workspace, node: Node):
    stamp = stamp_path(ws, node)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    return open(stamp.with_name(stamp.name + ".lock"), "a+b")


def pull_node(ws: Workspace, node: Node) -> bool:
    """Local → remote: True when the node's result is here, already or restored from the remote cache
    (then its stamp is written, so it is up to date). Never raises for a cache problem: the cache
    reports it and the node is built."""
    remote = ws.remote
    if remote is None or node.remote is None:
        return False
    with _node_lock(ws, node) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_up_to_date(ws, node):
            return True
        entry = remote.lookup(node.remote.kind, node.remote.key())
        if entry is None or not node.remote.restore(remote, entry):
            return False
        if not _outputs_present(node):
            log.warning("remote cache %s: the %s entry of %s restored nothing usable; building it", remote.name,
                        node.remote.kind, node.name)
            return False
        atomic_write_bytes(stamp_path(ws, node), node.key.encode(), fsync=False)
    RUN.record(node.name, node.kind, "remote")
    return True


def _outputs_present(node: Node) -> bool:
    return (node.present is None or node.present()) and all(p.exists() for p in node.outputs)


def run_node(ws: Workspace, node: Node) -> None:
    """Run the action under a per-node lock, then record its key (atomically); with a read-write remote
    cache, publish the result the node built.

    Two builds sharing a build dir (two `doit` runs, or `-n` across workspaces) serialise on the
    node: the second one waits, finds the first one's stamp and outputs, and does nothing. A crash
    between action and stamp only means a rerun. An action may return "remote" to say its result came
    from the remote cache, or "local" that it was already here (a fetch node whose package the cache or
    the store had): it is counted as such.
    """
    stamp = stamp_path(ws, node)
    with _node_lock(ws, node) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_up_to_date(ws, node):
            RUN.record(node.name, node.kind, "local")
            return
        outcome = node.action()
        atomic_write_bytes(stamp, node.key.encode(), fsync=False)
    hit = outcome if isinstance(outcome, str) and outcome in ("remote", "local") else None
    RUN.record(node.name, node.kind, hit or "built")
    if ws.remote is not None and node.remote is not None and ws.remote.writable and hit is None:
        try:
            node.remote.publish(ws.remote)
        except OSError as exc:  # an output changed under our feet: the cache simply does not get it
            log.warning("remote cache %s: cannot publish %s: %s", ws.remote.name, node.name, exc)
