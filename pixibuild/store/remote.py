"""The shared remote cache: one repository of an OCI registry that CI machines fill and read.

No protocol of our own, only the distribution API every registry speaks (distribution, Harbor, GHCR,
ECR, Artifact Registry), through the one registry client (`pixibuild.net.registry`: TLS and CA bundle,
retries, credentials as for image pushes):

- **Blobs by their sha256.** A conda package's sha256 *is* an OCI blob digest: package archives and
  wheels are stored as blobs under their own digest, and looked up with one `GET /v2/<repo>/blobs/sha256:…`.
  Each is also referenced by a tiny manifest tagged `pkg-<sha256>`, so a registry's garbage collection
  keeps it.
- **Node results by content key.** A node result (a layer blob with its diff_id, a pack archive, an index's
  repodata files, a built wheel, an image tar) is an OCI 1.1 artifact manifest (`artifactType`
  `application/vnd.pixibuild.node.v1+json`, the empty config) tagged `<kind>-<key>` (the key is a sha256:
  70-odd characters, inside the 128 the tag grammar allows). Its layers are the result's files, each named by an
  `org.opencontainers.image.title` annotation; `dev.pixibuild.kind`/`dev.pixibuild.key` say which node it
  is for (a tag moved onto another node's entry is refused) and `dev.pixibuild.meta` carries small JSON
  (a layer's diff_id, a wheel's file name).

Integrity: every pulled byte is hashed while it streams to a temp file beside its destination; only a
file whose digest and size match is renamed into place (a store blob, like a channel download, only after
the lock's sha256 matched). A mismatch is reported (naming the registry and the entry), the entry is
ignored and the node is built locally. An entry is only published after its node succeeded locally.

Faults never fail a build: the first registry error (down, 5xx after the retries, 401/403, a stalled
read, a full disk) logs one warning naming the registry and the error and turns the cache off for the
rest of the run (reads and writes separately: a registry that refuses pushes can still be read). Requests
use short timeouts and few retries: a cache that costs more than it saves is worse than none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

from pixibuild.errors import BuildError
from pixibuild.files.atomic import current_umask
from pixibuild.files.digest import canonical_json, sha256_digest, sha256_file
from pixibuild.net.mediatypes import EMPTY_JSON, MEDIA_TYPE_EMPTY, MEDIA_TYPE_MANIFEST
from pixibuild.store.remote_settings import RemoteSettings, cache_net

# The registry client (httpx, ~60 ms) and NetConfig (ssl, certifi, ~20 ms; `python -X importtime`) load on
# first use: planning a workspace imports this module, and a no-op run without a cache must not pay for them.
if TYPE_CHECKING:
    from pixibuild.net.config import NetConfig
    from pixibuild.net.auth import AuthStore
    from pixibuild.net.registry import RegistryClient
    from pixibuild.store.blobs import Store

log = logging.getLogger(__name__)

ARTIFACT_TYPE = "application/vnd.pixibuild.node.v1+json"
"""The artifactType of a node result's manifest."""
BLOB_ARTIFACT_TYPE = "application/vnd.pixibuild.blob.v1+json"
"""The artifactType of the manifest that keeps a package blob referenced (tag `pkg-<sha256>`)."""
FILE_MEDIA_TYPE = "application/vnd.pixibuild.file.v1"
"""A result file's media type when the caller names none."""
TITLE = "org.opencontainers.image.title"
KIND = "dev.pixibuild.kind"
KEY = "dev.pixibuild.key"
META = "dev.pixibuild.meta"

_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_KIND_RE = re.compile(r"^[a-z][a-z0-9]{0,30}$")


# -- entries ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteFile:
    """One file of a node result in the registry."""

    name: str
    digest: str
    size: int
    media_type: str


@dataclass(frozen=True)
class RemoteEntry:
    """A node result found in the registry: its files by name, and its small metadata."""

    kind: str
    key: str
    files: Mapping[str, RemoteFile]
    meta: Mapping[str, object]


class Poisoned(Exception):
    """Bytes or an entry that do not match what they claim: ignored (and reported), never used."""


