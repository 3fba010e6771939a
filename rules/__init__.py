"""pixibuild's doit rule set: one rule per node kind (lock, fetch, verify, index, pack, unpack,
layer, image), each a thin declaration over library functions in `pixibuild/`.

A monorepo's whole `dodo.py`:

    from pixibuild.rules import workspace_tasks
    globals().update(workspace_tasks(__file__))

Installed from a wheel this package is importable as `pixibuild.rules` (it lives in the repository's
top-level `rules/` folder; pyproject maps it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence



def workspace_tasks(root: str | Path = ".", *, kinds: Sequence[str] | None = None,
                    store_root: str | Path | None = None, build_dir: str | Path | None = None) -> dict[str, Any]:
    """A dodo namespace (DOIT_CONFIG + task creators) for the workspace at `root` (a directory,
    or a dodo.py path whose directory is used). Unchanged projects are planned from the build dir's
    plan cache; a project that cannot be planned is reported on stderr and gets broken tasks."""
    import gc

    from pixibuild.graph.plan import load_workspace

    from .doit_tasks import default_tasks, doit_config, task_creators
    from .graph import build_graph

    root = Path(root)
    if root.is_file():
        root = root.parent
    enabled = gc.isenabled()
    gc.disable()  # planning makes many long-lived objects: the collector would rescan them over and over
    try:
        ws = load_workspace(root, store_root=store_root, build_dir=build_dir, use_plan_cache=True)
        graph = build_graph(ws, kinds)
    finally:
        if enabled:
            gc.enable()
    for node in graph.nodes("lock"):
        if node.broken:
            print(f"pixibuild: warning: {node.name}: {node.broken} (this project's tasks fail when asked for; "
                  "the other projects build)", file=sys.stderr)
    namespace: dict[str, Any] = dict(task_creators(ws, graph))
    namespace["DOIT_CONFIG"] = doit_config(ws, default_tasks(graph))
    namespace["PIXIBUILD_WORKSPACE"] = ws
    namespace["PIXIBUILD_GRAPH"] = graph
    return namespace


__all__ = ["workspace_tasks"]
