"""Credentials for private channels, read the way rattler/pixi read them, and kept out of every output.

Sources, first match wins: the rattler auth-file JSON (`--auth-file` or `$RATTLER_AUTH_FILE`), credentials
embedded in the URL itself (`https://user:pass@host/...`), then `~/.netrc` (or `$NETRC`). The auth file maps a
host (or a `*.domain` wildcard) to one of::

    {"BearerToken": "..."}  {"BasicHTTP": {"username": "...", "password": "..."}}  {"CondaToken": "..."}

Credentials are looked up per request host, so a redirect to another host never carries them. Every URL
that reaches a log, an error or the store's metadata goes through `redact_url`/`storage_key` first.

Registries (`registry_credential`) look further first, the way container tools do: explicit
username/password, then `$PIXIBUILD_REGISTRY_USERNAME`/`$PIXIBUILD_REGISTRY_PASSWORD`, then `auths` in
docker's `config.json` (`$DOCKER_CONFIG`, else `~/.docker`), then the auth file / netrc entry for the host.
"""

from __future__ import annotations

import base64
import json
import logging
import netrc
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pixibuild.errors import InputError

log = logging.getLogger(__name__)

REDACTED = "********"
_CONDA_TOKEN_RE = re.compile(r"/t/[^/]+(?=/|$)")
_SENSITIVE_QUERY_KEYS = {"token", "access_token", "auth", "api_key", "apikey", "key", "password", "sig",
                         "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token"}


@dataclass(frozen=True)
class Credential:
    """One way to authenticate against a host. `repr` never shows the secret."""

    kind: Literal["bearer", "basic", "conda"]
    token: str = field(default="", repr=False)
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every string that must never appear in an output (including the encoded basic header)."""
        if self.kind == "basic":
            encoded = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return tuple(s for s in (self.password, encoded) if s)
        return (self.token,) if self.token else ()


def _parse_entry(host: str, value: object, path: Path) -> Credential:
    if isinstance(value, Mapping) and len(value) == 1:
        ((kind, payload),) = value.items()
        if kind == "BearerToken" and isinstance(payload, str):
            return Credential("bearer", token=payload)
        if kind == "CondaToken" and isinstance(payload, str):
            return Credential("conda", token=payload)
        if kind == "BasicHTTP" and isinstance(payload, Mapping) \
                and isinstance(payload.get("username"), str) and isinstance(payload.get("password"), str):
            return Credential("basic", username=payload["username"], password=payload["password"])
    # Never echo the value: it is a secret.
    raise InputError("expected {\"BearerToken\": ...}, {\"CondaToken\": ...} or "
                     "{\"BasicHTTP\": {\"username\", \"password\"}}", path=path, field=host)


def read_auth_file(path: str | Path) -> dict[str, Credential]:
    """Parse a rattler auth-file; errors name the file and host, never the secret."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read auth file: {exc.strerror}", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError("auth file is not valid JSON", path=path) from None
    if not isinstance(data, dict):
        raise InputError("auth file must be a JSON object mapping hosts to credentials", path=path)
    return {str(host): _parse_entry(str(host), value, path) for host, value in data.items()}


def _read_netrc(path: Path) -> dict[str, Credential]:
    try:
        parsed = netrc.netrc(str(path))
    except FileNotFoundError:
        return {}
    except (netrc.NetrcParseError, OSError) as exc:
        # The parse error text may quote a line holding a password: report only the location.
        lineno = getattr(exc, "lineno", None)
        log.warning("ignoring unreadable netrc file %s%s", path, f" (line {lineno})" if lineno else "")
        return {}
    out = {}
    for host, (login, _account, password) in parsed.hosts.items():
        if login or password:
            out[host] = Credential("basic", username=login or "", password=password or "")
    return out


