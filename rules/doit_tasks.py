"""Turn a BuildGraph into doit task creators: one `task_<kind>` per node kind, whose subtasks are
the nodes (`pack:prod:linux-64` = basename `pack`, name `prod:linux-64`), so `doit pack` builds all
packs and `doit list` shows every target with its doc.

A node's `build_deps` (what it needs only to build: a pack's index and packages, an image's layers) are
doit *setup* tasks, which doit runs only when the node itself has to run. With a remote cache, a node
that can come from it and is not up to date here gets a `pull:<node>` task first (local → remote), and
is checked again after it: a machine that finds a pack in the cache never fetches the pack's packages."""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path
from typing import Any, Callable

from doit.exceptions import TaskFailed

from pixibuild.errors import PixibuildError
from pixibuild.graph.plan import BuildGraph, Node, Workspace, is_up_to_date, pull_node, run_node

from .report import SummaryReporter

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
    try:
        run_node(ws, node)
    except PixibuildError as exc:
        return TaskFailed(f"{node.name}: {exc}")
    return None


def _pull(ws: Workspace, node: Node) -> None:
    """A pull task's action: never fails (a miss or a cache fault means the node builds)."""
    pull_node(ws, node)


def to_task(ws: Workspace, node: Node, uptodate: bool | None = None) -> dict[str, Any]:
    """The doit task dict of a node. Up-to-date = our content-key stamp (not mtimes, and not
    doit's database, which is only a cache), decided once when the graph is loaded: a plain bool
    spares doit a signature inspection per task, and nothing makes a node current mid-run except
    its own action — or its pull task, so a node that has one is checked again after it ran.
    task_dep orders it after its inputs."""
    kind, _, sub = node.name.partition(":")
    current = is_up_to_date(ws, node) if uptodate is None else uptodate
    deps, setup = list(node.deps), list(node.build_deps)
    check: bool | Callable[[], bool] = current
    if _pulls(ws, node, current):
        deps.append(f"pull:{node.name}")
        check = functools.partial(is_up_to_date, ws, node)
    task = {
        "name": sub,
        "doc": node.doc,
        "actions": [functools.partial(_run, ws, node)],
        "uptodate": [check],
        "targets": [str(p) for p in node.outputs],
        "task_dep": list(dict.fromkeys(deps)),
        "verbosity": 1,
    }
    if setup:
        task["setup"] = list(dict.fromkeys(setup))
    return task


def _pulls(ws: Workspace, node: Node, current: bool) -> bool:
    return ws.remote is not None and node.remote is not None and not current


def pull_task(ws: Workspace, node: Node) -> dict[str, Any]:
    return {"name": node.name, "doc": f"restore {node.name} from the remote cache", "task_dep": list(node.deps),
            "actions": [functools.partial(_pull, ws, node)], "uptodate": [False], "verbosity": 1}


def task_creators(ws: Workspace, graph: BuildGraph) -> dict[str, Callable[[], Any]]:
    """`{"task_pack": creator, ...}` for a dodo namespace (plus `task_pull` with a remote cache)."""
    by_kind: dict[str, list[Node]] = {}
    for node in graph.nodes():
        by_kind.setdefault(node.kind, []).append(node)
    current: dict[str, bool] = {}

    def uptodate(node: Node) -> bool:
        if node.name not in current:
            current[node.name] = is_up_to_date(ws, node)
        return current[node.name]

    creators: dict[str, Callable[[], Any]] = {}
    for kind, nodes in by_kind.items():
        def creator(nodes: list[Node] = nodes) -> Any:
            for node in sorted(nodes, key=lambda n: n.name):
                yield to_task(ws, node, uptodate(node))
        creator.__doc__ = KIND_DOCS.get(kind, kind)
        creators[f"task_{kind}"] = creator
    if ws.remote is not None:
        pulled = [n for n in graph.nodes() if n.remote is not None]

        def pulls() -> Any:
            for node in sorted(pulled, key=lambda n: n.name):
                if _pulls(ws, node, uptodate(node)):
                    yield pull_task(ws, node)
        pulls.__doc__ = KIND_DOCS["pull"]
        creators["task_pull"] = pulls
    return creators


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
