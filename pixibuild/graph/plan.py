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
import functools
import hashlib
import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from pixibuild import __version__
from pixibuild.errors import BuildError, PixibuildError
from pixibuild.files.digest import json_digest
from pixibuild.graph.plancache import Check, PlanCache, ProjectEntry, file_identity, is_racy
from pixibuild.graph.stamps import Stamps
from pixibuild.inputs.discover import MANIFEST_NAMES, discover_projects, label_projects
from pixibuild.store import roots

from pixibuild.graph.summary import RUN

if TYPE_CHECKING:
    from pixibuild.conda.records import CondaRecord, PypiRecord
    from pixibuild.graph.remote import RemoteResult
    from pixibuild.inputs.project import Project
    from pixibuild.store.remote import RemoteCache

log = logging.getLogger(__name__)

# The lock and manifest readers (inputs.project, inputs.manifest: ~80 ms to import, python -X importtime)
# are imported where a project is actually loaded: a run planned from the plan cache never needs them.

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
    action: Callable[[], Any] | None
    outputs: tuple[Path, ...] = ()
    deps: tuple[str, ...] = ()
    doc: str = ""
    present: Callable[[], bool] | None = None
    """Extra up-to-date predicate for outputs that live outside the build dir (store blobs)."""
    inputs: dict[str, Any] | Callable[[], dict[str, Any]] | None = None
    """What the key is made of, by name (`conda:numpy` → its file and hashes, `settings`, `base`…): a
    small JSON kept with the stamp, so a later `pixibuild plan` can say which inputs changed. A
    function giving it where it is large (an output node's packages): only a run or a plan reads it
    (`input_values`), and a cold monorepo declares ~25,000 of them just to list them."""
    where: str = ""
    """Where the inputs come from, for explanations: `apps/api/pixi.lock, env prod, linux-64`."""
    keep_inputs: bool = True
    """Write `inputs` beside the stamp after a run (not for nodes keyed by the content they fetch)."""
    broken: str = ""
    """The one-line error of a project that cannot be planned: the node's action fails with it."""
    load: Callable[[], "Node"] | None = None
    """Set on nodes declared from the plan cache (no action, no inputs): gives the full node,
    declaring its project again (rules/graph.py)."""
    build_deps: tuple[str, ...] = ()
    """Nodes needed only to build this one here (its packages' verify nodes, an image's layers, a pack's
    index): run before it like `deps`, except when its result comes from the remote cache."""
    remote: "RemoteResult | None" = None
    """How the result is shared through the remote cache (None: never; e.g. an unpacked prefix). On a
    node from the plan cache, `REMOTE_DEFERRED`: `full()` has the real one."""
    holds: tuple[str, ...] = ()
    """Store items (`blob:<sha256>`, `layer:<entry>`, `wheel:<key>`…) this node uses: a running build
    leases them, so `pixibuild cache prune` leaves them alone."""

    @property
    def all_deps(self) -> tuple[str, ...]:
        """`deps` and `build_deps`: everything that runs before the node when it is built here."""
        return (*self.deps, *self.build_deps) if self.build_deps else self.deps

    def input_values(self) -> dict[str, Any] | None:
        """`inputs`, computed now when it was declared as a function."""
        inputs = self.inputs
        return inputs() if callable(inputs) else inputs

    def full(self) -> "Node":
        """The node with its action and inputs (declaring its project again when it came from the
        plan cache); a BuildError when the project no longer declares it with the same key (its
        files changed since the graph was loaded)."""
        if self.load is None:
            return self
        node = self.load()
        if node.key != self.key:
            raise BuildError(f"{self.name}: its inputs changed while the build was running; run it again")
        return node

    def spec(self) -> tuple:
        """The node without action and inputs, as the plan cache keeps it (one tuple per node, so a
        node several projects share is pickled once)."""
        spec = self.__dict__.get("_spec")
        if spec is None:
            # names are interned: a dep is then the same object as the name it refers to, which pickle
            # writes once (a monorepo's plan has ~4 dep references per node)
            intern = sys.intern
            spec = self.__dict__["_spec"] = (
                intern(self.name), intern(self.kind), self.key, tuple(str(p) for p in self.outputs),
                tuple(map(intern, self.deps)), self.doc, _plain_call(self.present), intern(self.where),
                self.broken, tuple(map(intern, self.build_deps)), self.remote is not None, self.holds)
        return spec

    @classmethod
    def from_spec(cls, spec: tuple, load: Callable[[], "Node"]) -> "Node":
        name, kind, key, outputs, deps, doc, present, where, broken, build_deps, remote, holds = spec
        if present.__class__ is tuple:
            present = functools.partial(_function(present[0], present[1]), *present[2])
        # positional, in field order (keywords cost a fifth of a monorepo's 29,000 calls)
        return cls(name, kind, key, None, tuple(map(Path, outputs)) if outputs else (), deps, doc, present, None,
                   where, True, broken, load, build_deps, REMOTE_DEFERRED if remote else None, holds)


