"""Push an image to a registry, as skopeo does minus the work it can skip: HEAD each blob by its
(build-time, deterministic) digest and skip those present, try a cross-repository mount, else
upload; then PUT the manifest and check the registry computed the same digest."""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from pixibuild.errors import BuildError
from pixibuild.net.auth import AuthStore
from pixibuild.net.config import NetConfig
from pixibuild.net.mediatypes import MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST
from pixibuild.net.registry import Reference, RegistryClient, connect, parse_reference
from pixibuild.oci.layout import Image
from pixibuild.oci.referrers import Artifact, fallback_tag, referrers_index

if TYPE_CHECKING:
    from pixibuild.oci.index import ImageIndex

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


def _check_digest(ref: Reference, what: str, got: str, expected: str) -> None:
    if got != expected:
        raise BuildError(f"{ref}: registry reports {what} digest {got}, expected {expected}")


def push_image(image: "Image | ImageIndex", target: str | Reference, *, referrers: Sequence[Artifact] = (),
               mount_from: str | None = None, client: RegistryClient | None = None, jobs: int = 4,
               chunk_size: int | None = None, net: NetConfig | None = None,
               auth: AuthStore | None = None) -> tuple[str, PushStats]:
    """Push `image` (or a multi-platform index: each platform's manifest by digest, then the index
    under the tag) and its `referrers` to `target`; returns (top digest, what happened to each blob)."""
    ref = parse_reference(target) if isinstance(target, str) else target
    own = client is None
    client = client or connect(ref, net, auth=auth, chunk_size=chunk_size)
    stats = PushStats()
    images = (image,) if isinstance(image, Image) else image.images
    try:
        with tempfile.TemporaryDirectory(prefix="pixibuild-push-") as tmp:
            blobs: dict[str, Path] = {}
            for one in images:
                blobs.update({layer.digest: layer.path for layer in one.layers})
                config_path = Path(tmp) / one.config_digest.split(":", 1)[1]
                config_path.write_bytes(one.config)
                blobs[one.config_digest] = config_path
            for artifact in referrers:
                for digest, data in artifact.blobs().items():
                    path = Path(tmp) / digest.split(":", 1)[1]
                    path.write_bytes(data)
                    blobs[digest] = path
            _push_blobs(client, ref, blobs, stats, mount_from, jobs)
        if isinstance(image, Image):
            digest = client.put_manifest(ref.repository, ref.tag or image.digest, image.manifest, MEDIA_TYPE_MANIFEST)
            _check_digest(ref, "manifest", digest, image.digest)
        else:
            for one in images:
                _check_digest(ref, "manifest", client.put_manifest(ref.repository, one.digest, one.manifest,
                                                                   MEDIA_TYPE_MANIFEST), one.digest)
            digest = client.put_manifest(ref.repository, ref.tag or image.digest, image.manifest, MEDIA_TYPE_INDEX)
            _check_digest(ref, "index", digest, image.digest)
        if referrers:
            push_referrers(client, ref, referrers)
    finally:
        if own:
            client.close()
    log.info("pushed %s (%s): %d uploaded, %d mounted, %d already present%s", ref, digest,
             len(stats.uploaded), len(stats.mounted), len(stats.skipped),
             f", {len(referrers)} referrers" if referrers else "")
    return digest, stats


def push_referrers(client: RegistryClient, ref: Reference, artifacts: Sequence[Artifact]) -> None:
    """PUT each artifact manifest by digest (its blobs must be there). A registry that indexes the
    subject says so with an `OCI-Subject` header; for one that does not, the `sha256-<subject>` tag
    gets (or updates) an index listing the artifacts, as the distribution spec's fallback says."""
    indexed = True
    for artifact in artifacts:
        headers: dict[str, str] = {}
        got = client.put_manifest(ref.repository, artifact.digest, artifact.manifest, MEDIA_TYPE_MANIFEST,
                                  response_headers=headers)
        _check_digest(ref, "referrer manifest", got, artifact.digest)
        indexed = indexed and "oci-subject" in headers
    if indexed:
        return
    by_subject: dict[str, list[Artifact]] = {}
    for artifact in artifacts:
        by_subject.setdefault(artifact.subject["digest"], []).append(artifact)
    for subject, group in by_subject.items():
        tag = fallback_tag(subject)
        found = client.find_manifest(ref.repository, tag)
        listed: list[dict] = []
        if found is not None:
            try:
                listed = list(json.loads(found[0]).get("manifests") or [])
            except (ValueError, AttributeError):
                listed = []  # not an index: the fallback tag is ours to rewrite
        known = {d.get("digest") for d in listed}
        listed += [a.descriptor() for a in group if a.digest not in known]
        client.put_manifest(ref.repository, tag, referrers_index(listed), MEDIA_TYPE_INDEX)


def list_referrers(client: RegistryClient, repository: str, digest: str) -> list[dict]:
    """What refers to `digest`: from the referrers API, else from the fallback tag's index."""
    listed = client.get_referrers(repository, digest)
    if listed is not None:
        return listed
    found = client.find_manifest(repository, fallback_tag(digest))
    if found is None:
        return []
    return [d for d in json.loads(found[0]).get("manifests") or []
            if (d.get("digest") and d.get("mediaType") == MEDIA_TYPE_MANIFEST)]
