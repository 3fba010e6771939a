"""Reading layers back: the merged root filesystem an image's layers describe, streamed (nothing
is unpacked to disk). What the build needs to know about a base image (does it have /bin/sh, its
/etc/passwd and /etc/group) and what `--check-against-unpack` compares both come from here.

Layers apply in order; a later entry replaces an earlier one at the same path, a whiteout
(`.wh.<name>`) deletes `<name>` and everything under it, an opaque marker (`.wh..wh..opq`) hides
what lower layers put in its directory (OCI image-spec, layer.md).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import posixpath
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import zstandard

from pixibuild.errors import BuildError
from pixibuild.files.atomic import atomic_write_bytes
from pixibuild.net.mediatypes import MEDIA_TYPE_ZSTD
from pixibuild.oci.layer import Layer

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_SYMLINK_HOPS = 40


@dataclass(frozen=True)
class Entry:
    """One path of a merged root filesystem."""

    kind: str
    """file, dir, symlink, hardlink, other"""
    mode: int
    uid: int = 0
    gid: int = 0
    target: str = ""
    """symlink/hardlink target"""
    sha256: str = ""
    """of a file's bytes, when its content was asked for"""
    size: int = 0
    content: bytes | None = None
    """the bytes of small files asked for whole (passwd, group)"""


def open_layer(layer: Layer) -> BinaryIO:
    """The uncompressed tar stream of a layer blob (gzip, zstd or plain tar, by media type and magic)."""
    handle = open(layer.path, "rb")
    magic = handle.read(4)
    handle.seek(0)
    if layer.media_type == MEDIA_TYPE_ZSTD or magic == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().stream_reader(handle, closefd=True)  # type: ignore[return-value]
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[return-value]
    return handle


def _normal(name: str) -> str:
    name = posixpath.normpath("/" + name).lstrip("/")
    return "" if name == "." else name


def _kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    if member.isreg():
        return "file"
    return "other"


def merged_tree(layers: Iterable[Layer], *, hash_files: Callable[[str], bool] = lambda p: False,
                read_whole: Callable[[str], bool] = lambda p: False) -> dict[str, Entry]:
    """path (no leading /) → Entry of the filesystem the layers make, base-most layer first.

    Files for which `hash_files(path)` is true get their sha256 (streamed); `read_whole(path)`
    keeps a file's bytes (small files only)."""
    tree: dict[str, Entry] = {}
    for layer in layers:
        seen_in_layer: set[str] = set()
        try:
            with open_layer(layer) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    path = _normal(member.name)
                    if not path:
                        continue
                    parent, base = posixpath.split(path)
                    if base == OPAQUE:
                        for other in [p for p in tree if p.startswith(parent + "/") and p not in seen_in_layer]:
                            del tree[other]
                        continue
                    if base.startswith(WHITEOUT):
                        gone = posixpath.join(parent, base[len(WHITEOUT):])
                        for other in [p for p in tree if p == gone or p.startswith(gone + "/")]:
                            del tree[other]
                        continue
                    kind = _kind(member)
                    lower = tree.get(path)
                    if kind != "dir" and lower is not None and lower.kind == "dir":  # replaces a lower subtree
                        for other in [p for p in tree if p.startswith(path + "/")]:
                            del tree[other]
                    sha, content = "", None
                    if kind == "file" and (hash_files(path) or read_whole(path)):
                        data = tar.extractfile(member)
                        h = hashlib.sha256()
                        chunks = []
                        while chunk := data.read(1 << 20):  # type: ignore[union-attr]
                            h.update(chunk)
                            if read_whole(path):
                                chunks.append(chunk)
                        sha = h.hexdigest()
                        content = b"".join(chunks) if read_whole(path) else None
                    target = _normal(member.linkname) if kind == "hardlink" else member.linkname
                    tree[path] = Entry(kind, member.mode & 0o7777, member.uid, member.gid, target, sha,
                                       member.size if kind == "file" else 0, content)
                    seen_in_layer.add(path)
        except (tarfile.TarError, OSError, EOFError, zstandard.ZstdError) as exc:
            raise BuildError(f"layer {layer.digest} cannot be read: {exc}", path=str(layer.path)) from None
    return tree


def resolve(tree: dict[str, Entry], path: str) -> str | None:
    """`path` with every symlink on the way followed inside the tree (absolute targets are relative
    to the root), or None when it does not exist."""
    parts = [p for p in _normal(path).split("/") if p]
    done: list[str] = []
    hops = 0
    while parts:
        current = "/".join(done + [parts[0]])
        entry = tree.get(current)
        if entry is None:
            return None
        if entry.kind == "symlink":
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                return None
            target = entry.target
            base = [] if target.startswith("/") else list(done)
            parts = [p for p in _normal("/".join(base + [target])).split("/") if p] + parts[1:]
            done = []
            continue
        done.append(parts.pop(0))
    return "/".join(done)


@dataclass(frozen=True)
class BaseFacts:
    """What the image build needs to know about a base's root filesystem."""

    has_shell: bool
    """/bin/sh exists (through symlinks such as a merged-/usr `bin -> usr/bin`)."""
    passwd: str | None = None
    group: str | None = None


SCRATCH_FACTS = BaseFacts(has_shell=False)
_FACTS_FORMAT = 1


def base_facts(layers: tuple[Layer, ...], cache_root: Path) -> BaseFacts:
    """The facts of a base made of `layers`, read once and then remembered under `cache_root` by the
    layers' digests (a multi-GB base is scanned once per machine, not once per build)."""
    if not layers:
        return SCRATCH_FACTS
    key = hashlib.sha256(json.dumps([_FACTS_FORMAT, [l.digest for l in layers]]).encode()).hexdigest()
    entry = cache_root / "base-facts" / f"{key}.json"
    try:
        return BaseFacts(**json.loads(entry.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    wanted = {"etc/passwd", "etc/group"}
    tree = merged_tree(layers, read_whole=lambda p: p in wanted)
    sh = resolve(tree, "bin/sh")
    text = {}
    for name in wanted:
        real = resolve(tree, name)
        entry_ = tree.get(real) if real else None
        if entry_ is not None and entry_.kind == "file":
            content = entry_.content
            if content is None:  # the path was reached through a symlink: read the real file
                content = merged_tree(layers, read_whole=lambda p, r=real: p == r)[real].content
            text[name] = (content or b"").decode("utf-8", "replace")
    facts = BaseFacts(has_shell=bool(sh and tree[sh].kind in ("file", "hardlink")),
                      passwd=text.get("etc/passwd"), group=text.get("etc/group"))
    atomic_write_bytes(entry, json.dumps(asdict(facts), sort_keys=True).encode(), fsync=False)
    return facts


def iter_layer_members(layer: Layer) -> Iterator[tarfile.TarInfo]:
    """The tar headers of one layer, in order (for tests and tools that list a layer)."""
    with open_layer(layer) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        yield from tar
