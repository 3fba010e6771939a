"""Turn a BuildGraph into doit task creators: one `task_<kind>` per node kind, whose subtasks are
the nodes (`pack:prod:linux-64` = basename `pack`, name `prod:linux-64`), so `doit pack` builds all
packs and `doit list` shows every target with its doc.

A monorepo has tens of thousands of nodes, so what doit is handed per node is kept small:

- Output nodes (pack, image, unpack) are decided at load (our content-key stamps, one log file per
  kind: graph/stamps.py): a plain bool, and an up-to-date one is handed without its `task_dep` — it
  will not run, so its inputs need not be scheduled; doit then walks only the nodes that may run.
- Every other node (fetch, verify, index, layer…) answers "up to date?" only when doit asks, i.e.
  when an output that will run needs it: `doit list` and a no-op run never stat 28,000 blobs.
- Tasks are `PlannedTask`s: doit's Task without its constructor's validation of ~20 attributes
  (40 µs a task; ours are valid by construction).
- Python's cyclic garbage collector is paused while the tasks are made (it rescanned every live
  object over and over: a third of the load time of a large graph).

A node's `build_deps` (what it needs only to build: a pack's index and packages, an image's layers) are
doit *setup* tasks, which doit runs only when the node itself has to run. With a remote cache, a node
that can come from it and is not up to date here gets a `pull:<node>` task first (local → remote), and
is checked again after it: a machine that finds a pack in the cache never fetches the pack's packages.
"""

from __future__ import annotations

import functools
import gc
import operator
import os
import sqlite3
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Sequence

from doit.exceptions import TaskFailed
from doit.task import Task

from pixibuild.errors import PixibuildError
from pixibuild.graph.plan import BuildGraph, Node, Workspace, is_up_to_date, pull_node, run_node
from pixibuild.graph.summary import RUN

from .report import SummaryReporter, layers_compressed

KIND_DOCS = {
    "lock": "check each lock satisfies its manifest (like `pixi install --locked`)",
    "fetch": "download a package into the shared store (once per machine)",
    "verify": "re-hash a stored package against the lock",
    "index": "write channel/<subdir>/repodata.json for a target",
    "pack": "build a pixi-pack environment.tar",
    "unpack": "install a target into build/…/env (this machine's platform)",
    "layer": "build one image layer (a package at the image prefix)",
    "image": "build an OCI/Docker image tar",
    "git": "fetch a git source at its locked commit into the store",
    "buildenv": "prepare the Python that builds a PyPI source (locked env, else isolated from the index)",
    "wheel": "build a wheel from a PyPI source (local tree, sdist, git) with PEP 517",
    "pull": "restore a node's result from the remote cache (else the node builds it)",
}


def _run(ws: Workspace, node: Node) -> TaskFailed | None:
    """A node's action as a doit python-action: our errors become one-line task failures."""
    before = layers_compressed()
    try:
        run_node(ws, node)
    except PixibuildError as exc:
        return TaskFailed(f"{node.name}: {exc}")
    finally:
        _LAYERS_BY_TASK[node.name] = layers_compressed() - before
    return None


_LAYERS_BY_TASK: dict[str, int] = {}
"""Layers each task's action compressed, for a task run in another process (`doit -P process`): its
outcome and layer count travel back to the process that prints the summary (`PlannedTask.pickle_safe_dict`)."""


EAGER_KINDS = frozenset({"pack", "image", "unpack"})
"""Kinds whose up-to-date answer is decided at load (the outputs a run asks for)."""


_LATER = frozenset({"_actions", "targets", "uptodate", "creator_params", "value_savers", "file_dep", "calc_dep",
                    "values"})
"""The attributes a PlannedTask sets on first use: `doit list` never reads them (29,000 tasks: ~0.05 s)."""


