"""Push an image to a registry, as skopeo does minus the work it can skip: HEAD each blob by its
(build-time, deterministic) digest and skip those present, try a cross-repository mount, else
upload; then PUT the manifest and check the registry computed the same digest."""

from __future__ import annotations

import logging
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pixibuild.errors import BuildError
from pixibuild.net.auth import AuthStore
from pixibuild.net.config import NetConfig
from pixibuild.net.mediatypes import MEDIA_TYPE_MANIFEST
from pixibuild.net.registry import Reference, RegistryClient, connect, parse_reference
from pixibuild.oci.layout import Image

log = logging.getLogger(__name__)


@dataclass
class PushStats:
    """What a push did, per blob: checked, skipped (already there), mounted, uploaded."""

    skipped: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, kind: str, digest: str) -> None:
        with self._lock:
            getattr(self, kind).append(digest)



def _push_blobs(client: RegistryClient, ref: Reference, blobs: dict[str, Path], stats: PushStats,
                mount_from: str | None, jobs: int) -> None:
    """Every blob present in `ref`'s repository afterwards: skipped, mounted or uploaded, `jobs` at a time.
    The first blob that fails for good is reported; the others then stop at once (no retry waits)."""
    failed = threading.Event()
    errors: list[Exception] = []
    errors_lock = threading.Lock()

    def one(digest: str) -> None:
        if failed.is_set():
            return
        try:
            if client.blob_exists(ref.repository, digest):
                stats.add("skipped", digest)
            elif (mount_from and mount_from != ref.repository
                  and client.mount_blob(ref.repository, digest, mount_from)):
                stats.add("mounted", digest)
            else:
                client.upload_blob(ref.repository, blobs[digest], digest)
                stats.add("uploaded", digest)
        except Exception as exc:
            with errors_lock:
                if not failed.is_set():  # the first failure is the one to report, not its aftermath
                    errors.append(exc)
                    failed.set()
                    client.interrupt()

    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="push")
    try:
        list(pool.map(one, list(blobs)))
    except BaseException:  # Ctrl-C: the others stop retrying
        failed.set()
        client.interrupt()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        client.interrupt(False)
    if errors:
        raise errors[0]


def missing_blobs(target: str | Reference, blobs: dict[str, int], *, net: NetConfig | None = None,
                  auth: AuthStore | None = None) -> dict[str, int]:
    """The blobs (digest → size) the repository of `target` lacks, asked with HEAD requests only:
    what a push would upload (`pixibuild plan`)."""
    ref = parse_reference(target) if isinstance(target, str) else target
    with connect(ref, net, auth=auth) as client:
        return {digest: size for digest, size in blobs.items() if not client.blob_exists(ref.repository, digest)}


def push_image(image: Image, target: str | Reference, *, mount_from: str | None = None,
               client: RegistryClient | None = None, jobs: int = 4, chunk_size: int | None = None,
               net: NetConfig | None = None, auth: AuthStore | None = None) -> tuple[str, PushStats]:
    """Push `image` to `target`; returns (manifest digest, what happened to each blob)."""
    ref = parse_reference(target) if isinstance(target, str) else target
    own = client is None
    client = client or connect(ref, net, auth=auth, chunk_size=chunk_size)
    stats = PushStats()
    try:
        with tempfile.TemporaryDirectory(prefix="pixibuild-push-") as tmp:
            config_path = Path(tmp) / "config"
            config_path.write_bytes(image.config)
            blobs = {layer.digest: layer.path for layer in image.layers}
            blobs[image.config_digest] = config_path
            _push_blobs(client, ref, blobs, stats, mount_from, jobs)
        digest = client.put_manifest(ref.repository, ref.tag or image.digest, image.manifest, MEDIA_TYPE_MANIFEST)
    finally:
        if own:
            client.close()
    if digest != image.digest:
        raise BuildError(f"{ref}: registry reports manifest digest {digest}, expected {image.digest}")
    log.info("pushed %s (%s): %d uploaded, %d mounted, %d already present", ref, digest,
             len(stats.uploaded), len(stats.mounted), len(stats.skipped))
    return digest, stats
