"""fetch and verify rules: one node per distinct package bytes, shared by every target."""

from __future__ import annotations

import functools
import os

from pixibuild import steps
from pixibuild.plan import BuildGraph, Node, Workspace, content_key, record_id
from pixibuild.project import Project
from pixibuild.records import CondaRecord, PypiRecord


def declare(graph: BuildGraph, ws: Workspace, project: Project, record: CondaRecord | PypiRecord,
            digest: str) -> str:
    """Declare fetch:<id> and verify:<id>; returns the verify node name targets depend on.

    Inputs: URL and hashes (fetch), plus the full record digest (verify). Output: the store blob.
    """
    rid = record_id(record)
    if graph.has(f"verify:{rid}"):
        return f"verify:{rid}"  # shared package: declared by an earlier target
    store_root, base_dir = str(ws.store_root), str(project.lock_path.parent)
    location = record.url if isinstance(record, CondaRecord) else record.location
    label = record.file_name
    fetch_key = content_key("fetch", location, record.sha256, record.md5)
    present = None
    if record.sha256:
        blob = os.path.join(ws.store_root, "blobs", "sha256", record.sha256[:2], record.sha256)
        present = functools.partial(os.path.exists, blob)
    graph.add(Node(name=f"fetch:{rid}", kind="fetch", key=fetch_key, doc=f"fetch {label}", present=present,
                   action=functools.partial(steps.fetch, record, base_dir, store_root)))
    graph.add(Node(name=f"verify:{rid}", kind="verify", key=content_key("verify", fetch_key, digest),
                   doc=f"verify {label}", deps=(f"fetch:{rid}",), present=present,
                   action=functools.partial(steps.verify, record, base_dir, store_root)))
    return f"verify:{rid}"