@dataclass
class RemoteStats:
    """What the cache did this run (thread-safe counters)."""

    entry_hits: int = 0
    entry_misses: int = 0
    blob_hits: int = 0
    blob_misses: int = 0
    downloaded: int = 0
    """Bytes pulled (results and blobs)."""
    uploaded: int = 0
    """Bytes pushed (blobs the registry did not have yet)."""
    uploads: int = 0
    """Entries and package blobs published."""
    poisoned: int = 0
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}


def _tag(kind: str, key: str) -> str:
    if not _KIND_RE.match(kind) or not _KEY_RE.match(key):
        raise ValueError(f"remote cache tag needs a short kind and a sha256 key, got {kind!r}, {key!r}")
    return f"{kind}-{key}"


def _descriptor(media_type: str, digest: str, size: int, annotations: Mapping[str, str] | None = None) -> dict:
    desc: dict = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        desc["annotations"] = dict(annotations)
    return desc


def _empty_config() -> dict:
    return _descriptor(MEDIA_TYPE_EMPTY, sha256_digest(EMPTY_JSON), len(EMPTY_JSON))


def entry_manifest(kind: str, key: str, files: Mapping[str, tuple[str, int, str]], meta: Mapping | None = None,
                   *, artifact_type: str = ARTIFACT_TYPE) -> bytes:
    """The manifest bytes of an entry (canonical JSON: two machines publishing the same result write the
    same manifest). `files`: name → (digest, size, media type)."""
    layers = [_descriptor(media_type, digest, size, {TITLE: name})
              for name, (digest, size, media_type) in sorted(files.items())]
    annotations = {KIND: kind, KEY: key}
    if meta:
        annotations[META] = canonical_json(dict(meta)).decode()
    return canonical_json({"schemaVersion": 2, "mediaType": MEDIA_TYPE_MANIFEST, "artifactType": artifact_type,
                           "config": _empty_config(), "layers": layers, "annotations": annotations})


def parse_entry(data: bytes, kind: str, key: str) -> RemoteEntry:
    """An entry's manifest, checked: ours, for this very node (Poisoned otherwise)."""
    try:
        manifest = json.loads(data)
        annotations = manifest.get("annotations") or {}
        if manifest.get("artifactType") != ARTIFACT_TYPE:
            raise Poisoned(f"artifactType is {manifest.get('artifactType')!r}, not {ARTIFACT_TYPE}")
        if annotations.get(KIND) != kind or annotations.get(KEY) != key:
            raise Poisoned(f"the tag points at the entry of {annotations.get(KIND)}-{annotations.get(KEY)}")
        files = {}
        for layer in manifest.get("layers") or []:
            name = (layer.get("annotations") or {}).get(TITLE)
            digest, size = layer.get("digest"), layer.get("size")
            if not isinstance(name, str) or not isinstance(digest, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest) \
                    or not isinstance(size, int) or size < 0 or "/" in name or name.startswith("."):
                raise Poisoned(f"malformed file descriptor {layer!r:.200}")
            files[name] = RemoteFile(name, digest, size, str(layer.get("mediaType") or FILE_MEDIA_TYPE))
        meta = json.loads(annotations[META]) if META in annotations else {}
        if not isinstance(meta, dict):
            raise Poisoned("metadata is not a JSON object")
    except (ValueError, AttributeError, TypeError) as exc:
        raise Poisoned(f"not a pixibuild cache entry ({exc})") from None
    return RemoteEntry(kind, key, files, meta)


