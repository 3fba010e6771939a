"""A small Registry API v2 (OCI distribution) client: pull manifests/blobs, push images.

Push follows what skopeo does, minus work it can skip: HEAD each blob by its (build-time,
deterministic) compressed digest and skip existing ones, try a cross-repository mount, else
upload (monolithic POST+PUT, or chunked PATCHes), then PUT the manifest. Bearer-token auth
(anonymous or with credentials) and Basic auth are handled on 401.

The network is the shared stack of `pixibuild.net.http`: the client comes from the `NetConfig` (so
`--ca-bundle`, pixi's `tls-ca-bundle` and `$PIXIBUILD_CA_BUNDLE` apply to the registry *and* its token
endpoint), redirects are followed by hand (a blob redirected to a CDN or object store never gets the
registry's Authorization header; https → http is refused), and the fetcher's retry policy covers
connection errors, 5xx and 429 for idempotent requests (GET, HEAD, the manifest PUT); a blob upload
that fails transiently starts over with a new upload session. Credentials: `registry_credential`
(explicit, `$PIXIBUILD_REGISTRY_USERNAME/PASSWORD`, docker's config.json, the auth file / netrc).
Credentials are sent to a bearer-token realm only over https or on the registry's own host.

Which scheme (the rule):
- `https://HOST/REPO:TAG` → https; `http://HOST/REPO:TAG` → plain http (the user said so);
- no scheme (`HOST/REPO:TAG`, `docker://HOST/REPO:TAG`) → https, except for a loopback registry
  (`localhost`, `127.0.0.1`, `[::1]`), which gets plain http as before. A loopback registry that
  serves TLS is named with `https://`; its error then says so.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar
from urllib.parse import quote, urlencode, urljoin, urlsplit

import httpx

from pixibuild.errors import BuildError, InputError
from pixibuild.net.auth import AuthStore, Credential, redact_url, registry_credential
from pixibuild.net.config import NetConfig
from pixibuild.net.http import (GaveUp, Interrupted, RedirectError, RetryPolicy, Transient, certificate_error,
                                is_transient_status, make_client, send)
from pixibuild.files.digest import sha256_digest
from pixibuild.net.mediatypes import MANIFEST_ACCEPT, MEDIA_TYPE_INDEX

log = logging.getLogger(__name__)

DOCKER_HUB = "registry-1.docker.io"
_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
T = TypeVar("T")


@dataclass(frozen=True)
class Reference:
    """registry host, repository path, a tag and/or digest, and the scheme if the user wrote one."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None
    scheme: str | None = None

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest if pinned, else the tag (default latest)."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        """The image's name; the scheme is how to reach it, not part of it (and not in image metadata)."""
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """`[docker://|https://|http://][host[:port]/]repo[:tag][@sha256:…]`, Docker Hub rules for short names."""
    ref = text.removeprefix("docker://")
    scheme = None
    for prefix in ("https://", "http://"):
        if ref.startswith(prefix):
            scheme, ref = prefix[:-3], ref[len(prefix):]
            if "/" not in ref:
                raise InputError(f"invalid image reference {text!r}: {prefix}HOST/REPOSITORY[:TAG] expected")
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise InputError(f"invalid digest in image reference {text!r}")
    first, _, rest = ref.partition("/")
    if rest and (scheme or "." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, ref
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not registry or not _REPO_RE.match(path) or (tag is not None and not re.fullmatch(r"[\w][\w.-]{0,127}", tag)):
        raise InputError(f"invalid image reference {text!r}")
    return Reference(registry, path, tag, digest, scheme)


def _hostname(registry: str) -> str:
    return (urlsplit(f"//{registry}").hostname or registry).lower()


def is_loopback(registry: str) -> bool:
    host = _hostname(registry)
    return host in ("localhost", "127.0.0.1", "::1")


class NotFound(BuildError):
    """The registry has no such manifest, blob or repository (HTTP 404): for a cache, a miss."""


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def _authorization(cred: Credential) -> str:
    if cred.kind == "bearer":
        return f"Bearer {cred.token}"
    return "Basic " + base64.b64encode(f"{cred.username}:{cred.password}".encode()).decode()


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.rsplit("@", 1)[-1].lower()


class RegistryClient:
    """One registry host; thread-safe; remembers bearer tokens per scope.

    `config` (default: pixi's config files, as the CLI reads them) gives TLS, timeouts and retries;
    `auth` (default: the config's auth file / netrc) the last-resort credentials and the redaction.
    """

    def __init__(self, registry: str, config: NetConfig | None = None, *, auth: AuthStore | None = None,
                 scheme: str | None = None, username: str | None = None, password: str | None = None,
                 chunk_size: int | None = None, connections: int = 8):
        self.registry = registry
        self.config = config if config is not None else NetConfig.load()
        self.auth = auth if auth is not None else AuthStore.load(self.config.auth_file)
        self.scheme = scheme or ("http" if is_loopback(registry) else "https")
        if self.scheme not in ("http", "https"):
            raise InputError(f"unsupported registry scheme {self.scheme!r}", field=registry)
        if self.scheme == "http" and not is_loopback(registry):
            log.warning("%s: plain http, as asked: nothing sent to it is encrypted", registry)
        self.base = f"{self.scheme}://{registry}"
        self._cred = registry_credential(registry, username=username, password=password, auth=self.auth)
        if self._cred is not None:
            self.auth.remember(*self._cred.secrets)
        self.retry = RetryPolicy.from_config(self.config)
        self.chunk_size = chunk_size
        self._client = make_client(self.config, connections=connections)
        self._auth: dict[str, str] = {}  # scope → Authorization header value
        self._lock = threading.Lock()
        self._stop = threading.Event()  # set: retry waits end at once (Ctrl-C, or a sibling upload failed)

    def interrupt(self, stop: bool = True) -> None:
        """Cut short every wait before a retry (`stop=False` allows waiting again)."""
        if stop:
            self._stop.set()
        else:
            self._stop.clear()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _redact(self, text: str) -> str:
        return self.auth.redact(" ".join(text.split()))

    def _error(self, text: str) -> BuildError:
        """One line, secrets masked."""
        return BuildError(self._redact(text))

    # -- auth ---------------------------------------------------------------------------------
    def _credential_hint(self) -> str:
        return ("set PIXIBUILD_REGISTRY_USERNAME/PIXIBUILD_REGISTRY_PASSWORD, log in with docker or skopeo, "
                "or give --auth-file")

    def _authorize(self, response: httpx.Response, scope: str) -> str:
        header = response.headers.get("www-authenticate", "")
        scheme, params = _parse_challenge(header)
        if scheme == "basic":
            if self._cred is None:
                raise self._error(f"{self.registry} requires a username and password ({self._credential_hint()})")
            return _authorization(self._cred)
        if scheme != "bearer" or "realm" not in params:
            raise self._error(f"{self.registry}: unsupported authentication challenge {header!r}")
        if self._cred is not None and self._cred.kind == "bearer":
            return _authorization(self._cred)  # a pre-issued registry token, sent as it is
        return f"Bearer {self._token(params, scope)}"

    def _token(self, params: dict[str, str], scope: str) -> str:
        """A token from the challenge's realm, through the same client (same CA bundle, same retries)."""
        realm = params["realm"]
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self._error(f"{self.registry}: token realm {redact_url(realm)!r} is not an http(s) URL")
        query = {"service": params["service"]} if params.get("service") else {}
        query["scope"] = scope
        url = str(httpx.URL(realm).copy_merge_params(query))
        cred = self._cred
        if cred is not None and parts.scheme != "https" and parts.hostname.lower() != _hostname(self.registry):
            log.warning("%s: token realm %s is plain http on another host; asking it for an anonymous token "
                        "rather than sending credentials there", self.registry, redact_url(realm))
            cred = None
        realm_origin = _origin(url)

        def choose(target: str) -> tuple[str, dict[str, str]]:
            if cred is not None and _origin(target) == realm_origin:
                return target, {"Authorization": _authorization(cred)}
            return target, {}

        shown = redact_url(realm)
        try:
            r = send(self._client, "GET", url, authenticate=choose)
        except RedirectError as exc:
            raise self._error(f"{self.registry}: token request: {exc}") from None
        except httpx.TransportError as exc:
            raise self._transport_failure(exc, "GET", shown) from None
        if is_transient_status(r.status_code):
            raise Transient(f"token request to {shown}: HTTP {r.status_code}")
        if r.status_code != 200:
            hint = "credentials were refused" if cred is not None else f"no credentials ({self._credential_hint()})"
            raise self._error(f"{self.registry}: token request to {shown} failed with HTTP {r.status_code}: {hint}")
        try:
            body = r.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise self._error(f"{self.registry}: token response from {shown} has no token")
        self.auth.remember(token)
        return token

    # -- one exchange, and the retry policy around it -----------------------------------------
    def _transport_failure(self, exc: httpx.TransportError, method: str, shown: str) -> Exception:
        """A certificate failure is final and gets its own message; anything else is worth a retry."""
        bad_cert = certificate_error(exc)
        if bad_cert is not None:
            reason = getattr(bad_cert, "verify_message", "") or str(bad_cert)
            return self._error(f"{self.registry}: certificate verification failed ({reason}) for {shown}; "
                               "trust the CA that signed it with --ca-bundle FILE (or tls-ca-bundle in the pixi "
                               "config)")
        hint = ""
        if self.scheme == "http" and isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
            hint = f" (if it serves TLS, write https://{self.registry}/…)"
        return Transient(f"{method} {shown}: {type(exc).__name__}: {exc}{hint}")

    def _send(self, method: str, url: str, *, scope: str, content: Callable[[], object] | None = None,
              headers: dict[str, str] | None = None, stream: bool = False) -> httpx.Response:
        """Send once; on a 401 authenticate for `scope` and resend once (bodies are re-created).
        Transport errors, 5xx and 429 raise `Transient`; other answers are returned."""
        url = urljoin(self.base + "/", url)
        shown = redact_url(url)
        base_origin = _origin(self.base)
        for attempt in (0, 1):
            with self._lock:
                auth = self._auth.get(scope)

            def choose(target: str) -> tuple[str, dict[str, str]]:
                # the registry's token goes to the registry only, never to where it redirects blobs
                same = auth is not None and _origin(target) == base_origin
                return target, ({"Authorization": auth} if same else {})

            try:
                response = send(self._client, method, url, authenticate=choose, headers=headers, content=content,
                                stream=stream)
            except RedirectError as exc:
                raise self._error(f"{self.registry}: {exc}") from None
            except httpx.TransportError as exc:
                raise self._transport_failure(exc, method, shown) from None
            if response.status_code == 401 and not attempt:
                response.read()
                response.close()
                value = self._authorize(response, scope)
                with self._lock:
                    self._auth[scope] = value
                continue
            if is_transient_status(response.status_code):
                detail = self._detail(response)
                raise Transient(f"{method} {shown}: HTTP {response.status_code} {detail}".rstrip())
            return response
        raise AssertionError("unreachable")

    def _retrying(self, what: str, attempt: Callable[[], T]) -> T:
        """`attempt` under the shared retry policy; giving up is one line naming `what`."""
        def on_retry(exc: Transient, n: int, delay: float) -> None:
            log.info("%s: %s; retry %d/%d in %.2fs", what, self._redact(str(exc)), n, self.retry.retries, delay)

        try:
            return self.retry.run(attempt, on_retry=on_retry, wait=self._stop.wait)
        except GaveUp as exc:
            raise self._error(f"{what}: {exc.last} (gave up after {exc.attempts} attempts)") from None
        except Interrupted:
            raise self._error(f"{what}: interrupted") from None

    def _request(self, what: str, method: str, url: str, *, scope: str, content: Callable[[], object] | None = None,
                 headers: dict[str, str] | None = None, stream: bool = False) -> httpx.Response:
        """An idempotent request with retries."""
        return self._retrying(what, lambda: self._send(method, url, scope=scope, content=content, headers=headers,
                                                       stream=stream))

    @staticmethod
    def _scope(repository: str, actions: str) -> str:
        return f"repository:{repository}:{actions}"

    @staticmethod
    def _detail(response: httpx.Response) -> str:
        try:
            return " ".join(response.read().decode(errors="replace")[:300].split())
        except httpx.HTTPError:
            return ""
        finally:
            response.close()

    def _fail(self, response: httpx.Response, what: str) -> BuildError:
        detail = self._detail(response)
        hint = ""
        if response.status_code in (401, 403):
            hint = ("; credentials were refused" if self._cred is not None
                    else f"; no credentials for {self.registry} ({self._credential_hint()})")
        elif self.scheme == "http" and response.status_code == 400 and (not detail or "HTTPS server" in detail):
            # what a TLS server answers to plain http (a HEAD answer has no body to say so)
            hint = f" (if it serves TLS, write https://{self.registry}/…)"
        if response.status_code == 404:
            return NotFound(self._redact(f"{what}: HTTP 404 {detail}"))
        return self._error(f"{what}: HTTP {response.status_code} {detail}{hint}")

    # -- pull ---------------------------------------------------------------------------------
    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """(manifest bytes, media type); verified against `reference` when it is a digest."""
        what = f"{self.registry}/{repository}:{reference}: manifest"
        r = self._request(what, "GET", f"/v2/{repository}/manifests/{reference}",
                          scope=self._scope(repository, "pull"), headers={"Accept": MANIFEST_ACCEPT})
        if r.status_code != 200:
            raise self._fail(r, what)
        data = r.content
        if reference.startswith("sha256:") and sha256_digest(data) != reference:
            raise self._error(f"{self.registry}/{repository}@{reference}: manifest digest mismatch")
        try:
            media_type = r.headers.get("content-type", "").split(";")[0] or json.loads(data).get("mediaType", "")
        except (ValueError, AttributeError):
            raise self._error(f"{what}: not JSON") from None
        return data, media_type

    def iter_blob(self, repository: str, digest: str) -> Iterator[bytes]:
        """The blob's bytes as they arrive. A transient failure midway resumes with a Range request (or,
        if the registry ignores it, restarts and skips what was already yielded), under the retry policy."""
        what = f"{self.registry}/{repository}: blob {digest}"
        scope = self._scope(repository, "pull")
        got = failures = 0
        while True:
            try:
                headers = {"Range": f"bytes={got}-"} if got else None
                r = self._send("GET", f"/v2/{repository}/blobs/{digest}", scope=scope, headers=headers, stream=True)
                try:
                    skip = 0
                    if r.status_code == 206 and got:
                        start = (r.headers.get("content-range") or "").removeprefix("bytes ").split("-")[0]
                        if start != str(got):
                            raise Transient(f"registry resumed at byte {start or '?'}, expected {got}")
                    elif r.status_code == 200:
                        skip = got
                    else:
                        raise self._fail(r, what)
                    for chunk in r.iter_bytes():  # as received: a cut keeps what arrived
                        if skip:
                            dropped = min(skip, len(chunk))
                            chunk, skip = chunk[dropped:], skip - dropped
                        if chunk:
                            got += len(chunk)
                            yield chunk
                    return
                except httpx.TransportError as exc:
                    raise Transient(f"{type(exc).__name__} after {got} bytes: {exc}") from None
                finally:
                    r.close()
            except Transient as exc:
                failures += 1
                try:
                    self.retry.pause(exc, failures, wait=self._stop.wait, on_retry=lambda e, n, d: log.info(
                        "%s: %s; retry %d/%d in %.2fs", what, self._redact(str(e)), n, self.retry.retries, d))
                except GaveUp as gave_up:
                    raise self._error(f"{what}: {gave_up.last} (gave up after {gave_up.attempts} attempts)") \
                        from None
                except Interrupted:
                    raise self._error(f"{what}: interrupted") from None

    # -- push ---------------------------------------------------------------------------------
    def blob_exists(self, repository: str, digest: str) -> bool:
        what = f"{self.registry}/{repository}: HEAD blob {digest}"
        r = self._request(what, "HEAD", f"/v2/{repository}/blobs/{digest}", scope=self._scope(repository, "pull,push"))
        r.close()
        if r.status_code == 200:
            return True
        if r.status_code == 404:
            return False
        raise self._fail(r, what)

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Cross-repository mount; True when the registry mounted it (201)."""
        scope = f"{self._scope(repository, 'pull,push')} {self._scope(source, 'pull')}"
        what = f"{self.registry}/{repository}: mount {digest} from {source}"

        def attempt() -> bool:
            r = self._send("POST", f"/v2/{repository}/blobs/uploads/?" + urlencode({"mount": digest, "from": source}),
                           scope=scope, headers={"Content-Length": "0"})
            r.close()
            if r.status_code == 201:
                return True
            if r.status_code == 202:  # fallback upload session: cancel it, we start our own
                location = r.headers.get("location")
                if location:
                    try:
                        self._send("DELETE", location, scope=scope).close()
                    except Transient:
                        pass  # an abandoned session expires on its own
                return False
            raise self._fail(r, what)

        return self._retrying(what, attempt)

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        return location + ("&" if "?" in location else "?") + "digest=" + quote(digest)

    def upload_blob(self, repository: str, path: Path, digest: str) -> None:
        """Upload `path` (monolithic, or chunked when chunk_size is set); streams from disk. A transient
        failure anywhere starts a new upload session (POST) and sends the blob again."""
        what = f"{self.registry}/{repository}: upload {digest}"
        self._retrying(what, lambda: self._upload_once(repository, path, digest, what))

    def _upload_once(self, repository: str, path: Path, digest: str, what: str) -> None:
        scope = self._scope(repository, "pull,push")
        size = path.stat().st_size
        r = self._send("POST", f"/v2/{repository}/blobs/uploads/", scope=scope, headers={"Content-Length": "0"})
        r.close()
        if r.status_code != 202 or "location" not in r.headers:
            raise self._fail(r, f"{what}: start upload")
        location = r.headers["location"]
        if self.chunk_size and size > self.chunk_size:
            with open(path, "rb") as f:
                start = 0
                while start < size:
                    f.seek(start)
                    chunk = f.read(self.chunk_size)
                    end = start + len(chunk) - 1
                    r = self._send("PATCH", location, scope=scope, content=lambda c=chunk: c,
                                   headers={"Content-Type": "application/octet-stream",
                                            "Content-Range": f"{start}-{end}", "Content-Length": str(len(chunk))})
                    r.close()
                    if r.status_code != 202:
                        raise self._fail(r, f"{what}: PATCH")
                    location = r.headers.get("location", location)
                    start = end + 1
            r = self._send("PUT", self._with_digest(location, digest), scope=scope, headers={"Content-Length": "0"})
        else:
            def body() -> Iterator[bytes]:
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        yield chunk
            r = self._send("PUT", self._with_digest(location, digest), scope=scope, content=body,
                           headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        r.close()
        if r.status_code != 201:
            raise self._fail(r, what)

    def find_manifest(self, repository: str, reference: str) -> tuple[bytes, str] | None:
        """Like `get_manifest`, but None when the registry has no such manifest (404)."""
        what = f"{self.registry}/{repository}:{reference}: manifest"
        r = self._request(what, "GET", f"/v2/{repository}/manifests/{reference}",
                          scope=self._scope(repository, "pull"), headers={"Accept": MANIFEST_ACCEPT})
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise self._fail(r, what)
        return r.content, r.headers.get("content-type", "").split(";")[0]

    def get_referrers(self, repository: str, digest: str) -> list[dict] | None:
        """The OCI 1.1 referrers API's list for `digest`; None when the registry has no such API."""
        what = f"{self.registry}/{repository}: referrers of {digest}"
        r = self._request(what, "GET", f"/v2/{repository}/referrers/{digest}",
                          scope=self._scope(repository, "pull"), headers={"Accept": MEDIA_TYPE_INDEX})
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise self._fail(r, what)
        try:
            return list(json.loads(r.content).get("manifests") or [])
        except (ValueError, AttributeError):
            raise self._error(f"{what}: not an image index") from None

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str,
                     response_headers: dict[str, str] | None = None) -> str:
        """PUT a manifest (image or index) under a tag or its digest; returns the digest the registry
        computed. `response_headers` receives the answer's headers (e.g. `OCI-Subject`, lower case)."""
        what = f"{self.registry}/{repository}:{reference}: manifest PUT"
        r = self._request(what, "PUT", f"/v2/{repository}/manifests/{reference}",
                          scope=self._scope(repository, "pull,push"), content=lambda: data,
                          headers={"Content-Type": media_type})
        r.close()
        if r.status_code not in (200, 201):
            raise self._fail(r, what)
        if response_headers is not None:
            response_headers.update({k.lower(): v for k, v in r.headers.items()})
        return r.headers.get("docker-content-digest", sha256_digest(data))


def connect(ref: Reference, net: NetConfig | None = None, *, auth: AuthStore | None = None,
            chunk_size: int | None = None) -> RegistryClient:
    """The client for `ref`'s registry, reached the way `ref` says (see the module docstring)."""
    return RegistryClient(ref.registry, net, auth=auth, scheme=ref.scheme, chunk_size=chunk_size)
