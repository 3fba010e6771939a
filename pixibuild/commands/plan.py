"""Say what a build would run and why, package by package, without running or writing anything.

`pixibuild plan [TASK…] [-C WORKSPACE] [--json] [--push REF] [--remote-cache URL]` (also `pixibuild build
--dry-run`):
one line per node that would run, with its reason (`1 of 212 inputs changed: numpy-1.26.3-….conda →
numpy-1.26.4-….conda (sha256 changed in apps/api/pixi.lock, env prod, linux-64)`, `output deleted: …`,
`image settings changed ([tool.pixibuild] edited)`…), the bytes to download, and — for images with a
push target (`--push`, or `push` in `[tool.pixibuild.image]`) — the bytes a push would upload, found
with HEAD requests against the registry — and, with a remote cache (`--remote-cache`, the environment or
`[tool.pixibuild.cache]`, as `build` finds it), which of the nodes that would run the cache already holds,
so they would be pulled instead of built, and the bytes that takes (a manifest GET per node, a HEAD per
package). TASK is a task name or a kind (`pack`); default: what a bare `pixibuild build` builds. Nothing is
written: no stamp, plan cache or lock cache entry, and nothing to the remote cache.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pixibuild.commands.args import REMOTE_HELP
from pixibuild.errors import InputError

COMMAND_NAME = "plan"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tasks", nargs="*", metavar="TASK",
                        help="task names or kinds, e.g. pack:prod:linux-64 or image (default: every pack/image/unpack)")
    parser.add_argument("-C", "--directory", default=".", help="workspace root (project dir or monorepo root)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    parser.add_argument("--push", metavar="REF", default=None,
                        help="registry repository the images would be pushed to (default: each image's "
                             "[tool.pixibuild.image] push): count the bytes a push would upload (HEAD requests only)")
    parser.add_argument("--remote-cache", default=None, metavar="URL",
                        help=REMOTE_HELP + "; only read: which nodes it would serve")


@dataclass
class RemoteHits:
    """What the remote cache holds of the nodes that would run."""

    cache: str
    nodes: dict[str, int] = field(default_factory=dict)
    """Node name → bytes to pull, for each node the cache holds (pulled, not built)."""
    looked_at: int = 0
    error: str = ""


@dataclass
class Upload:
    """What pushing one image would upload."""

    image: str
    target: str
    blobs: int = 0
    """Blobs whose digest is known (a built image, cached layers)."""
    missing: int = 0
    missing_bytes: int = 0
    unbuilt_layers: int = 0
    """Layers this build would make first: their digests (and whether the registry has them) are
    known only once built."""
    unbuilt_package_bytes: int = 0
    """The archive sizes of those layers' packages: an estimate of their size."""
    error: str = ""
    notes: list[str] = field(default_factory=list)


