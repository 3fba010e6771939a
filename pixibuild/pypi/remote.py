"""A built wheel through the remote cache: the wheel node's result is the wheel's bytes (a store blob,
pulled by its digest and verified) and its pointer (`<store>/pypi/wheels/<key>.json`: file name, version,
sha256), carried as the entry's metadata. Restoring writes the blob first and the pointer last, as a
local build does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pixibuild.files.atomic import atomic_write_bytes
from pixibuild.files.digest import canonical_json
from pixibuild.pypi.wheels import pointer_path
from pixibuild.store.blobs import Store

if TYPE_CHECKING:  # planning declares WheelResults; only a run with a remote cache uses one (~12 ms)
    from pixibuild.store.remote import RemoteCache, RemoteEntry

POINTER_FIELDS = ("name", "version", "file_name", "sha256", "requires_dist", "requires_python", "dist_name")


@dataclass
class WheelResult:
    """The wheel node with key `wheel_key` (its job key) whose node key is `node_key`."""

    store_root: str
    wheel_key: str
    node_key: str
    kind: str = "wheel"

    def key(self) -> str:
        return self.node_key

    def restore(self, remote: RemoteCache, entry: RemoteEntry) -> bool:
        pointer = {k: entry.meta.get(k) for k in POINTER_FIELDS}
        wheel = entry.files.get("wheel")
        if wheel is None or not isinstance(pointer["sha256"], str) or wheel.digest != f"sha256:{pointer['sha256']}" \
                or not isinstance(pointer["file_name"], str) or "/" in pointer["file_name"]:
            remote._poisoned(f"wheel-{entry.key}", ValueError("its metadata does not describe its wheel"))
            return False
        if remote.download_blob(entry, "wheel", Store(self.store_root)) is None:
            return False
        atomic_write_bytes(pointer_path(self.store_root, self.wheel_key), canonical_json(pointer), fsync=False)
        return True

    def publish(self, remote: RemoteCache) -> bool:
        try:
            pointer = json.loads(pointer_path(self.store_root, self.wheel_key).read_bytes())
            blob = Store(self.store_root).blob_path(pointer["sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        meta = {k: pointer.get(k) for k in POINTER_FIELDS}
        return remote.publish(self.kind, self.key(), {"wheel": Path(blob)}, meta)
