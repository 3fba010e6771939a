"""broken rule: a project that cannot be planned gets nodes that fail with its one-line error.

A monorepo must keep building when one of its projects is broken (a lock that does not match its
manifest, a manifest that is not TOML…). The broken project keeps its place in the graph — so
`doit list` shows it and asking for its tasks says what is wrong — as `lock:<project>` plus, when
its targets can still be told (from its lock, else its manifest), the target nodes it would have
had; each fails with the error. They are never up to date, and the default run leaves them out.
"""

from __future__ import annotations

import functools
from typing import Sequence

from pixibuild.errors import PixibuildError
from pixibuild.graph.plan import BuildGraph, Node, Workspace, content_key, target_name

DEFAULT_KINDS = ("pack",)


def _fail(error: PixibuildError) -> None:
    raise error


def _targets(ws: Workspace, label: str) -> tuple[list[tuple[str, str, str]], Sequence[str] | None]:
    """(env, platform, subdir) of the project as far as it can be read, and its `outputs` setting."""
    try:
        project = ws.projects[label]
    except PixibuildError:
        project = None
    if project is not None:
        try:
            return ([(env, platform, project.resolved[(env, platform)].subdir)
                     for env, platform in project.targets()], project.settings.get("outputs"))
        except PixibuildError:
            pass
    from pixibuild.inputs.manifest import read_manifest

    try:
        manifest = read_manifest(ws.project_dirs[label])
        targets = [(env, platform, manifest.platform_subdirs.get(platform, platform))
                   for env in sorted(manifest.environments) for platform in manifest.environment_platforms(env)]
        return targets, (manifest.tool or {}).get("outputs")
    except PixibuildError:
        return [], None


def declare(graph: BuildGraph, ws: Workspace, label: str, kinds: Sequence[str] | None, host: str,
            error: PixibuildError) -> None:
    """`lock:<label>` and the project's target nodes, each failing with `error`."""
    message = str(error)
    fail = functools.partial(_fail, error)
    key = content_key("broken", message)
    lock_name = "lock:check" if ws.single else f"lock:{label}"
    doc = f"BROKEN: {message}"
    where = str(ws.project_dirs[label])
    graph.add(Node(name=lock_name, kind="lock", key=key, action=fail, doc=doc, broken=message, where=where))
    targets, outputs = _targets(ws, label)
    wanted = kinds if kinds is not None else (outputs if isinstance(outputs, list) else DEFAULT_KINDS)
    for env, platform, subdir in targets:
        for kind in ("pack", "unpack", "image"):
            if kind not in wanted or (kind == "unpack" and subdir != host) or \
                    (kind == "image" and not subdir.startswith("linux-")):
                continue
            graph.add(Node(name=target_name(ws, kind, label, env, platform), kind=kind, key=key, action=fail,
                           deps=(lock_name,), doc=doc, broken=message, where=where))
