"""index and archive rules: repodata.json from the lock's records, then environment.tar."""

from __future__ import annotations

import functools
import os
from typing import Sequence

from pixibuild.graph import steps
from pixibuild.graph.remote import OutputFiles
from pixibuild.graph.plan import BuildGraph, Node, Workspace, content_key, target_dir, target_name
from pixibuild.inputs.project import Project, Resolved
from pixibuild.store.session import FetchSession

from . import fetch


def declare(graph: BuildGraph, ws: Workspace, label: str, project: Project, target: Resolved,
            session: FetchSession, deps: Sequence[str] = ()) -> str:
    """Declare index:… and pack:… for one target; returns the pack node name.

    index — inputs: the conda record digests; output: `<target dir>/index/<subdir>/repodata.json`.
    pack  — inputs: index key, platform, record and wheel digests, SOURCE_DATE_EPOCH;
            output: `<target dir>/environment.tar`; action: `steps.archive` over the verified blobs.
    Both are shared through the remote cache; a pack found there needs neither its index nor its packages.
    """
    env, platform = target.env, target.platform
    out_dir = target_dir(ws, label, env, platform)
    packages = fetch.declare_target(graph, ws, project, target, session)
    index_dir = out_dir / "index"
    index_key = content_key("index", sorted(target.conda_digests))
    index_name = target_name(ws, "index", label, env, platform)
    subdirs = sorted({r.subdir for r in target.conda})
    where = fetch.where_of(ws, project, env, platform)
    index_files = {f"{s}.repodata.json": index_dir / s / "repodata.json" for s in subdirs}
    graph.add(Node(name=index_name, kind="index", key=index_key, deps=tuple(deps),
                   outputs=tuple(index_files.values()),
                   doc=f"repodata.json for {label} {env} {platform}",
                   action=functools.partial(steps.index, list(target.conda), str(index_dir)),
                   inputs=fetch.deferred_inputs(functools.partial(fetch.package_inputs, target.conda,
                                                                    target.conda_digests)), where=where,
                   remote=OutputFiles("index", index_files, index_key, directory=index_dir)))
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    pack_key = content_key("pack", index_key, target.subdir, sorted(target.conda_digests),
                           sorted(packages.wheel_digests), epoch, sorted(packages.built_keys))
    tar = out_dir / "environment.tar"
    name = target_name(ws, "pack", label, env, platform)
    graph.add(Node(name=name, kind="pack", key=pack_key, outputs=(tar,), deps=tuple(deps),
                   build_deps=(index_name, *packages.verify_nodes),
                   remote=OutputFiles("pack", {"environment.tar": tar}, pack_key),
                   doc=f"pixi-pack archive of {label}, env {env}, {platform}",
                   action=functools.partial(steps.archive, target.subdir, packages.conda, packages.wheels,
                                            str(ws.store_root), str(index_dir), str(tar), built=packages.built,
                                            label=name),
                   inputs=fetch.deferred_inputs(functools.partial(packages.inputs, target),
                                                 {"platform": target.subdir, "SOURCE_DATE_EPOCH": epoch}),
                   where=where))
    return name