class PlannedTask(Task):
    """A doit Task made from a node without `Task.__init__`: the attributes `Task(name, [action], doc=…,
    targets=…, task_dep=…, uptodate=[…], verbosity=1)` sets (tests/test_monorepo_planning.py compares
    them). What doit never changes in place is a class attribute, shared by every task (a monorepo
    makes ~30,000 of them: per-instance copies cost 0.1 s and ~20 MB); what only running reads
    (`_LATER`: the action, targets, up-to-date check…) is set on first use. `action` and `uptodate`
    may be given as `(function, *args)`: the partial is made then."""

    def __init__(self, name: str, action: Callable[[], Any] | tuple, doc: str, targets: Sequence[Any],
                 task_dep: list[str], uptodate: bool | Callable[[], bool] | tuple, subtask_of: str | None,
                 setup: list[str] | None = None):
        self.name = name
        self.doc = doc
        self.task_dep = task_dep
        self.subtask_of = subtask_of
        self.setup_tasks = setup or []
        self._later = (action, targets, uptodate)

    def __getattr__(self, attr: str) -> Any:
        """Called only for attributes not set: a `_LATER` one is set now."""
        if attr not in _LATER or "_later" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")
        self._settle()
        return self.__dict__[attr]

    def _settle(self) -> None:
        later = self.__dict__.pop("_later", None)
        if later is None:
            return
        action, targets, uptodate = later
        if isinstance(action, tuple):
            action = functools.partial(*action)
        if isinstance(uptodate, tuple):
            uptodate = functools.partial(*uptodate)
        self._actions = [action]
        self.targets = list(map(str, targets))
        self.uptodate = [(uptodate, None, None) if isinstance(uptodate, bool) else (uptodate, [], {})]
        self.creator_params, self.value_savers = [], []
        self.file_dep, self.calc_dep = set(), set()
        self.values = {}

    def pickle_safe_dict(self) -> dict[str, Any]:
        """doit's, over the class-level attributes too (it deletes some of them by name)."""
        self._settle()
        view = object.__new__(Task)
        view.__dict__.update(_SHARED_ATTRIBUTES, **self.__dict__)
        safe = Task.pickle_safe_dict(view)
        safe["getargs"] = dict(safe["getargs"])  # the shared read-only mapping does not pickle (`doit -P process`)
        # with `doit -P process` this dict carries a task's result back to the parent, which prints the
        # run's summary: what the node's action recorded here goes with it (a pull task's is its node's)
        node_name = self.name.removeprefix("pull:")
        outcome = RUN.outcomes.get(node_name)
        if outcome is not None:
            safe["pixibuild_ran"] = (os.getpid(), node_name, RUN.kinds[node_name], outcome,
                                     _LAYERS_BY_TASK.get(self.name, 0))
        return safe


def _shared_attributes() -> dict[str, Any]:
    """Task's attributes that doit only reads or replaces (never mutates in place), as a plain
    `Task(...)` sets them; empty lists doit only iterates become empty tuples (as doit's own
    `clean_actions` is for `clean=True`)."""
    reference = Task("reference:task", [_run], doc="", verbosity=1)
    shared = {k: v for k, v in vars(reference).items() if not isinstance(v, (list, dict, set))
              and k not in ("name", "doc", "subtask_of")}
    shared.update(clean_actions=(), teardown=(), wild_dep=(), getargs=MappingProxyType({}))
    return shared


_SHARED_ATTRIBUTES = _shared_attributes()
for _name, _value in _SHARED_ATTRIBUTES.items():
    setattr(PlannedTask, _name, _value)


def _pull(ws: Workspace, node: Node) -> None:
    """A pull task's action: never fails (a miss or a cache fault means the node builds)."""
    pull_node(ws, node)


def to_task(ws: Workspace, node: Node, current: bool | None = None) -> PlannedTask:
    """The doit task of a node. Up-to-date = our content-key stamp (not mtimes, and not doit's
    database, which is only a cache). Output nodes: decided once at load (a plain bool spares doit
    a signature inspection, and nothing makes a node current mid-run except its own action — or its
    pull task, so a node that has one is checked again after it), and no task_dep when current.
    Other nodes: a callable doit calls if it schedules them. `build_deps` are setup tasks."""
    pulls = ws.remote is not None and node.remote is not None
    if node.kind in EAGER_KINDS:
        if current is None:
            current = not node.broken and is_up_to_date(ws, node)
        uptodate: bool | tuple = current
        if current:
            return PlannedTask(node.name, (_run, ws, node), node.doc, node.outputs, [], True, node.kind)
        if pulls:
            uptodate = (is_up_to_date, ws, node)
    else:
        uptodate = (is_up_to_date, ws, node)
    deps = [*node.deps, f"pull:{node.name}"] if pulls else list(node.deps)
    return PlannedTask(node.name, (_run, ws, node), node.doc, node.outputs, deps, uptodate, node.kind,
                       list(dict.fromkeys(node.build_deps)) if node.build_deps else None)


def pull_task(ws: Workspace, node: Node) -> PlannedTask:
    return PlannedTask(f"pull:{node.name}", (_pull, ws, node), f"restore {node.name} from the remote cache", (),
                       list(node.deps), False, "pull")