class AuthStore:
    """Host → credential lookup (exact host, then `*.parent` wildcards like rattler), plus netrc."""

    def __init__(self, entries: Mapping[str, Credential] | None = None,
                 netrc_entries: Mapping[str, Credential] | None = None):
        self._entries = dict(entries or {})
        self._netrc = dict(netrc_entries or {})
        self._extra_secrets: set[str] = set()

    @classmethod
    def load(cls, auth_file: str | Path | None = None, *, use_env: bool = True,
             netrc_file: str | Path | None = None, use_netrc: bool = True) -> "AuthStore":
        """`auth_file` (else `$RATTLER_AUTH_FILE` when `use_env`), and `netrc_file` (else `$NETRC`/~/.netrc)."""
        if auth_file is None and use_env:
            auth_file = os.environ.get("RATTLER_AUTH_FILE") or None
        entries = read_auth_file(auth_file) if auth_file else {}
        netrc_entries: dict[str, Credential] = {}
        if use_netrc:
            if netrc_file is None:
                netrc_file = os.environ.get("NETRC") or Path.home() / ".netrc"
            netrc_entries = _read_netrc(Path(netrc_file))
        return cls(entries, netrc_entries)

    def lookup(self, host: str | None) -> Credential | None:
        """Credential for `host`: exact, then `*.a.b`, `*.b` wildcards; then netrc's exact host."""
        if not host:
            return None
        host = host.lower()
        if host in self._entries:
            return self._entries[host]
        domain = host
        while True:
            wildcard = self._entries.get(f"*.{domain}")
            if wildcard is not None:
                return wildcard
            if "." not in domain:
                break
            domain = domain.split(".", 1)[1]
        return self._netrc.get(host)

    def authenticate(self, url: str) -> tuple[str, dict[str, str]]:
        """The URL to request and the headers to send for it.

        URL userinfo is moved into a Basic header (and remembered as a secret); a conda token is put
        into the path as `/t/<token>/`; bearer and basic become an Authorization header.
        """
        parts = urlsplit(url)
        headers: dict[str, str] = {}
        host = parts.hostname
        if parts.username is not None or parts.password is not None:
            user, password = parts.username or "", parts.password or ""
            cred: Credential | None = Credential("basic", username=user, password=password)
            self._extra_secrets.update(cred.secrets)
            netloc = parts.hostname or ""
            if parts.port:
                netloc += f":{parts.port}"
            parts = parts._replace(netloc=netloc)
            url = urlunsplit(parts)
        else:
            cred = self.lookup(host)
        if cred is None:
            return url, headers
        if cred.kind == "bearer":
            headers["Authorization"] = f"Bearer {cred.token}"
        elif cred.kind == "basic":
            encoded = base64.b64encode(f"{cred.username}:{cred.password}".encode()).decode()
            headers["Authorization"] = f"Basic {encoded}"
        elif cred.kind == "conda" and not _CONDA_TOKEN_RE.search(parts.path):
            url = urlunsplit(parts._replace(path=f"/t/{cred.token}{parts.path}"))
        return url, headers

    def remember(self, *secrets: str) -> None:
        """Secrets learnt elsewhere (registry passwords, issued tokens) that `redact` must mask too."""
        self._extra_secrets.update(s for s in secrets if s)

    def secrets(self) -> list[str]:
        """All secret strings known to this store (for redaction and for tests that scan outputs)."""
        found = set(self._extra_secrets)
        for cred in (*self._entries.values(), *self._netrc.values()):
            found.update(cred.secrets)
        return sorted((s for s in found if s), key=len, reverse=True)

    def redact(self, text: str) -> str:
        """`text` with URLs redacted and every known secret replaced."""
        return redact_text(text, self.secrets())


def redact_url(url: str) -> str:
    """A URL fit for logs and errors: userinfo, `/t/<token>` and sensitive query values masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if parts.scheme not in ("http", "https", "ftp", "s3", "oci"):
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    path = _CONDA_TOKEN_RE.sub(f"/t/{REDACTED}", parts.path)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if k.lower() in _SENSITIVE_QUERY_KEYS else v) for k, v in pairs],
                          safe="*")
    return urlunsplit(parts._replace(netloc=netloc, path=path, query=query))


_PLAIN_URL = re.compile(r"https?://[a-z0-9.:\[\]-]+/[!$%&'()*+,\-./0-9:;=A-Z_a-z~]*")
"""A lower-case http(s) URL with a path and nothing to strip (no userinfo, query or fragment): its
own storage key (nearly every package URL of a lock; urlsplit + urlunsplit cost 25 µs each)."""


def storage_key(url: str) -> str:
    """The credential-free identity of a URL, for the store's metadata index.

    Userinfo and conda-token path segments are removed entirely, and the query and fragment dropped
    (signed-URL parameters are secrets and do not change what the file is).
    """
    if _PLAIN_URL.fullmatch(url) and "/t/" not in url:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ftp", "s3", "oci"):
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1].lower()
    path = _CONDA_TOKEN_RE.sub("", parts.path) or "/"
    return urlunsplit((parts.scheme.lower(), netloc, path, "", ""))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask URLs with credentials in free text, then any literal secret."""
    text = re.sub(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+", lambda m: redact_url(m.group(0)), text)
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    return text


DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")


def docker_config_file() -> Path:
    """Where docker (and podman/skopeo with docker's layout) keep `auths`: `$DOCKER_CONFIG/config.json`."""
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def _docker_config_credential(registry: str, path: Path) -> Credential | None:
    """The `auths` entry for `registry` (`auth` = base64 of user:password, or username/password keys)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"cannot read docker config: {exc.strerror}", path=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError("docker config is not valid JSON", path=path) from None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    keys = [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/",
            f"https://{registry}/v2/"]
    if registry == "registry-1.docker.io":
        keys += DOCKER_HUB_KEYS
    for key in keys:
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                sep = ""
            if not sep:  # never echo the value: it is a secret
                raise InputError("`auth` must be base64 of username:password", path=path, field=f"auths.{key}")
            return Credential("basic", username=user, password=password)
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credential("basic", username=entry["username"], password=entry["password"])
    return None


def registry_credential(registry: str, *, username: str | None = None, password: str | None = None,
                        auth: AuthStore | None = None) -> Credential | None:
    """Credentials for an OCI registry (`host[:port]`): the first source that has some, in the order the
    module docstring gives. Bearer entries of the auth file are sent as they are (a pre-issued token)."""
    if username:
        return Credential("basic", username=username, password=password or "")
    env_user = os.environ.get("PIXIBUILD_REGISTRY_USERNAME")
    if env_user:
        return Credential("basic", username=env_user, password=os.environ.get("PIXIBUILD_REGISTRY_PASSWORD", ""))
    found = _docker_config_credential(registry, docker_config_file())
    if found is not None:
        return found
    if auth is not None:
        host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
        for key in dict.fromkeys((registry, host)):
            cred = auth.lookup(key)
            if cred is not None and cred.kind in ("basic", "bearer"):
                return cred
    return None