class _Deferred:
    """Stands for the RemoteResult of a node declared from the plan cache (its `full()` has it)."""

    kind = "deferred"


REMOTE_DEFERRED: Any = _Deferred()


def _plain_call(call: Callable[[], Any] | None) -> Any:
    """`functools.partial(f, *args)` as plain data (module, qualname, args): unpickling 28,000 partial
    objects took 0.3 s of a large monorepo's plan cache load, plain tuples 0.03 s."""
    if isinstance(call, functools.partial) and not call.keywords and \
            all(isinstance(a, (str, int, bool, type(None))) for a in call.args):
        module, qualname = getattr(call.func, "__module__", None), getattr(call.func, "__qualname__", "")
        if module and "<" not in qualname and _function(module, qualname) is call.func:
            return (sys.intern(module), sys.intern(qualname), call.args)
    return call


@functools.lru_cache(maxsize=None)
def _function(module: str, qualname: str) -> Callable[..., Any]:
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


@dataclass
class BuildGraph:
    """Nodes by name; edges are each node's `deps`. Kept as plain dicts so planning a no-op run
    stays cheap; `to_networkx()` gives the DAG for analysis (ordering, closures, layer grouping)."""

    _nodes: dict[str, Node] = field(default_factory=dict)
    shared: dict[str, Node] = field(default_factory=dict)
    """Nodes keyed by content (a package's fetch/verify) made while declaring earlier projects: each
    project's own graph holds every node it needs, and reuses these instead of deriving them again."""
    checks: list = field(default_factory=list)
    """Volatile inputs read while declaring (graph/plancache.Check): the plan cache re-reads them."""
    cacheable: bool = True
    """False when a key hashes files the plan cache cannot watch cheaply (PyPI source trees)."""

    def add(self, node: Node) -> Node:
        """Add a node; a node already present under the same name must have the same key."""
        existing = self._nodes.get(node.name)
        if existing is not None:
            if existing.key != node.key:
                raise ValueError(f"two different nodes named {node.name}")
            return existing
        self._nodes[node.name] = node
        return node

    def add_specs(self, specs: Iterable[tuple], load: Callable[[str], "Node"]) -> None:
        """Nodes from plan-cache specs, `load(name)` giving each its full node; a node already present
        is kept (a shared node belongs to the first project that has it). One loop here, not
        `has` + `add` per node: a monorepo's plan has ~45,000 specs."""
        nodes, from_spec, partial = self._nodes, Node.from_spec, functools.partial
        for spec in specs:
            name = spec[0]
            if name not in nodes:
                nodes[name] = from_spec(spec, partial(load, name))

    def watch(self, read: Callable[[], Any]) -> Any:
        """`read()`, registered as a volatile input of the project being declared: the plan cache
        calls it again to tell whether the project's cached plan still holds (graph/plancache.py)."""
        for check in self.checks:  # the same read for another target of the project: registered once
            if check.same_read(read):
                return check.value
        check = Check.of(read)
        self.checks.append(check)
        return check.value

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


