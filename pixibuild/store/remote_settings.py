"""Where the remote cache is and how it is reached: `--remote-cache URL` / `--remote-cache-mode`, else
`$PIXIBUILD_REMOTE_CACHE` / `$PIXIBUILD_REMOTE_CACHE_MODE`, else `[tool.pixibuild.cache] remote` / `mode`;
and the network settings its requests use (the user's TLS and credentials, short timeouts, few retries)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from pixibuild.errors import InputError

if TYPE_CHECKING:
    from pixibuild.net.config import NetConfig

MODES = ("read", "readwrite")
ENV_URL = "PIXIBUILD_REMOTE_CACHE"
ENV_MODE = "PIXIBUILD_REMOTE_CACHE_MODE"
ENV_TIMEOUT = "PIXIBUILD_REMOTE_CACHE_TIMEOUT"
OFF = ("", "none", "off")


@dataclass(frozen=True)
class RemoteSettings:
    """Where the cache lives and whether this run may write to it."""

    url: str
    """As the user wrote it (no credentials: registry credentials come from docker's config, env, the auth file)."""
    registry: str
    repository: str
    scheme: str | None
    """"https"/"http" when written; None for `oci://` (https, plain http for a loopback registry)."""
    mode: str = "readwrite"

    @property
    def writable(self) -> bool:
        return self.mode == "readwrite"


def parse_remote(url: str, mode: str = "readwrite", *, where: str = "--remote-cache") -> RemoteSettings | None:
    """`oci://HOST[:PORT]/REPO`, `https://HOST/REPO` or `http://HOST/REPO` (None for "", `none`, `off`)."""
    from pixibuild.net.registry import parse_reference

    text = url.strip()
    if text.lower() in OFF:
        return None
    if mode not in MODES:
        raise InputError(f"unknown remote cache mode {mode!r} (read or readwrite)", field=f"{where}-mode"
                         if where.startswith("--") else where)
    scheme = None
    rest = text
    if text.startswith("oci://"):
        rest = text[len("oci://"):]
    elif text.startswith(("https://", "http://")):
        scheme, rest = text.split("://", 1)
    else:
        raise InputError(f"{text!r} is not a remote cache URL: write oci://HOST/REPOSITORY (https, plain http for "
                         "localhost), https://HOST/REPOSITORY or http://HOST/REPOSITORY", field=where)
    rest = rest.rstrip("/")
    host, _, repository = rest.partition("/")
    if not repository or "@" in rest or ":" in repository:
        raise InputError(f"{text!r}: a remote cache is HOST/REPOSITORY, without a tag or digest", field=where)
    try:
        ref = parse_reference(f"{scheme}://{rest}" if scheme else f"https://{rest}")
    except InputError:
        raise InputError(f"{text!r}: not a valid registry repository (lower-case names, host[:port]/path)",
                         field=where) from None
    return RemoteSettings(text, ref.registry, ref.repository, scheme, mode)


def resolve_settings(*, flag: str | None = None, flag_mode: str | None = None, manifest: str | None = None,
                     manifest_mode: str | None = None, manifest_where: str = "tool.pixibuild.cache",
                     environ: Mapping[str, str] | None = None) -> RemoteSettings | None:
    """The remote cache of a run: `--remote-cache` (and `--remote-cache-mode`), else `$PIXIBUILD_REMOTE_CACHE`
    (`$PIXIBUILD_REMOTE_CACHE_MODE`), else the manifest's `[tool.pixibuild.cache] remote` (`mode`). A mode
    given on a higher level also applies to a URL from a lower one (a CI job can force `read`)."""
    env = os.environ if environ is None else environ
    mode = flag_mode or env.get(ENV_MODE) or manifest_mode or "readwrite"
    where_mode = "--remote-cache-mode" if flag_mode else ENV_MODE if env.get(ENV_MODE) else f"{manifest_where}.mode"
    if mode not in MODES:
        raise InputError(f"unknown remote cache mode {mode!r} (read or readwrite)", field=where_mode)
    if flag is not None:
        return parse_remote(flag, mode, where="--remote-cache")
    if env.get(ENV_URL) is not None:
        return parse_remote(env[ENV_URL], mode, where=ENV_URL)
    if manifest:
        return parse_remote(manifest, mode, where=f"{manifest_where}.remote")
    return None


def cache_net(net: "NetConfig") -> "NetConfig":
    """The network settings for cache requests: the user's TLS, CA bundle and credentials, but short
    timeouts and few retries (`$PIXIBUILD_REMOTE_CACHE_TIMEOUT` seconds per read, default 20)."""
    try:
        timeout = float(os.environ.get(ENV_TIMEOUT) or 20)
    except ValueError:
        raise InputError(f"not a number of seconds: {os.environ.get(ENV_TIMEOUT)!r}", field=ENV_TIMEOUT) from None
    return dataclasses.replace(net, read_timeout=timeout, connect_timeout=min(net.connect_timeout, timeout, 5.0),
                               retries=min(net.retries, 2), backoff=min(net.backoff, 0.25),
                               max_backoff=min(net.max_backoff, 1.0))
