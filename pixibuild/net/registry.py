"""A small Registry API v2 (OCI distribution) client: pull manifests/blobs, push images.

Push follows what skopeo does, minus work it can skip: HEAD each blob by its (build-time,
deterministic) compressed digest and skip existing ones, try a cross-repository mount, else
upload (monolithic POST+PUT, or chunked PATCHes), then PUT the manifest. Bearer-token auth
(anonymous or with credentials) and Basic auth are handled on 401; plain http is used for
localhost/127.0.0.1 (or when asked).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import quote, urlencode, urljoin

import httpx

from pixibuild.errors import BuildError, InputError
from pixibuild.oci.config import (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MEDIA_TYPE_INDEX,
    MEDIA_TYPE_MANIFEST, sha256_digest)
from pixibuild.oci.layout import Image

log = logging.getLogger(__name__)

DOCKER_HUB = "registry-1.docker.io"
MANIFEST_ACCEPT = ", ".join([MEDIA_TYPE_MANIFEST, MEDIA_TYPE_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])
_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


@dataclass(frozen=True)
class Reference:
    """registry host, repository path, and a tag and/or digest."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest if pinned, else the tag (default latest)."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """`[docker://][host[:port]/]repo[:tag][@sha256:…]`, Docker Hub rules for short names."""
    ref = text.removeprefix("docker://")
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise InputError(f"invalid digest in image reference {text!r}")
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, ref
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _REPO_RE.match(path) or (tag is not None and not re.fullmatch(r"[\w][\w.-]{0,127}", tag)):
        raise InputError(f"invalid image reference {text!r}")
    return Reference(registry, path, tag, digest)


def _is_local(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0] if not registry.startswith("[") else registry.split("]")[0] + "]"
    return host in ("localhost", "127.0.0.1", "[::1]")


def _docker_config_auth(registry: str) -> tuple[str, str] | None:
    """Credentials from ~/.docker/config.json `auths` (base64 user:password), if present."""
    path = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        auths = json.loads(path.read_text()).get("auths", {})
    except (OSError, ValueError):
        return None
    keys = [registry, f"https://{registry}", f"http://{registry}"]
    if registry == DOCKER_HUB:
        keys.append("https://index.docker.io/v1/")
    for key in keys:
        entry = auths.get(key)
        if entry and entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
    return None


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


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


