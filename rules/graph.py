"""The whole graph of a workspace: every project's targets, composed from the per-kind rules.

Each project is declared into a graph of its own, holding every node it needs (shared ones — a
package's fetch/verify, a layer — are reused from projects declared before it, not derived again),
then merged into the workspace's graph. Two things follow:

- A project that cannot be planned (unreadable manifest, a lock that does not match it…) does not
  stop the others: it gets *broken* nodes — `lock:<project>` and its targets' nodes — whose action
  fails with the project's one-line error, and whose doc in `doit list` says BROKEN (rules/broken.py).
- With the workspace's plan cache (graph/plancache.py), a project whose fingerprint did not change is
  merged from its cached node specs without loading its lock; its full nodes are declared again
  only when one of them runs (`Planner.node`).
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Sequence

from pixibuild import __version__
from pixibuild.conda.platforms import current_subdir
from pixibuild.errors import PixibuildError
from pixibuild.files.digest import json_digest
from pixibuild.graph.plan import GRAPH_FORMAT, BuildGraph, Node, Workspace
from pixibuild.graph.plancache import ProjectEntry
from pixibuild.graph.workers import fork_each
from pixibuild.graph.shard import Shard, select, target_id
from pixibuild.oci.grouping import ImageSet, WorkspaceGrouping

# The per-kind rules (and through them the node actions: pack writer, lock reader, fetch session;
# ~70 ms to import, python -X importtime) are imported when a project is declared: a run planned
# entirely from the plan cache never declares one.

DEFAULT_KINDS = ("pack",)
OUTPUT_KINDS = ("pack", "unpack", "image")


def build_graph(ws: Workspace, kinds: Sequence[str] | None = None, shard: Shard | None = None) -> BuildGraph:
    """Nodes for `kinds` (pack, unpack, image) of every target the manifests ask for; by default
    each project's `[tool.pixibuild] outputs` (else packs only). Unpack targets exist only for this
    machine's platform: an installed environment is for running here. With `shard`, only the targets
    of that shard (`pixibuild.graph.shard`) and what they need."""
    graph = _declare_workspace(ws, kinds)
    return graph if shard is None else _shard_of(ws, graph, shard)


def _target_of(ws: Workspace, node: Node) -> tuple[str, str, str | None]:
    """(label, env, platform) of an output node; platform None for an image index (`image:<env>`)."""
    parts = node.name.split(":")[1:]
    if ws.single:
        parts = [next(iter(ws.project_dirs)), *parts]
    return parts[0], parts[1], parts[2] if len(parts) > 2 else None


def _shard_of(ws: Workspace, graph: BuildGraph, shard: Shard) -> BuildGraph:
    """The output nodes of the targets `shard` builds, and every node they need. A target weighs its
    package bytes times its outputs; an environment with an image index is one unit (its index needs
    every platform's image), so every output node is in exactly one shard."""
    outputs = [n for n in graph.nodes() if n.kind in OUTPUT_KINDS]
    targets = {n.name: _target_of(ws, n) for n in outputs}
    indexed = {(label, env) for label, env, platform in targets.values() if platform is None}
    unit_of: dict[str, str] = {}
    weights: dict[str, int] = {}
    for name, (label, env, platform) in targets.items():
        unit = target_id(label, env, "*") if (label, env) in indexed else target_id(label, env, platform or "*")
        unit_of[name] = unit
        weights[unit] = weights.get(unit, 0) + (_package_bytes(ws, label, env, platform) if platform else 0)
    chosen = select(weights, shard)
    todo = [name for name in targets if unit_of[name] in chosen]
    keep: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo.extend(graph.node(name).all_deps)
    out = BuildGraph()
    for node in graph.nodes():
        if node.name in keep:
            out.add(node)
    return out


def _package_bytes(ws: Workspace, label: str, env: str, platform: str) -> int:
    try:
        target = ws.projects[label].target(env, platform)
    except PixibuildError:
        return 0  # a broken project: its nodes fail wherever they land
    return sum(getattr(r, "size", None) or 0 for r in [*target.conda, *target.pypi])


def _declare_workspace(ws: Workspace, kinds: Sequence[str] | None) -> BuildGraph:
    """Every project's nodes.

    Without a plan cache (`ws.plan_cache is None`) every node is full (action and inputs: what
    `pixibuild plan` explains); with one, unchanged projects come from it and every node is a
    placeholder whose `full()` declares its project again."""
    planner = Planner(ws, kinds)
    graph = BuildGraph()
    cache = ws.plan_cache
    labels = sorted(ws.project_dirs)
    if cache is None:
        planner.grouping = WorkspaceGrouping.of(s for label in labels for s in planner.image_sets(label))
        for label in labels:
            for node in planner.declare(label, graph.shared).nodes():
                graph.add(node)
        return graph
    fingerprints = {label: planner.fingerprint(label) for label in labels}
    entries = {label: cache.get(ws.project_dirs[label]) for label in labels}
    stale = {label for label in labels if entries[label] is None or not entries[label].valid(fingerprints[label])}
    # layers are grouped for the whole workspace: the images of every project, changed or not
    images = {label: planner.image_sets(label) if label in stale else entries[label].images for label in labels}
    planner.grouping = WorkspaceGrouping.of(s for sets in images.values() for s in sets)
    layering = {label: {s.domain: planner.grouping.digest(s.domain) for s in sets} for label, sets in images.items()}
    stale |= {label for label in labels if label not in stale and entries[label].layering != layering[label]}
    stale_list = [label for label in labels if label in stale]
    planned = _plan_in_workers(planner, stale_list) if _worth_forking(ws, stale_list) else {}
    canonical: dict[str, tuple] = {}
    for label in stale_list:
        if label in planned:
            specs, checks, cacheable = planned[label]
            specs = [canonical.setdefault(spec[0], spec) for spec in specs]  # one tuple per shared node
        else:
            own = planner.declare(label, graph.shared)
            specs, checks, cacheable = [node.spec() for node in own.nodes()], own.checks, own.cacheable
            ws.projects.forget(label)  # its records live on in its nodes' actions only until these are dropped
        old = entries[label]
        entries[label] = ProjectEntry(identity=old.identity if old else None, name=old.name if old else None,
                                      fingerprint=fingerprints[label] if cacheable else None, specs=specs,
                                      checks=checks, images=images[label], layering=layering[label])
        cache.put(ws.project_dirs[label], entries[label])
    graph.shared.clear()
    for label in labels:
        graph.add_specs(entries[label].specs, functools.partial(planner.node, label))
    cache.save(in_background=bool(planned))  # a cold monorepo: its plan is written while doit lists
    return graph


PARALLEL_MIN_BYTES = 2 << 20
"""Plan stale projects in worker processes when their locks add up to this much (parsing dominates)."""

_FORKED_PLANNER: "Planner | None" = None
_WRITE_LOCK_CACHE = lambda: None  # noqa: E731 - set in each worker by _start_worker
_WORKER_SHARED: dict[str, Node] = {}


def _worth_forking(ws: Workspace, stale: list[str]) -> bool:
    """Several stale projects with large locks, more than one CPU, and fork (Linux): a cold monorepo."""
    if len(stale) < 2 or _cpus() < 2 or not hasattr(os, "fork"):
        return False
    total = 0
    for label in stale:
        try:
            total += (ws.project_dirs[label] / "pixi.lock").stat().st_size
        except OSError:
            pass
    return total >= PARALLEL_MIN_BYTES


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _start_worker() -> None:
    """In each worker, before its first project: lock cache entries are written once the parent has
    the plans (`workers.fork_each`'s `after`), and the nodes several projects share are declared once."""
    global _WRITE_LOCK_CACHE, _WORKER_SHARED
    from pixibuild.inputs.project import defer_lock_cache_writes

    _WRITE_LOCK_CACHE = defer_lock_cache_writes()
    _WORKER_SHARED = {}


def _plan_one(label: str) -> tuple[list[tuple], list, bool]:
    """In a worker: declare one project (its lock parsed here) and return its node specs and checks:
    only plain data crosses back to the parent."""
    planner = _FORKED_PLANNER
    assert planner is not None
    own = planner.declare(label, _WORKER_SHARED)
    planner.ws.projects.forget(label)
    return [node.spec() for node in own.nodes()], own.checks, own.cacheable


def _plan_in_workers(planner: "Planner", stale: list[str]) -> dict[str, tuple[list[tuple], list, bool]]:
    """Plan stale projects in forked worker processes (one per CPU, the largest locks taken first):
    a cold monorepo parses its locks in parallel, and this process never holds their records."""
    global _FORKED_PLANNER
    sizes = {}
    for label in stale:
        try:
            sizes[label] = (planner.ws.project_dirs[label] / "pixi.lock").stat().st_size
        except OSError:
            sizes[label] = 0
    ordered = sorted(stale, key=lambda lbl: -sizes[lbl])
    _FORKED_PLANNER = planner
    try:
        results = fork_each(_plan_one, ordered, _cpus(), start=_start_worker, after=lambda: _WRITE_LOCK_CACHE())
    finally:
        _FORKED_PLANNER = None
    # a project whose worker died (or that could not be forked) is planned here, by the caller
    return {ordered[i]: result for i, result in (results or {}).items()}


class Planner:
    """Declares one project's nodes (with actions) into a graph of its own, for `build_graph` and,
    when a node from the plan cache is about to run, for that node's project again."""

    def __init__(self, ws: Workspace, kinds: Sequence[str] | None):
        self.ws = ws
        self.kinds = tuple(kinds) if kinds is not None else None
        self.host = current_subdir()
        self.grouping: WorkspaceGrouping | None = None
        """How image layers are grouped across the workspace (decided by build_graph before any image
        is declared: every image node, now or when declared again to run, closes over the same one)."""
        self._declared: dict[str, BuildGraph] = {}
        self._shared: dict[str, Node] = {}
        self._lock = threading.Lock()

    def fingerprint(self, label: str) -> str:
        """Everything a project's declaration reads besides its manifest and lock files (whose
        identity the plan cache entry carries) and the checks its rules registered."""
        ws = self.ws
        return json_digest([__version__, GRAPH_FORMAT, label, str(ws.project_dirs[label]), ws.single, self.kinds,
                            self.host, str(ws.store_root), str(ws.build_dir), os.environ.get("SOURCE_DATE_EPOCH")])

    def declare(self, label: str, shared: dict[str, Node]) -> BuildGraph:
        """The project's nodes in a graph of their own; broken nodes when it cannot be planned."""
        graph = BuildGraph(shared=shared)
        try:
            self._declare(graph, label)
        except PixibuildError as exc:
            if self.ws.single:
                raise  # the only project: its error is the answer (one line, exit 2 from `pixibuild build`)
            from . import broken

            graph = BuildGraph(shared=shared)
            broken.declare(graph, self.ws, label, self.kinds, self.host, exc)
        return graph

    def node(self, label: str, name: str) -> Node:
        """The full node `name` of project `label` (declared again once per run, on first use)."""
        with self._lock:
            graph = self._declared.get(label)
            if graph is None:
                graph = self._declared[label] = self.declare(label, self._shared)
        if not graph.has(name):
            from pixibuild.errors import BuildError

            raise BuildError(f"{name}: {label} no longer declares it (its manifest or lock changed while the "
                             "build was running); run it again")
        return graph.node(name)

    def _wanted(self, label: str) -> Sequence[str]:
        """The kinds asked for, else the project's `[tool.pixibuild] outputs` (read from its manifest
        only: deciding whether a project has images must not load its lock)."""
        if self.kinds is not None:
            return self.kinds
        from pixibuild.inputs.manifest import read_manifest

        outputs = (read_manifest(self.ws.project_dirs[label]).tool or {}).get("outputs", DEFAULT_KINDS)
        return outputs if isinstance(outputs, (list, tuple)) else DEFAULT_KINDS

    def image_sets(self, label: str) -> list[ImageSet]:
        """The project's images as workspace grouping sees them (none when it builds no image, or
        cannot be planned: then it is broken, and has no layers to share)."""
        ws = self.ws
        try:
            if "image" not in self._wanted(label):
                return []
            from . import image  # the image rules (~70 ms to import) only for a project that has images

            project = ws.projects[label]
            out = []
            for env, platform in project.targets():
                target = project.target(env, platform)
                if target.subdir.startswith("linux-"):
                    found = image.image_set(ws, project, target)
                    if found is not None:
                        out.append(found)
            return out
        except PixibuildError:
            return []

    def _declare(self, graph: BuildGraph, label: str) -> None:
        from pixibuild.store.session import FetchSession

        from . import lock, pack, unpack

        ws = self.ws
        project = ws.projects[label]
        wanted = self.kinds if self.kinds is not None else project.settings.get("outputs", DEFAULT_KINDS)
        # one connection pool for the project's fetch nodes (store → remote cache → channel)
        session = FetchSession(ws.store_root, project.root, remote=ws.remote, net_options=ws.net_options)
        lock_node = lock.declare(graph, ws, label, project)
        images: dict[str, list] = {}
        for env, platform in project.targets():
            target = project.target(env, platform)
            if "pack" in wanted:
                pack.declare(graph, ws, label, project, target, session, deps=(lock_node,))
            if "unpack" in wanted and target.subdir == self.host:
                unpack.declare(graph, ws, label, project, target, session, deps=(lock_node,))
            if "image" in wanted and target.subdir.startswith("linux-"):
                # imported only for workspaces that build images: the image planner pulls in
                # networkx and the installer (~200 ms, python -X importtime)
                from . import image

                images.setdefault(env, []).append(
                    image.declare(graph, ws, label, project, target, session, deps=(lock_node,),
                                  grouping=self.grouping))
        for env, declared in images.items():
            from . import image

            image.declare_index(graph, ws, label, project, env, declared)
