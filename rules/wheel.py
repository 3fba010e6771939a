"""wheel rules: a locked PyPI source (local tree, sdist, git commit) becomes a wheel the pack, unpack
and image nodes ship like a downloaded one.

Per source: its fetch-like nodes (the sdist's fetch/verify, or `git:<commit>`), `buildenv:<name>@<key>`
(decide and prepare the Python that builds it: a locked environment installed from verified blobs,
else an isolated one from the PyPI index — the only step that may download) and `wheel:<name>@<key>`
(the PEP 517 build, offline; output: the wheel in the store). Later nodes get a `WheelRef`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.graph.plan import BuildGraph, Node, Workspace, content_key
from pixibuild.inputs.project import Project, Resolved
from pixibuild.net.auth import storage_key
from pixibuild.net.config import NetConfig
from pixibuild.pypi import git
from pixibuild.pypi.requirements import choice_path
from pixibuild.pypi.identity import isolated_env_identity
from pixibuild.pypi.jobs import WheelJob
from pixibuild.pypi.plan import plan_wheels
from pixibuild.pypi.remote import WheelResult
from pixibuild.pypi.sources import GitSource, SdistSource, TreeSource
from pixibuild.pypi.tree import tree_identity
from pixibuild.pypi.wheels import WheelRef, is_built
from pixibuild.store.blobs import BlobRef, Store
from pixibuild.store.session import FetchSession

from . import fetch


@dataclass(frozen=True)
class TargetWheels:
    """The built wheels of a target, as the output rules need them."""

    refs: list[WheelRef]
    keys: list[str]
    nodes: list[str]


def _store_blobs(store_root: str, records) -> list[Path]:
    store = Store(store_root)
    return [store.resolve(BlobRef.of(r)) for r in records]


# The build frontend and the build-environment code (PyPA build, the installer, venv: ~50 ms to import)
# are imported by the actions that use them: planning a workspace with PyPI sources declares wheel nodes
# in every planning process, and most runs build none of them.
def _prepare(job: WheelJob, store_root: str, project_root: str) -> None:
    from pixibuild.pypi.buildenv import prepare_build_env

    prepare_build_env(job, store_root, net=NetConfig.load(project_root=Path(project_root)),
                      blobs=functools.partial(_store_blobs, store_root))


def _build(job: WheelJob, store_root: str) -> None:
    from pixibuild.pypi.build import build_wheel

    build_wheel(job, store_root)


def _checkout(source: GitSource, store_root: str, project_root: str) -> None:
    git.checkout(source, store_root, net=NetConfig.load(project_root=Path(project_root)))


def _declare_records(graph: BuildGraph, ws: Workspace, project: Project, records: list[tuple[CondaRecord | PypiRecord, str]],
                     session: FetchSession) -> list[str]:
    return [fetch.declare(graph, ws, project, r, d, session) for r, d in records]


def _env_records(project: Project, job: WheelJob) -> list[tuple[CondaRecord | PypiRecord, str]]:
    """The candidate build environments' packages with their record digests (for fetch/verify)."""
    out: list[tuple[CondaRecord | PypiRecord, str]] = []
    for candidate in job.candidates:
        resolved = project.resolved[(candidate.env, candidate.platform)]
        out += list(zip(resolved.conda, resolved.conda_digests))
        # by identity fields, not dataclass equality: a large lock's candidates × wheels were 170,000
        # field-by-field comparisons (one environment holds one record per name and location)
        wanted = {(w.name, w.location, w.sha256) for w in candidate.wheels}
        out += [(w, d) for w, d in zip(resolved.pypi, resolved.pypi_digests) if (w.name, w.location, w.sha256) in wanted]
    return out


def declare_target(graph: BuildGraph, ws: Workspace, project: Project, target: Resolved,
                   session: FetchSession) -> TargetWheels:
    """The nodes that build `target`'s PyPI sources (shared with every target that has the same keys)."""
    exclude = (str(ws.build_dir), str(ws.store_root), str(project.root / ".pixi"))
    jobs = plan_wheels(project, target, exclude=exclude)
    if jobs:
        # wheel keys hash source trees and depend on the index config and this interpreter: the plan
        # cache re-reads the trees' file stats and the config (cheap) to tell when to derive them again
        for job in jobs:
            if isinstance(job.source, TreeSource):
                graph.watch(functools.partial(tree_identity, str(job.source.path), exclude))
        graph.watch(functools.partial(isolated_env_identity, tuple(target.pypi_indexes), str(project.root)))
    store_root = str(ws.store_root)
    refs, keys, nodes = [], [], []
    for job in jobs:
        source_deps: list[str] = []
        if isinstance(job.source, SdistSource):
            digest = dict(zip(target.pypi, target.pypi_digests))[job.record]
            source_deps.append(fetch.declare(graph, ws, project, job.record, digest, session))
        elif isinstance(job.source, GitSource):
            source = job.source
            name = f"git:{source.commit[:12]}"
            graph.add(Node(name=name, kind="git", key=content_key("git", storage_key(source.url), source.commit),
                           doc=f"fetch {job.record.name} at commit {source.commit[:12]}",
                           present=functools.partial(os.path.isdir, str(git.checkout_dir(store_root, source.commit))),
                           holds=(f"git:{source.commit}",),
                           action=functools.partial(_checkout, source, store_root, str(project.root))))
            source_deps.append(name)
        env_deps = _declare_records(graph, ws, project, _env_records(project, job), session)
        graph.add(Node(name=job.env_node, kind="buildenv", key=content_key("buildenv", job.env_key),
                       deps=tuple(dict.fromkeys([*source_deps, *env_deps])),
                       doc=f"prepare the Python that builds {job.record.name}",
                       present=functools.partial(os.path.isfile, str(choice_path(store_root, job.env_key))),
                       holds=(f"env:{job.env_key}",),
                       action=functools.partial(_prepare, job, store_root, str(project.root))))
        wheel_key = content_key("wheel", job.key)
        graph.add(Node(name=job.node, kind="wheel", key=wheel_key,
                       build_deps=(job.env_node, *source_deps),
                       doc=f"build the wheel of {job.record.name} ({job.record.location})",
                       present=functools.partial(is_built, store_root, job.key),
                       action=functools.partial(_build, job, store_root),
                       remote=WheelResult(store_root, job.key, wheel_key), holds=(f"wheel:{job.key}",)))
        refs.append(WheelRef(job.key, job.record.name))
        keys.append(job.key)
        nodes.append(job.node)
    return TargetWheels(refs, keys, nodes)