class Projects(Mapping[str, "Project"]):
    """The workspace's projects by label, each loaded (manifest + lock) on first access: planning from
    the plan cache never loads a project whose plan did not change. A project that cannot be loaded
    raises its one-line error on every access (the caller decides: a broken project, not a stop)."""

    def __init__(self, dirs: dict[str, Path], store_root: Path, *, write_cache: bool = True):
        self.dirs = dirs
        self._store_root = store_root
        self._write_cache = write_cache
        self._loaded: dict[str, Project | PixibuildError] = {}
        self._lock = threading.Lock()

    def __getitem__(self, label: str) -> Project:
        with self._lock:
            found = self._loaded.get(label)
            if found is None:
                from pixibuild.inputs.project import load_project

                try:
                    found = load_project(self.dirs[label], store_root=self._store_root,
                                         write_cache=self._write_cache)
                except PixibuildError as exc:
                    found = exc
                self._loaded[label] = found
        if isinstance(found, PixibuildError):
            raise found
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self.dirs)

    def __len__(self) -> int:
        return len(self.dirs)

    def forget(self, label: str) -> None:
        """Drop a loaded project (its records), e.g. once its nodes are declared."""
        with self._lock:
            self._loaded.pop(label, None)


@dataclass(frozen=True)
class Workspace:
    """Where things go: the shared store, and the build dir for outputs and doit's database."""

    root: Path
    store_root: Path
    build_dir: Path
    projects: Projects
    single: bool
    """One project: task names omit the project label."""
    plan_cache: PlanCache | None = field(default=None, compare=False, repr=False)
    """Cached plans and manifest names (None: plan every project from its files)."""
    remote: "RemoteCache | None" = field(default=None, compare=False, repr=False)
    """The shared remote cache of this run (None: none)."""
    net_options: dict = field(default_factory=dict, hash=False, compare=False)
    """NetConfig.load overrides from the command line (`pixibuild build --ca-bundle/--auth-file`)."""
    stamps: Stamps = field(init=False, compare=False, repr=False)
    _lease: list = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stamps", Stamps(self.build_dir))
        object.__setattr__(self, "_lease", [None, threading.Lock()])

    @property
    def project_dirs(self) -> dict[str, Path]:
        return self.projects.dirs

    def lease_on_first_use(self, items: Callable[[], Iterable[str]]) -> None:
        """Lease `items()` (the store items every node of the run may use) in the store, once, when the
        run first looks at one of them: `pixibuild cache prune` then keeps them all. A run that only
        finds its outputs up to date (a no-op, `doit list`) never writes a lease."""
        self._lease[0] = items

    def lease_store_items(self) -> None:
        items = self._lease[0]
        if items is None:
            return
        with self._lease[1]:
            if self._lease[0] is None:
                return
            from pixibuild.store.lease import hold

            hold(self.store_root, items())
            self._lease[0] = None


def default_build_dir(root: Path) -> Path:
    return Path(os.environ.get("PIXIBUILD_BUILD_DIR") or (root / "build"))


def load_workspace(root: str | Path, *, store_root: str | Path | None = None,
                   build_dir: str | Path | None = None, use_plan_cache: bool = False,
                   readonly: bool = False) -> Workspace:
    """A single project (root has a manifest) or a monorepo (projects found below root).

    Projects are found and labelled here (labels need every manifest's name: read from the plan cache
    when the manifest did not change); their locks are loaded on first use (`ws.projects[label]`).
    A project whose manifest cannot be read is still a project (labelled by its path): its error shows
    when it is planned. `readonly`: use the caches (plan cache, lock cache) but write nothing
    (`pixibuild plan`, `pixibuild graph`)."""
    root = Path(root).resolve()
    if (root / "pixi.lock").exists():
        project_dirs = [root]
    else:
        project_dirs = discover_projects(root)
    build = Path(build_dir) if build_dir else default_build_dir(root)
    cache = PlanCache(build, readonly=readonly) if use_plan_cache else None
    names: dict[Path, str | None] = {}
    now = time.time()
    for directory in project_dirs:
        identity = project_identity(directory, now)
        entry = cache.get(directory) if cache is not None else None
        if entry is not None and entry.identity == identity and not is_racy(identity):
            names[directory] = entry.name
            continue
        from pixibuild.inputs.manifest import read_manifest

        try:
            name: str | None = read_manifest(directory).name
        except PixibuildError:
            name = None
        names[directory] = name
        if cache is not None:
            cache.put(directory, ProjectEntry(identity=identity, name=name))
    if cache is not None:
        cache.forget_except({str(d) for d in project_dirs})
    labels = label_projects(names, root)
    store = roots.store_root(store_root)
    return Workspace(root=root, store_root=store, build_dir=build,
                     projects=Projects(labels, store, write_cache=not readonly),
                     single=len(labels) == 1 and project_dirs == [root], plan_cache=cache)