class _CollectorPause:
    """Pause the cyclic garbage collector from the first task creator's start to the last one's end
    (doit calls them one after another), then freeze what they made: the graph and its tasks live
    as long as the process, and need not be rescanned by every later collection."""

    def __init__(self, creators: int):
        self.remaining = creators
        self.was_enabled = gc.isenabled()

    def start(self) -> None:
        gc.disable()

    def done(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            gc.freeze()
            if self.was_enabled:
                gc.enable()


_by_name = operator.attrgetter("name")


def task_creators(ws: Workspace, graph: BuildGraph) -> dict[str, Callable[[], Any]]:
    """`{"task_pack": creator, ...}` for a dodo namespace (plus `task_pull` with a remote cache)."""
    by_kind: dict[str, list[Node]] = {}
    for node in graph.nodes():
        by_kind.setdefault(node.kind, []).append(node)
    current: dict[str, bool] = {}

    def eager_current(node: Node) -> bool | None:
        """Output nodes' up-to-date answer, decided once (their task and their pull task both need it)."""
        if node.kind not in EAGER_KINDS:
            return None
        if node.name not in current:
            current[node.name] = not node.broken and is_up_to_date(ws, node)
        return current[node.name]

    pause = _CollectorPause(len(by_kind) + (1 if ws.remote is not None else 0))
    creators: dict[str, Callable[[], Any]] = {}
    # kinds in name order, each yielding its group task then its subtasks by name: doit's task list is
    # then sorted already, and `doit list` sorts 29,000 tasks with one comparison each (Task.__lt__ is Python)
    for kind, nodes in sorted(by_kind.items()):
        def creator(nodes: list[Node] = nodes, kind: str = kind) -> Any:
            pause.start()
            try:
                # broken projects' nodes last: `doit pack` builds every healthy pack before one fails
                ordered = sorted(nodes, key=_by_name)  # a str key: twice as fast as a (broken, name) tuple
                if any(node.broken for node in ordered):
                    ordered = [n for n in ordered if not n.broken] + [n for n in ordered if n.broken]
                tasks = [to_task(ws, node, eager_current(node)) for node in ordered]
                yield Task(kind, None, doc=KIND_DOCS.get(kind, kind), has_subtask=True,
                           task_dep=[t.name for t in tasks])
                yield from tasks
            finally:
                pause.done()
        creator.__doc__ = KIND_DOCS.get(kind, kind)
        creators[f"task_{kind}"] = creator
    if ws.remote is not None:
        pulled = [n for n in graph.nodes() if n.remote is not None]

        def pulls() -> Any:
            pause.start()
            try:
                tasks = [pull_task(ws, node) for node in sorted(pulled, key=lambda n: n.name)
                         if not eager_current(node)]
                yield Task("pull", None, doc=KIND_DOCS["pull"], has_subtask=True, task_dep=[t.name for t in tasks])
                yield from tasks
            finally:
                pause.done()
        pulls.__doc__ = KIND_DOCS["pull"]
        creators["task_pull"] = pulls
    return creators


def default_tasks(graph: BuildGraph, kinds: tuple[str, ...] = ("pack", "image", "unpack")) -> list[str]:
    """What a bare `doit` builds: every output node — by basename (`pack`), unless a project is
    broken: then the healthy output nodes by name, so the run builds them and succeeds, while the
    broken project's tasks fail only when asked for (`doit pack`, or by name)."""
    outputs = [n for n in graph.nodes() if n.kind in kinds]
    if not any(n.broken for n in outputs):
        return [k for k in kinds if any(n.kind == k for n in outputs)]
    return sorted(n.name for n in outputs if not n.broken)


def dep_file(ws: Workspace) -> Path:
    """doit's database in the build dir; a damaged one (crash mid-write) is set aside, since our
    stamps, not this file, decide what is up to date."""
    path = ws.build_dir / ".doit.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        try:
            with sqlite3.connect(path) as conn:
                ok = conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        except sqlite3.DatabaseError:
            ok = False
        if not ok:
            path.rename(path.with_suffix(".db.corrupt"))
    return path


def doit_config(ws: Workspace, default_tasks: list[str]) -> dict[str, Any]:
    return {
        "dep_file": str(dep_file(ws)),
        "backend": "sqlite3",
        "default_tasks": default_tasks,
        "verbosity": 1,
        "par_type": "thread",
        "reporter": SummaryReporter.for_workspace(ws),
    }