# -- the cache ----------------------------------------------------------------------------------------
class RemoteCache:
    """One run's view of the remote cache. Thread-safe; the registry connection is made on first use."""

    def __init__(self, settings: RemoteSettings, net: "NetConfig | Callable[[], NetConfig] | None" = None, *,
                 auth: "AuthStore | None" = None, project_root: Path | None = None):
        self.settings = settings
        self._net = net
        self._auth = auth
        self._project_root = project_root
        self._client: "RegistryClient | None" = None
        self._lock = threading.Lock()
        self._read_off: str | None = None
        self._write_off: str | None = None
        self._config_pushed = False
        self._pushed: set[str] = set()
        self.stats = RemoteStats()
        self.log: list[tuple[str, str, int]] = []
        """(what, outcome, bytes) of every entry and blob looked up or published: `-v` lists them."""

    def __repr__(self) -> str:
        return f"RemoteCache({self.settings.url!r}, {self.settings.mode})"

    @property
    def name(self) -> str:
        return self.settings.url

    @property
    def readable(self) -> bool:
        return self._read_off is None

    @property
    def writable(self) -> bool:
        return self.settings.writable and self._write_off is None and self._read_off is None

    @property
    def repository(self) -> str:
        return self.settings.repository

    def client(self) -> "RegistryClient":
        with self._lock:
            if self._client is None:
                from pixibuild.net.registry import RegistryClient  # httpx: only runs that use the cache pay

                from pixibuild.net.config import NetConfig

                net = self._net() if callable(self._net) else self._net
                if net is None:
                    net = NetConfig.load(project_root=self._project_root)
                self._client = RegistryClient(self.settings.registry, cache_net(net), auth=self._auth,
                                              scheme=self.settings.scheme, connections=8)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _record(self, what: str, outcome: str, nbytes: int = 0) -> None:
        with self._lock:
            self.log.append((what, outcome, nbytes))

    # -- faults ----------------------------------------------------------------------------------
    def _off(self, exc: BaseException, *, writing: bool = False) -> None:
        """Turn reads (or only writes) off for the rest of the run, with one warning."""
        reason = _reason(exc)
        with self._lock:
            if writing and self._read_off is None:
                if self._write_off is not None:
                    return
                self._write_off = reason
                log.warning("remote cache %s: cannot write to it (%s); reading it still, not writing for the rest "
                            "of this run", self.settings.url, reason)
                return
            if self._read_off is not None:
                return
            self._read_off = reason
        log.warning("remote cache %s: %s; building locally without it for the rest of this run",
                    self.settings.url, reason)

    def _poisoned(self, what: str, exc: BaseException) -> None:
        self.stats.add(poisoned=1)
        self._record(what, "poisoned")
        log.warning("remote cache %s: %s: %s; ignored, building it locally", self.settings.url, what, exc)

    @contextlib.contextmanager
    def _guard(self, *, writing: bool = False) -> Iterator[None]:
        """Registry and disk failures turn the cache off (one warning) instead of failing the node."""
        from pixibuild.net.registry import NotFound

        try:
            yield
        except _Skip:
            raise
        except (NotFound, Poisoned) as exc:
            if not writing:
                raise  # a miss, or one bad entry: the cache itself is fine
            self._off(exc, writing=True)
            raise _Skip() from None
        except Exception as exc:  # BuildError from the client, OSError from the disk, httpx errors it did not wrap
            self._off(exc, writing=writing)
            raise _Skip() from None

    # -- package blobs ---------------------------------------------------------------------------
    def has_blob(self, sha256: str) -> bool:
        """Whether the cache holds the blob `sha256` (one HEAD request; False when the cache is off)."""
        if not self.readable:
            return False
        try:
            with self._guard():
                return self.client().blob_exists(self.repository, f"sha256:{sha256}")
        except _Skip:
            return False

    def pull_blob(self, store: "Store", sha256: str, *, size: int | None = None, label: str = "") -> Path | None:
        """The store blob `sha256`, pulled from the cache (verified while it streams); None on a miss or
        when the cache is off."""
        if not self.readable:
            return None
        from pixibuild.net.registry import NotFound

        what = f"blob of {label or sha256}"
        digest = f"sha256:{sha256}"
        try:
            with self._guard():
                with store.lock(sha256):
                    if store.has(sha256, size):
                        return store.blob_path(sha256)
                    tmp = store.new_temp(sha256)
                    try:
                        got = self._stream_to(digest, size, tmp, what, exact=False)
                        path = store.commit(tmp, sha256, fsync=False)
                    except BaseException:
                        tmp.unlink(missing_ok=True)
                        raise
        except _Skip:
            return None
        except NotFound:
            self.stats.add(blob_misses=1)
            self._record(what, "miss")
            return None
        except Poisoned as exc:
            self._poisoned(what, exc)
            return None
        self.stats.add(blob_hits=1)
        self._record(what, "pulled", got)
        return path

    def push_blob(self, path: Path, sha256: str, *, label: str = "") -> None:
        """Publish a verified store blob (and its `pkg-<sha256>` manifest), unless the registry has it."""
        if not self.writable or sha256 in self._pushed:
            return
        what = f"blob of {label or sha256}"
        try:
            with self._guard(writing=True):
                client = self.client()
                digest = f"sha256:{sha256}"
                size = path.stat().st_size
                tag = _tag("pkg", sha256)
                if client.blob_exists(self.repository, digest):
                    self._pushed.add(sha256)
                    return
                self._push_config(client)
                client.upload_blob(self.repository, path, digest)
                manifest = entry_manifest("pkg", sha256, {"blob": (digest, size, FILE_MEDIA_TYPE)},
                                          artifact_type=BLOB_ARTIFACT_TYPE)
                self._put_manifest(client, tag, manifest, {digest: path})
        except _Skip:
            return
        self._pushed.add(sha256)
        self.stats.add(uploaded=size, uploads=1)
        self._record(what, "uploaded", size)

    # -- node results ----------------------------------------------------------------------------
    def lookup(self, kind: str, key: str) -> RemoteEntry | None:
        """The entry of node `kind` with content key `key`, or None (a miss, the cache off, a bad entry)."""
        if not self.readable:
            return None
        from pixibuild.net.registry import NotFound

        tag = _tag(kind, key)
        try:
            with self._guard():
                data, _media_type = self.client().get_manifest(self.repository, tag)
            entry = parse_entry(data, kind, key)
        except _Skip:
            return None
        except NotFound:
            self.stats.add(entry_misses=1)
            self._record(tag, "miss")
            return None
        except Poisoned as exc:
            self._poisoned(tag, exc)
            return None
        return entry

    def download(self, entry: RemoteEntry, files: Mapping[str, Path]) -> bool:
        """Pull the entry's files to their destinations (`name → path`): each verified against its digest
        and size into a temp file beside its destination; renamed into place only once all of them
        arrived. False (nothing written) on any failure."""
        if not self.readable:
            return False
        from pixibuild.net.registry import NotFound

        tag = _tag(entry.kind, entry.key)
        missing = set(files) - set(entry.files)
        if missing or set(entry.files) - set(files):
            self._poisoned(tag, Poisoned(f"holds files {sorted(entry.files)}, expected {sorted(files)}"))
            return False
        temps: dict[str, Path] = {}
        total = 0
        try:
            try:
                with self._guard():
                    for name, dest in files.items():
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.remote.", suffix=".tmp", dir=dest.parent)
                        os.close(fd)
                        temps[name] = Path(tmp)

                    def one(name: str) -> int:
                        remote = entry.files[name]
                        return self._stream_to(remote.digest, remote.size, temps[name], f"{tag} {name}", exact=True)
                    if len(files) == 1:
                        total = one(next(iter(files)))
                    else:  # an image's layers: a few at a time
                        with ThreadPoolExecutor(max_workers=min(4, len(files)), thread_name_prefix="pull") as pool:
                            total = sum(pool.map(one, list(files)))
                    for name, dest in files.items():
                        os.chmod(temps[name], 0o644 & ~current_umask())
                        os.replace(temps.pop(name), dest)
            except NotFound:
                self._poisoned(tag, Poisoned("a file it names is missing from the registry"))
                return False
            except Poisoned as exc:
                self._poisoned(tag, exc)
                return False
            except _Skip:
                return False
        finally:
            for tmp in temps.values():
                tmp.unlink(missing_ok=True)
        self.stats.add(entry_hits=1)
        self._record(tag, "pulled", total)
        return True

    def download_digest(self, digest: str, size: int, dest: Path, *, media_type: str = FILE_MEDIA_TYPE) -> bool:
        """One blob of the cache repository to `dest` (verified, atomic): e.g. a layer an image push could
        not mount."""
        hex_digest = digest.split(":", 1)[1]
        entry = RemoteEntry("blob", hex_digest, {dest.name: RemoteFile(dest.name, digest, size, media_type)}, {})
        return self.download(entry, {dest.name: dest})

    def download_blob(self, entry: RemoteEntry, name: str, store: "Store") -> Path | None:
        """An entry file that is a store blob (a built wheel): pulled into the store by its digest."""
        remote = entry.files.get(name)
        if remote is None:
            self._poisoned(_tag(entry.kind, entry.key), Poisoned(f"has no file {name!r}"))
            return None
        path = self.pull_blob(store, remote.digest.split(":", 1)[1], size=remote.size,
                              label=f"{_tag(entry.kind, entry.key)} {name}")
        if path is not None:
            self.stats.add(entry_hits=1)
        return path

    def publish(self, kind: str, key: str, files: Mapping[str, Path], meta: Mapping | None = None,
                media_types: Mapping[str, str] | None = None) -> bool:
        """Upload a node result built and verified locally: its files (those the registry lacks), then the
        manifest tagged `<kind>-<key>`. False when the cache is read-only, off, or the upload failed."""
        if not self.writable:
            return False
        tag = _tag(kind, key)
        sent = 0
        try:
            with self._guard(writing=True):
                client = self.client()
                descriptors = {}
                for name, path in sorted(files.items()):
                    digest, size = _file_digest(path)
                    descriptors[name] = (digest, size, (media_types or {}).get(name, FILE_MEDIA_TYPE))
                    if not client.blob_exists(self.repository, digest):
                        client.upload_blob(self.repository, path, digest)
                        sent += size
                self._push_config(client)
                paths = {descriptors[name][0]: path for name, path in files.items()}
                self._put_manifest(client, tag, entry_manifest(kind, key, descriptors, meta), paths)
        except _Skip:
            return False
        self.stats.add(uploaded=sent, uploads=1)
        self._record(tag, "uploaded", sent)
        return True

    def mount(self, repository: str, digest: str) -> bool:
        """Mount a cache blob into `repository` of the same registry (an image push): True when the
        registry did, so it need not be downloaded and uploaded again."""
        if not self.readable:
            return False
        try:
            with self._guard():
                return self.client().mount_blob(repository, digest, self.repository)
        except _Skip:
            return False

    # -- helpers ---------------------------------------------------------------------------------
    def _put_manifest(self, client: "RegistryClient", tag: str, manifest: bytes, blobs: Mapping[str, Path]) -> None:
        """PUT the manifest; once more after uploading its blobs again when the registry says it does not
        know one. (distribution answers so, with DIGEST_INVALID, when another runner uploads the same blob
        to the same repository at that moment: HEAD said it was there, its link was not written yet.)"""
        try:
            client.put_manifest(self.repository, tag, manifest, MEDIA_TYPE_MANIFEST)
        except BuildError as exc:
            if "BLOB_UNKNOWN" not in str(exc) and "DIGEST_INVALID" not in str(exc):
                raise
            for digest, path in blobs.items():
                client.upload_blob(self.repository, path, digest)
            self._config_pushed = False
            self._push_config(client, force=True)
            client.put_manifest(self.repository, tag, manifest, MEDIA_TYPE_MANIFEST)

    def _push_config(self, client: "RegistryClient", *, force: bool = False) -> None:
        if self._config_pushed:
            return
        digest = sha256_digest(EMPTY_JSON)
        if force or not client.blob_exists(self.repository, digest):
            with tempfile.TemporaryDirectory(prefix="pixibuild-cache-") as tmp:
                path = Path(tmp) / "config"
                path.write_bytes(EMPTY_JSON)
                client.upload_blob(self.repository, path, digest)
        self._config_pushed = True

    def _stream_to(self, digest: str, size: int | None, tmp: Path, what: str, *, exact: bool) -> int:
        """Blob `digest` into the existing file `tmp`, hashing as it streams; Poisoned unless digest (and
        size, when known) match. A blob larger than `size` is cut off there."""
        h = hashlib.sha256()
        got = 0
        with open(tmp, "wb") as out:
            for chunk in self.client().iter_blob(self.repository, digest):
                got += len(chunk)
                if size is not None and got > size:
                    raise Poisoned(f"{what}: more than the {size} bytes it should have")
                h.update(chunk)
                out.write(chunk)
        self.stats.add(downloaded=got)
        actual = f"sha256:{h.hexdigest()}"
        if actual != digest:
            raise Poisoned(f"{what}: the registry sent other bytes (sha256 expected {digest.split(':', 1)[1]}, "
                           f"got {actual.split(':', 1)[1]})")
        if exact and size is not None and got != size:
            raise Poisoned(f"{what}: {got} bytes, the entry says {size}")
        return got


class _Skip(Exception):
    """The cache was turned off by a fault (already reported): carry on locally."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, BuildError):
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        return f"cannot write{where}: {exc.strerror or exc}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:400]


def _file_digest(path: Path) -> tuple[str, int]:
    """`sha256:<hex>` and size of a file: its OCI descriptor digest."""
    hexdigest, size = sha256_file(path)
    return f"sha256:{hexdigest}", size