def project_identity(directory: Path, now: float | None = None) -> Any:
    """file_identity of a project's manifest candidates and lock (see graph/plancache.py)."""
    return [file_identity(directory / name, now) for name in (*MANIFEST_NAMES, "pixi.lock")]


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


def is_up_to_date(ws: Workspace, node: Node) -> bool:
    """Store outputs present, outputs present, and the key recorded for the node (its stamp, the
    source of truth: doit's own database is only a cache and may be lost in a crash) equals its key.
    A node that uses store items leases the run's items first (`Workspace.lease_on_first_use`)."""
    if node.holds:
        ws.lease_store_items()
    if ws.stamps.recorded(node.kind, node.name) != node.key:
        return False
    if node.present is not None and not node.present():
        return False
    return all(p.exists() for p in node.outputs)


def _node_lock(ws: Workspace, node: Node):
    """The node's lock file (flock it): one build at a time pulls or runs a node."""
    path = ws.build_dir / ".stamps" / node.kind / (hashlib.sha256(node.name.encode()).hexdigest()[:24] + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a+b")


def pull_node(ws: Workspace, node: Node) -> bool:
    """Local → remote: True when the node's result is here, already or restored from the remote cache
    (then its stamp is written, so it is up to date). Never raises for a cache problem: the cache
    reports it and the node is built."""
    remote = ws.remote
    if remote is None or node.remote is None:
        return False
    ws.lease_store_items()
    stamps = ws.stamps.log(node.kind)
    with _node_lock(ws, node) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamps.refresh()
        if is_up_to_date(ws, node):
            return True
        node = node.full()
        if node.remote is None:
            return False
        entry = remote.lookup(node.remote.kind, node.remote.key())
        if entry is None:
            return False
        stamps.invalidate(node.name)  # restoring replaces outputs: no older key may vouch for them
        if not node.remote.restore(remote, entry):
            return False
        if not _outputs_present(node):
            log.warning("remote cache %s: the %s entry of %s restored nothing usable; building it", remote.name,
                        node.remote.kind, node.name)
            return False
        ws.stamps.write_inputs(node.kind, node.name, node.key, node.input_values(), node.where)
        stamps.record(node.name, node.key)
    RUN.record(node.name, node.kind, "remote")
    return True


def _outputs_present(node: Node) -> bool:
    return (node.present is None or node.present()) and all(p.exists() for p in node.outputs)


def run_node(ws: Workspace, node: Node) -> None:
    """Run the action under a per-node lock, then record its key (and its inputs summary); with a
    read-write remote cache, publish the result the node built.

    Two builds sharing a build dir (two `doit` runs, or `-n` across workspaces) serialise on the
    node: the second one waits, finds the first one's stamp and outputs, and does nothing. The
    node's stamp is invalidated before its action starts changing outputs, so a crash in between
    means a rerun, never outputs vouched for by an older key. An action may return "remote" to say
    its result came from the remote cache, or "local" that it was already here (a fetch node whose
    package the cache or the store had): it is counted as such.
    """
    ws.lease_store_items()
    node = node.full()
    stamps = ws.stamps.log(node.kind)
    with _node_lock(ws, node) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamps.refresh()
        if is_up_to_date(ws, node):
            RUN.record(node.name, node.kind, "local")
            return
        stamps.invalidate(node.name)
        outcome = node.action()
        ws.stamps.write_inputs(node.kind, node.name, node.key, node.input_values(), node.where)
        stamps.record(node.name, node.key)
    hit = outcome if isinstance(outcome, str) and outcome in ("remote", "local") else None
    RUN.record(node.name, node.kind, hit or "built")
    if ws.remote is not None and node.remote is not None and ws.remote.writable and hit is None:
        try:
            node.remote.publish(ws.remote)
        except OSError as exc:  # an output changed under our feet: the cache simply does not get it
            log.warning("remote cache %s: cannot publish %s: %s", ws.remote.name, node.name, exc)
