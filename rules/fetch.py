"""fetch and verify rules: one node per distinct package bytes, shared by every target.

Only the fetch node downloads (through the project's `FetchSession`: store → remote cache → channel);
every node after `verify` gets the `BlobRef`s planned here and reads the store, never the network.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.errors import InputError
from pixibuild.graph import steps
from pixibuild.graph.plan import BuildGraph, Node, Workspace, content_key, record_id
from pixibuild.inputs.project import Project, Resolved
from pixibuild.pypi.sources import needs_build
from pixibuild.pypi.wheels import WheelRef
from pixibuild.store.blobs import BlobRef, Store
from pixibuild.store.session import FetchSession


def blob_path(ws: Workspace, sha256: str | None) -> str | None:
    """Where the store keeps a package (None when the lock gives no usable sha256: then the fetch
    node runs and reports the bad hash, or finds the blob through the store's URL index)."""
    if not sha256:
        return None
    try:
        return _store(str(ws.store_root)).blob_name(sha256)
    except InputError:
        return None


@functools.lru_cache(maxsize=8)
def _store(root: str) -> Store:
    return Store(root)


def declare(graph: BuildGraph, ws: Workspace, project: Project, record: CondaRecord | PypiRecord,
            digest: str, session: FetchSession) -> str:
    """Declare fetch:<id> and verify:<id>; returns the verify node name targets depend on.

    Inputs: URL and hashes (fetch), plus the full record digest (verify). Output: the store blob.
    """
    rid = record_id(record)
    if graph.has(f"verify:{rid}"):
        return f"verify:{rid}"  # shared package: declared by an earlier target
    shared = graph.shared.get(f"verify:{rid}")
    if shared is not None:  # declared by an earlier project: the same nodes, not derived again
        graph.add(graph.shared[f"fetch:{rid}"])
        graph.add(shared)
        return shared.name
    location = record.url if isinstance(record, CondaRecord) else record.location
    label = record.file_name
    fetch_key = content_key("fetch", location, record.sha256, record.md5)
    blob = blob_path(ws, record.sha256)
    present = functools.partial(os.path.exists, blob) if blob else None  # a str: cheap to unpickle
    holds = (f"blob:{record.sha256}",) if blob else ()
    where = where_of(ws, project)
    # what a plan reports: the bytes a fetch downloads (its key is the content itself: nothing to diff)
    inputs = {"file": label, "size": getattr(record, "size", None), "sha256": record.sha256}
    fetch = graph.add(Node(name=f"fetch:{rid}", kind="fetch", key=fetch_key, doc=f"fetch {label}", present=present,
                           action=functools.partial(session.fetch_node, record, str(project.lock_path.parent)),
                           inputs=inputs, where=where, keep_inputs=False, holds=holds))
    verify = graph.add(Node(name=f"verify:{rid}", kind="verify", key=content_key("verify", fetch_key, digest),
                            doc=f"verify {label}", deps=(f"fetch:{rid}",), present=present,
                            action=functools.partial(steps.verify, BlobRef.of(record), str(ws.store_root)),
                            inputs=inputs, where=where, keep_inputs=False, holds=holds))
    graph.shared[fetch.name], graph.shared[verify.name] = fetch, verify
    return verify.name


def where_of(ws: Workspace, project: Project, env: str | None = None, platform: str | None = None) -> str:
    """`apps/api/pixi.lock, env prod, linux-64`: where a node's inputs come from, for explanations."""
    return ", ".join([_lock_shown(project.lock_path, ws.root), *([f"env {env}"] if env else []),
                      *([platform] if platform else [])])


@functools.lru_cache(maxsize=1024)
def _lock_shown(lock_path: Path, root: Path) -> str:
    """The lock's path below the workspace root (asked once per package of the project: remembered)."""
    try:
        return lock_path.relative_to(root).as_posix()
    except ValueError:
        return str(lock_path)


def deferred_inputs(*parts: dict[str, Any] | Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """A node's `inputs` as a function of its parts (dicts, or functions giving dicts), merged in
    order when read: an output node's per-package inputs are only read when it runs or is explained."""
    return functools.partial(_merged_inputs, parts)


def _merged_inputs(parts: Sequence[dict[str, Any] | Callable[[], dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        out.update(part() if callable(part) else part)
    return out


def package_inputs(records: Sequence[CondaRecord | PypiRecord], digests: Sequence[str], prefix: str = "conda"
                   ) -> dict[str, str]:
    """A target's packages as named inputs: `conda:numpy` → `numpy-1.26.4-….conda sha256:… rec:…` (the
    file, its sha256 and its record digest, shortened: enough to tell which of them changed)."""
    return {f"{prefix}:{r.name}": f"{r.file_name} sha256:{(r.sha256 or '-')[:16]} rec:{d[:12]}"
            for r, d in zip(records, digests)}


@dataclass(frozen=True)
class TargetPackages:
    """A target's packages as the pack/unpack/image rules need them: each record with the blob its
    verify node vouches for, the wheels' digests, and the verify nodes to depend on."""

    conda: list[tuple[CondaRecord, BlobRef]]
    wheels: list[tuple[PypiRecord, BlobRef]]
    wheel_digests: list[str]
    conda_verify: list[str]
    wheel_verify: list[str]
    built: list[WheelRef] = field(default_factory=list)
    """Wheels built from the target's PyPI sources (`rules/wheel.py`), resolved from the store by key."""
    built_keys: list[str] = field(default_factory=list)
    built_nodes: list[str] = field(default_factory=list)

    def inputs(self, target: Resolved) -> dict[str, str]:
        """The packages an output node is made of, as named inputs (`package_inputs`)."""
        return {**package_inputs(target.conda, target.conda_digests),
                **package_inputs([w for w, _ in self.wheels], self.wheel_digests, "pypi"),
                **{f"wheel:{ref.label}": key[:16] for ref, key in zip(self.built, self.built_keys)}}

    @property
    def verify_nodes(self) -> tuple[str, ...]:
        """The nodes whose outputs the target's output nodes read: verified blobs and built wheels."""
        return tuple(dict.fromkeys([*self.conda_verify, *self.wheel_verify, *self.built_nodes]))


def declare_target(graph: BuildGraph, ws: Workspace, project: Project, target: Resolved,
                   session: FetchSession) -> TargetPackages:
    """fetch/verify nodes for every package of a target; its PyPI sources (local trees, sdists, git)
    get wheel nodes (`rules/wheel.py`)."""
    # the wheel rules load PyPA build, the installer and the PyPI planner (~240 ms, python -X importtime):
    # only workspaces whose targets have PyPI sources pay for them
    from . import wheel

    lock_dir = project.lock_path.parent
    sources = [w for w in target.pypi if needs_build(w, lock_dir)]
    wheels = [(w, d) for w, d in zip(target.pypi, target.pypi_digests) if w not in sources]
    conda_verify = [declare(graph, ws, project, r, d, session) for r, d in zip(target.conda, target.conda_digests)]
    wheel_verify = [declare(graph, ws, project, w, d, session) for w, d in wheels]
    built = wheel.declare_target(graph, ws, project, target, session) if sources else None
    return TargetPackages(conda=[(r, BlobRef.of(r)) for r in target.conda],
                          wheels=[(w, BlobRef.of(w)) for w, _ in wheels], wheel_digests=[d for _, d in wheels],
                          conda_verify=conda_verify, wheel_verify=wheel_verify,
                          built=built.refs if built else [], built_keys=built.keys if built else [],
                          built_nodes=built.nodes if built else [])
