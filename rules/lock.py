"""lock rule: check once per project that the lock satisfies the manifest (`pixi install --locked`)."""

from __future__ import annotations

import functools

from pixibuild.inputs.locked import check_locked
from pixibuild.inputs.manifest import read_manifest
from pixibuild.graph.plan import BuildGraph, Node, Workspace, content_key
from pixibuild.inputs.project import Project


def _check(manifest_path: str, lock_path: str, targets: list[tuple[str, str]]) -> None:
    from pixibuild.inputs.lockfile import read_lock
    from pixibuild.inputs.project import aligned_lock

    manifest = read_manifest(manifest_path)
    lock = aligned_lock(read_lock(lock_path), manifest)  # named platforms (p1, p2… in v7 locks) as pixi maps them
    for env, platform in targets:
        check_locked(manifest, lock, env, platform)


def declare(graph: BuildGraph, ws: Workspace, label: str, project: Project) -> str:
    """Inputs: the lock's sha256 and the hash of the manifest sections that decide what is locked
    (so editing `[tasks]` or another tool's table reruns nothing). No outputs but its stamp."""
    name = f"lock:{label}" if not ws.single else "lock:check"
    sections = {f"manifest:{env}:{platform}": project.manifest.section_hash(env, platform)
                for env, platform in project.targets()}
    key = content_key("lock", project.lock_sha256, list(sections.values()))
    graph.add(Node(name=name, kind="lock", key=key, doc=f"check {project.lock_path} satisfies its manifest",
                   action=functools.partial(_check, str(project.manifest.path), str(project.lock_path),
                                            project.targets()),
                   inputs={"lock": project.lock_sha256[:16], **{k: v[:16] for k, v in sections.items()}},
                   where=str(project.manifest.path)))
    return name