class RegistryClient:
    """One registry host; thread-safe; remembers bearer tokens per scope."""

    def __init__(self, registry: str, *, insecure: bool | None = None, username: str | None = None,
                 password: str | None = None, chunk_size: int | None = None, timeout: float = 60.0):
        self.registry = registry
        scheme = "http" if (insecure if insecure is not None else _is_local(registry)) else "https"
        self.base = f"{scheme}://{registry}"
        if username is None:
            username = os.environ.get("PIXIBUILD_REGISTRY_USERNAME")
            password = os.environ.get("PIXIBUILD_REGISTRY_PASSWORD", password)
        creds = (username, password or "") if username else _docker_config_auth(registry)
        self._creds = creds
        self.chunk_size = chunk_size
        self._client = httpx.Client(timeout=timeout, follow_redirects=True)
        self._auth: dict[str, str] = {}  # scope → Authorization header value
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- auth ---------------------------------------------------------------------------------
    def _authorize(self, response: httpx.Response, scope: str) -> str:
        header = response.headers.get("www-authenticate", "")
        scheme, params = _parse_challenge(header)
        if scheme == "basic":
            if not self._creds:
                raise BuildError(f"{self.registry} requires a username and password", field="auth")
            token = base64.b64encode(f"{self._creds[0]}:{self._creds[1]}".encode()).decode()
            return f"Basic {token}"
        if scheme != "bearer" or "realm" not in params:
            raise BuildError(f"{self.registry}: unsupported authentication challenge {header!r}", field="auth")
        query = {"service": params.get("service", "")} if params.get("service") else {}
        query["scope"] = scope
        auth = httpx.BasicAuth(*self._creds) if self._creds else None
        r = self._client.get(params["realm"], params=query, auth=auth)
        if r.status_code != 200:
            raise BuildError(f"{self.registry}: token request to {params['realm']} failed with HTTP {r.status_code}",
                             field="auth")
        body = r.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise BuildError(f"{self.registry}: token response has no token", field="auth")
        return f"Bearer {token}"

    def _request(self, method: str, url: str, *, scope: str, content: Callable[[], object] | None = None,
                 headers: dict[str, str] | None = None, stream: bool = False) -> httpx.Response:
        """Send, and on a 401 authenticate for `scope` and resend once (bodies are re-created)."""
        url = urljoin(self.base + "/", url)
        for attempt in (0, 1):
            hdrs = dict(headers or {})
            with self._lock:
                auth = self._auth.get(scope)
            if auth:
                hdrs["Authorization"] = auth
            request = self._client.build_request(method, url, headers=hdrs,
                                                 content=content() if content else None)
            try:
                response = self._client.send(request, stream=stream)
            except httpx.HTTPError as exc:
                raise BuildError(f"{method} {url}: {exc}") from exc
            if response.status_code != 401 or attempt:
                return response
            response.read()
            value = self._authorize(response, scope)
            with self._lock:
                self._auth[scope] = value
        raise AssertionError("unreachable")

    @staticmethod
    def _scope(repository: str, actions: str) -> str:
        return f"repository:{repository}:{actions}"

    @staticmethod
    def _fail(response: httpx.Response, what: str) -> BuildError:
        try:
            detail = response.read().decode(errors="replace")[:300]
        except httpx.HTTPError:
            detail = ""
        return BuildError(f"{what}: HTTP {response.status_code} {' '.join(detail.split())}")

    # -- pull ---------------------------------------------------------------------------------
    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """(manifest bytes, media type); verified against `reference` when it is a digest."""
        r = self._request("GET", f"/v2/{repository}/manifests/{reference}", scope=self._scope(repository, "pull"),
                          headers={"Accept": MANIFEST_ACCEPT})
        if r.status_code != 200:
            raise self._fail(r, f"{self.registry}/{repository}:{reference}: manifest")
        data = r.content
        if reference.startswith("sha256:") and sha256_digest(data) != reference:
            raise BuildError(f"{self.registry}/{repository}@{reference}: manifest digest mismatch")
        media_type = r.headers.get("content-type", "").split(";")[0] or json.loads(data).get("mediaType", "")
        return data, media_type

    def iter_blob(self, repository: str, digest: str) -> Iterator[bytes]:
        r = self._request("GET", f"/v2/{repository}/blobs/{digest}", scope=self._scope(repository, "pull"),
                          stream=True)
        try:
            if r.status_code != 200:
                raise self._fail(r, f"{self.registry}/{repository}: blob {digest}")
            yield from r.iter_bytes(1 << 20)
        finally:
            r.close()

    # -- push ---------------------------------------------------------------------------------
    def blob_exists(self, repository: str, digest: str) -> bool:
        r = self._request("HEAD", f"/v2/{repository}/blobs/{digest}", scope=self._scope(repository, "pull,push"))
        if r.status_code == 200:
            return True
        if r.status_code == 404:
            return False
        raise self._fail(r, f"{self.registry}/{repository}: HEAD blob {digest}")

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Cross-repository mount; True when the registry mounted it (201)."""
        scope = f"{self._scope(repository, 'pull,push')} {self._scope(source, 'pull')}"
        r = self._request("POST", f"/v2/{repository}/blobs/uploads/?" + urlencode({"mount": digest, "from": source}),
                          scope=scope, headers={"Content-Length": "0"})
        if r.status_code == 201:
            return True
        if r.status_code == 202:  # fallback upload session: cancel it, we start our own
            location = r.headers.get("location")
            if location:
                self._request("DELETE", location, scope=scope)
            return False
        raise self._fail(r, f"{self.registry}/{repository}: mount {digest} from {source}")

    def _start_upload(self, repository: str) -> str:
        r = self._request("POST", f"/v2/{repository}/blobs/uploads/", scope=self._scope(repository, "pull,push"),
                          headers={"Content-Length": "0"})
        if r.status_code != 202 or "location" not in r.headers:
            raise self._fail(r, f"{self.registry}/{repository}: start upload")
        return r.headers["location"]

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        return location + ("&" if "?" in location else "?") + "digest=" + quote(digest)

    def upload_blob(self, repository: str, path: Path, digest: str) -> None:
        """Upload `path` (monolithic, or chunked when chunk_size is set); streams from disk."""
        scope = self._scope(repository, "pull,push")
        size = path.stat().st_size
        location = self._start_upload(repository)
        if self.chunk_size and size > self.chunk_size:
            with open(path, "rb") as f:
                start = 0
                while start < size:
                    f.seek(start)
                    chunk = f.read(self.chunk_size)
                    end = start + len(chunk) - 1
                    r = self._request("PATCH", location, scope=scope, content=lambda c=chunk: c,
                                      headers={"Content-Type": "application/octet-stream",
                                               "Content-Range": f"{start}-{end}", "Content-Length": str(len(chunk))})
                    if r.status_code != 202:
                        raise self._fail(r, f"{self.registry}/{repository}: PATCH {digest}")
                    location = r.headers.get("location", location)
                    start = end + 1
            r = self._request("PUT", self._with_digest(location, digest), scope=scope,
                              headers={"Content-Length": "0"})
        else:
            def body() -> Iterator[bytes]:
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        yield chunk
            r = self._request("PUT", self._with_digest(location, digest), scope=scope, content=body,
                              headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        if r.status_code != 201:
            raise self._fail(r, f"{self.registry}/{repository}: upload {digest}")

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        r = self._request("PUT", f"/v2/{repository}/manifests/{reference}", scope=self._scope(repository, "pull,push"),
                          content=lambda: data, headers={"Content-Type": media_type})
        if r.status_code not in (200, 201):
            raise self._fail(r, f"{self.registry}/{repository}:{reference}: manifest PUT")
        return r.headers.get("docker-content-digest", sha256_digest(data))


def push_image(image: Image, target: str | Reference, *, mount_from: str | None = None,
               client: RegistryClient | None = None, jobs: int = 4, chunk_size: int | None = None,
               insecure: bool | None = None) -> tuple[str, PushStats]:
    """Push `image` to `target`; returns (manifest digest, what happened to each blob)."""
    ref = parse_reference(target) if isinstance(target, str) else target
    own = client is None
    client = client or RegistryClient(ref.registry, chunk_size=chunk_size, insecure=insecure)
    stats = PushStats()
    try:
        with tempfile.TemporaryDirectory(prefix="pixibuild-push-") as tmp:
            config_path = Path(tmp) / "config"
            config_path.write_bytes(image.config)
            blobs = {layer.digest: layer.path for layer in image.layers}
            blobs[image.config_digest] = config_path

            def one(digest: str) -> None:
                if client.blob_exists(ref.repository, digest):
                    stats.add("skipped", digest)
                elif (mount_from and mount_from != ref.repository
                      and client.mount_blob(ref.repository, digest, mount_from)):
                    stats.add("mounted", digest)
                else:
                    client.upload_blob(ref.repository, blobs[digest], digest)
                    stats.add("uploaded", digest)

            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                list(pool.map(one, list(blobs)))
        digest = client.put_manifest(ref.repository, ref.tag or image.digest, image.manifest, MEDIA_TYPE_MANIFEST)
    finally:
        if own:
            client.close()
    if digest != image.digest:
        raise BuildError(f"{ref}: registry reports manifest digest {digest}, expected {image.digest}")
    log.info("pushed %s (%s): %d uploaded, %d mounted, %d already present", ref, digest,
             len(stats.uploaded), len(stats.mounted), len(stats.skipped))
    return digest, stats
