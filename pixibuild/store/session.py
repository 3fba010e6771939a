"""The fetch nodes' shared downloader: one Fetcher (one connection pool) per project per graph run,
made on the first download.

The fetcher module is imported on first use, not here: httpx costs ~60 ms of start-up (measured with
`python -X importtime`), which planning a no-op run of a large monorepo must not pay.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from pixibuild.conda.records import CondaRecord, PypiRecord

if TYPE_CHECKING:
    from pixibuild.store.fetch import Fetcher
    from pixibuild.store.remote import RemoteCache


class FetchSession:
    """Downloads for the fetch nodes of one project: its pixi config, the shared store."""

    def __init__(self, store_root: Path, project_root: Path | None = None, *, remote: "RemoteCache | None" = None,
                 net_options: dict | None = None):
        self.store_root = Path(store_root)
        self.project_root = project_root
        self.remote = remote
        """The workspace's remote cache: asked for a missing package before the channels."""
        self.net_options = dict(net_options or {})
        """NetConfig.load overrides from the command line (`pixibuild build --ca-bundle/--auth-file`)."""
        self._fetcher: "Fetcher | None" = None
        self._lock = threading.Lock()

    def fetcher(self) -> "Fetcher":
        with self._lock:
            if self._fetcher is None:
                from pixibuild.net.config import NetConfig
                from pixibuild.store.blobs import Store
                from pixibuild.store.fetch import Fetcher

                config = NetConfig.load(project_root=self.project_root, **self.net_options)
                self._fetcher = Fetcher(Store(self.store_root), config=config, progress=False, remote=self.remote)
            return self._fetcher

    def fetch(self, record: CondaRecord | PypiRecord, base_dir: str | Path) -> Path:
        """The verified store path of `record`: downloaded, copied from a local channel, or already there."""
        return self.fetcher().fetch_one(record, Path(base_dir))

    def fetch_node(self, record: CondaRecord | PypiRecord, base_dir: str | Path) -> str | None:
        """The fetch node's action: "remote" when the remote cache had the package, "local" when the store
        already had it (the graph counts the node as a remote or local hit, not as built)."""
        _, origin = self.fetcher().fetch_one_origin(record, Path(base_dir))
        return {"remote": "remote", "store": "local"}.get(origin)

    def close(self) -> None:
        with self._lock:
            if self._fetcher is not None:
                self._fetcher.close()
                self._fetcher = None
