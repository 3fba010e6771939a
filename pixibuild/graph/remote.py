"""How a node's result travels through the remote cache (`pixibuild.store.remote`).

A node whose result can be shared between machines carries a `RemoteResult`: its entry kind (the tag
prefix), its remote key (usually the node's content key), how to restore the result from an entry, and
how to publish the result it built. The graph asks, per node: local (stamp + outputs) → remote (restore)
→ build here and publish. Nodes after `verify` still never download from a channel: what comes from
the cache is the node's own result, found by its key, verified like every other pulled byte.

`OutputFiles` covers results that are files in the build dir (pack archive, index repodata, image tar);
layers (`pixibuild.oci.remote`) and built wheels (`pixibuild.pypi.remote`) restore into their
caches in the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Protocol

from pixibuild.errors import InputError
from pixibuild.files.atomic import atomic_directory
from pixibuild.store.remote import RemoteCache, RemoteEntry

# tomli, not the stdlib tomllib: pixi's TOML may be TOML 1.1 (inline tables over several lines), which
# tomli (>= 2.3) reads and Python 3.11's tomllib refuses (inputs/manifest.py reads manifests the same way)
import tomli as tomllib


class RemoteResult(Protocol):
    kind: str

    def key(self) -> str:
        """The entry's key: a sha256 of everything the result depends on, the same on every machine."""

    def restore(self, remote: RemoteCache, entry: RemoteEntry) -> bool:
        """Put the entry's result where the node's outputs live; False (nothing half-written) if it failed."""

    def publish(self, remote: RemoteCache) -> bool:
        """Upload the result the node just built."""


@dataclass
class OutputFiles:
    """A result made of files: `files` maps the entry's file names to the node's output paths. `remote_key`
    computes the key when it is not the node's (e.g. content hashes where the node key has mtimes); it is
    called at most once, only when the cache is used."""

    kind: str
    files: Mapping[str, Path]
    node_key: str
    remote_key: Callable[[], str] | None = None
    directory: Path | None = None
    """When the files are the whole of a directory the node swaps in at once (an index): restored the same
    way, so no file of an older result survives beside them."""
    _key: str | None = field(default=None, repr=False)

    def key(self) -> str:
        if self._key is None:
            self._key = self.remote_key() if self.remote_key is not None else self.node_key
        return self._key

    def restore(self, remote: RemoteCache, entry: RemoteEntry) -> bool:
        if self.directory is None:
            return remote.download(entry, self.files)
        try:
            with atomic_directory(self.directory) as tmp:
                staged = {name: tmp / path.relative_to(self.directory) for name, path in self.files.items()}
                if not remote.download(entry, staged):
                    raise _NotRestored()
        except _NotRestored:
            return False
        return True

    def publish(self, remote: RemoteCache) -> bool:
        return remote.publish(self.kind, self.key(), self.files)


class _NotRestored(Exception):
    """Abandon a half-restored directory (atomic_directory removes it)."""


def _cache_table(tool: object, where: str) -> dict:
    table = tool.get("cache") if isinstance(tool, dict) else None
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise InputError("must be a table: [tool.pixibuild.cache] remote = \"oci://HOST/REPO\"", field=where)
    for name, kind in (("remote", str), ("mode", str)):
        if name in table and not isinstance(table[name], kind):
            raise InputError(f"must be a string, got {table[name]!r}", field=f"{where}.{name}")
    return table


def _manifest_tool(directory: Path) -> tuple[dict | None, Path | None]:
    """`[tool.pixibuild]` of the manifest in `directory` (pixi.toml, else pyproject.toml), read with tomli
    only: deciding the remote cache must not load any project's lock."""
    from pixibuild.inputs.discover import MANIFEST_NAMES

    for name in MANIFEST_NAMES:
        path = directory / name
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise InputError(f"cannot parse: {exc}", path=path) from None
            return (data.get("tool") or {}).get("pixibuild"), path
    return None, None


def workspace_cache_settings(root: Path, project_dirs: Mapping[str, Path]) -> tuple[str | None, str | None, str]:
    """`[tool.pixibuild.cache]` of a workspace: `remote` and `mode` from the root's pixi.toml or pyproject.toml
    (a monorepo's root needs no project of its own for this), else from its projects' manifests, which must
    then agree (one cache per workspace). Returns (remote, mode, where it was written)."""
    tool, path = _manifest_tool(root)
    if path is not None:
        table = _cache_table(tool, f"{path}: tool.pixibuild.cache")
        if table:
            return table.get("remote"), table.get("mode"), f"{path}: tool.pixibuild.cache"
    found: dict[tuple, str] = {}
    for label, directory in sorted(project_dirs.items()):
        if Path(directory) == Path(root):
            continue
        try:
            tool, path = _manifest_tool(Path(directory))
        except InputError:
            continue  # a broken project: its own tasks report it
        where = f"{path}: tool.pixibuild.cache"
        table = _cache_table(tool, where)
        if table:
            found.setdefault((table.get("remote"), table.get("mode")), where)
    if len(found) > 1:
        (a, wa), (b, wb) = list(found.items())[:2]
        raise InputError(f"one remote cache per workspace: {wa} says {a[0]!r}, {wb} says {b[0]!r}; set it once in the "
                         f"workspace root's pixi.toml or pyproject.toml")
    if found:
        (remote, mode), where = next(iter(found.items()))
        return remote, mode, where
    return None, None, "tool.pixibuild.cache"