def run(args: argparse.Namespace) -> int:
    from pixibuild.graph.explain import explain
    from pixibuild.graph.plan import load_workspace
    from pixibuild.rules.graph import build_graph

    ws = load_workspace(args.directory, use_plan_cache=True, readonly=True)
    graph = build_graph(ws)
    try:
        plan = explain(ws, graph, args.tasks)
    except KeyError as exc:
        raise InputError(f"no task or kind named {exc.args[0]!r} (see `pixibuild build --list`)", field="TASK") from None
    uploads = _uploads(ws, graph, plan, args.push)
    hits = _remote_hits(ws, graph, plan, args)
    if args.json:
        json.dump(_as_json(ws, plan, uploads, hits), sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
    else:
        _print(plan, uploads, hits)
    return 0


def _remote_hits(ws, graph, plan, args: argparse.Namespace) -> RemoteHits | None:
    """Ask the remote cache (read only) about every node that would run and can come from it."""
    from pixibuild.graph.remote import workspace_cache_settings
    from pixibuild.net.config import NetConfig
    from pixibuild.store.remote import RemoteCache
    from pixibuild.store.remote_settings import resolve_settings

    manifest, mode, where = workspace_cache_settings(ws.root, ws.project_dirs)
    settings = resolve_settings(flag=args.remote_cache, flag_mode="read", manifest=manifest, manifest_mode=mode,
                                manifest_where=where)
    if settings is None:
        return None
    remote = RemoteCache(settings, lambda: NetConfig.load(project_root=Path(ws.root)), project_root=Path(ws.root))
    hits = RemoteHits(cache=settings.url)
    try:
        for step in plan.steps:
            node = graph.node(step.name).full()
            if step.kind == "fetch":
                sha256 = (node.input_values() or {}).get("sha256")
                if sha256:
                    hits.looked_at += 1
                    if remote.has_blob(sha256):
                        hits.nodes[step.name] = step.download or 0
            elif node.remote is not None:
                hits.looked_at += 1
                entry = remote.lookup(node.remote.kind, node.remote.key())
                if entry is not None:
                    hits.nodes[step.name] = sum(f.size for f in entry.files.values())
        if not remote.readable:  # a registry fault turned it off: say so rather than report misses
            hits.error = "the registry could not be reached"
    finally:
        remote.close()
    return hits


def _as_json(ws, plan, uploads: list[Upload], hits: RemoteHits | None = None) -> dict[str, Any]:
    return {
        "workspace": str(ws.root),
        "targets": plan.targets,
        "would_run": [{"name": s.name, "kind": s.kind, "reasons": s.reasons, "inputs": s.inputs,
                       **({"packages": s.packages} if s.packages else {}),
                       "changes": [asdict(c) for c in s.changes],
                       **({"download_bytes": s.download} if s.kind == "fetch" else {})} for s in plan.steps],
        "up_to_date": plan.up_to_date,
        "download": {"packages": plan.downloads, "bytes": plan.download_bytes,
                     "unknown_size": sum(1 for s in plan.steps if s.kind == "fetch" and s.download is None)},
        "upload": [asdict(u) for u in uploads],
        "remote_cache": asdict(hits) if hits is not None else None,
    }


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _print(plan, uploads: list[Upload], hits: RemoteHits | None = None) -> None:
    out = sys.stdout
    if not plan.steps:
        out.write(f"nothing to do: {len(plan.up_to_date)} target node(s) up to date\n")
    else:
        out.write(f"would run {len(plan.steps)} node(s) ({len(plan.up_to_date)} looked at are up to date):\n")
    pulled = hits.nodes if hits is not None else {}
    for step in plan.steps:
        out.write(f"{step.title}: {step.summary}"
                  + (f" — in the remote cache ({_size(pulled[step.name])})" if step.name in pulled else "") + "\n")
    if plan.downloads:
        unknown = sum(1 for s in plan.steps if s.kind == "fetch" and s.download is None)
        out.write(f"download: {plan.downloads} package(s), {_size(plan.download_bytes)}"
                  + (f" (+ {unknown} of unknown size)" if unknown else "") + "\n")
    for up in uploads:
        if up.error:
            out.write(f"upload {up.image} → {up.target}: cannot tell ({up.error})\n")
            continue
        line = (f"upload {up.image} → {up.target}: {up.missing} of {up.blobs} known blob(s) missing there, "
                f"{_size(up.missing_bytes)}")
        if up.unbuilt_layers:
            line += (f"; {up.unbuilt_layers} layer(s) built by this run first (≈ {_size(up.unbuilt_package_bytes)} "
                     "of packages)")
        out.write(line + "".join(f"; {n}" for n in up.notes) + "\n")
    if hits is not None:
        if hits.error:
            out.write(f"remote cache {hits.cache}: cannot tell ({hits.error})\n")
        else:
            out.write(f"remote cache {hits.cache}: holds {len(hits.nodes)} of the {hits.looked_at} node(s) it could "
                      f"hold, {_size(sum(hits.nodes.values()))} to pull instead of building or downloading them\n")


def _uploads(ws, graph, plan, push: str | None) -> list[Upload]:
    """For each image of the plan's targets with a push target: the blobs a push would upload."""
    from pixibuild.errors import PixibuildError
    from pixibuild.net.config import NetConfig
    from pixibuild.oci.base import archive_blobs
    from pixibuild.oci.layer import LayerCache
    from pixibuild.oci.push import missing_blobs
    from pixibuild.store.roots import layer_cache_root

    would_run = {s.name for s in plan.steps}
    cache = LayerCache(layer_cache_root(ws.store_root))
    zstd = LayerCache(layer_cache_root(ws.store_root), compression="zstd")
    out: list[Upload] = []
    for name in plan.targets:
        node = graph.node(name)
        if node.kind != "image" or node.broken:
            continue
        full = node.full()
        target = push or (full.input_values() or {}).get("push")
        if not target:
            continue
        up = Upload(image=name, target=target)
        blobs: dict[str, int] = {}
        platform = (full.input_values() or {}).get("platform", "linux-64")
        try:
            if name not in would_run and full.outputs and full.outputs[0].exists():
                blobs = dict(archive_blobs(full.outputs[0], platform))
            else:
                for dep in full.all_deps:
                    layer = graph.node(dep)
                    if layer.kind != "layer":
                        continue
                    inputs = layer.full().input_values() or {}
                    key = inputs.get("layer key", "")
                    found = next((f for f in (cache.lookup(key, modes="keep"), zstd.lookup(key, modes="keep"))
                                  if f is not None), None)  # package layers keep their modes
                    if found is not None:
                        blobs[found.digest] = found.size
                    else:
                        up.unbuilt_layers += 1
                        up.unbuilt_package_bytes += sum(_package_size(graph, d) for d in layer.all_deps)
                up.notes.append("the environment/app layers and config are made with the image")
            up.blobs = len(blobs)
            missing = missing_blobs(target, blobs, net=NetConfig.load(project_root=Path(ws.root)))
            up.missing, up.missing_bytes = len(missing), sum(missing.values())
        except PixibuildError as exc:
            up.error = str(exc)
        out.append(up)
    return out


def _package_size(graph, verify_name: str) -> int:
    node = graph.node(verify_name)
    size = (node.full().input_values() or {}).get("size") if node.kind == "verify" else None
    return size if isinstance(size, int) else 0
