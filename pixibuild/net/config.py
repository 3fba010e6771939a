"""Network settings from pixi's configuration files: mirrors, download concurrency, TLS and auth file.

Read the same files pixi reads (later ones override earlier ones):
`/etc/pixi/config.toml`, `$XDG_CONFIG_HOME/pixi/config.toml` (or `~/.config/pixi/config.toml`),
`$PIXI_HOME/config.toml` (or `~/.pixi/config.toml`), `<project>/.pixi/config.toml`.

Keys used: `[mirrors]` (`"https://conda.anaconda.org/conda-forge" = ["https://m1/cf", "https://m2/cf"]`,
a URL-prefix rewrite, mirrors tried in order), `[concurrency] downloads`, `authentication-override-file`,
`tls-no-verify`, the pixibuild extension `tls-ca-bundle` (a PEM file of extra trusted CAs), and
`[pypi-config] index-url / extra-index-urls` (where isolated PyPI build environments come from when the
lock names no index), and `[proxy-config] https / http / non-proxy-hosts` (rattler's proxy settings:
when a config gives a proxy, it replaces the `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` environment variables).

TLS verification is always on unless the *caller* passes `allow_tls_no_verify=True` (the CLI's explicit
`--tls-no-verify`): a config file alone cannot silently turn it off.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

import certifi

from pixibuild.errors import InputError
from pixibuild.net.auth import storage_key

# tomli, not the stdlib tomllib: pixi's TOML may be TOML 1.1 (inline tables over several lines), which
# tomli (>= 2.3) reads and Python 3.11's tomllib refuses (inputs/manifest.py reads manifests the same way)
import tomli as tomllib

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 16
"""Parallel downloads when the config says nothing: enough to hide latency to a CDN, few enough not to
trip rate limits (pixi's own default is 50 for a single client; we usually run beside other nodes)."""


def default_config_files(project_root: Path | None = None) -> list[Path]:
    """pixi's config locations, lowest priority first (missing files are skipped by `load`)."""
    home = Path.home()
    files = [Path("/etc/pixi/config.toml")]
    xdg = os.environ.get("XDG_CONFIG_HOME")
    files.append(Path(xdg) / "pixi" / "config.toml" if xdg else home / ".config" / "pixi" / "config.toml")
    pixi_home = os.environ.get("PIXI_HOME")
    files.append(Path(pixi_home) / "config.toml" if pixi_home else home / ".pixi" / "config.toml")
    if project_root is not None:
        files.append(Path(project_root) / ".pixi" / "config.toml")
    return files


def _shown(path: Path) -> str:
    """`path` with the home directory written as ~ (shorter, and the same for every user)."""
    try:
        return "~/" + path.relative_to(Path.home()).as_posix()
    except ValueError:
        return str(path)


def mirror_prefix(url: str) -> str:
    """The URL prefix a `[mirrors]` entry for `url` would name: the channel of a conda archive
    (`https://host/channel` for `…/channel/<subdir>/<file>.conda`), else the server."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/").split("/")
    if parts.path.endswith((".conda", ".tar.bz2")) and len(path) > 3:
        return f"{parts.scheme}://{parts.netloc}{'/'.join(path[:-2])}"
    return f"{parts.scheme}://{parts.netloc}"


def mirror_hint(url: str) -> str:
    """What a user can do when `url` cannot be reached: check the network, or name a mirror in pixi's config."""
    system, user, pixi_home = default_config_files()
    prefix = mirror_prefix(storage_key(url))
    return (f"check the network, or download from a mirror: add [mirrors] \"{prefix}\" = [\"https://<mirror>/…\"] to "
            f"pixi's config, {_shown(user)} (pixi also reads {_shown(system)}, {_shown(pixi_home)} and the project's "
            f".pixi/config.toml), or to a file given with -c")


def _get(table: Mapping[str, Any], *names: str) -> Any:
    """pixi accepts kebab-case and (older) snake_case keys."""
    for name in names:
        if name in table:
            return table[name]
    return None


@dataclass(frozen=True)
class NetConfig:
    """Everything the fetcher needs to know about the network, independent of where it came from."""

    mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    concurrency: int | None = None
    ca_bundle: Path | None = None
    tls_verify: bool = True
    auth_file: Path | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 4
    """Extra attempts per URL after the first, on connection errors, 5xx/429 and truncated bodies."""
    backoff: float = 0.5
    """First retry delay in seconds; doubles each attempt (capped at `max_backoff`)."""
    max_backoff: float = 8.0
    sources: tuple[Path, ...] = ()
    pypi_index_url: str | None = None
    """`[pypi-config] index-url`: the index for isolated wheel-build environments when the lock has none."""
    pypi_extra_index_urls: tuple[str, ...] = ()
    proxies: Mapping[str, str] = field(default_factory=dict)
    """`[proxy-config]`: URL scheme ("https", "http") → proxy URL. Empty: the environment's proxies."""
    non_proxy_hosts: tuple[str, ...] = ()
    """`[proxy-config] non-proxy-hosts`: host names (`*.internal.example` for subdomains) reached directly."""

    @property
    def downloads(self) -> int:
        return self.concurrency or DEFAULT_CONCURRENCY

    def mirror_urls(self, url: str) -> list[str]:
        """URLs to try for `url`, in order: the longest matching mirror prefix's mirrors, else `url`."""
        best = None
        for prefix in self.mirrors:
            norm = prefix.rstrip("/") + "/"
            if url.startswith(norm) and (best is None or len(norm) > len(best[0])):
                best = (norm, prefix)
        if best is None:
            return [url]
        rest = url[len(best[0]):]
        return [m.rstrip("/") + "/" + rest for m in self.mirrors[best[1]]] or [url]

    def ssl_verify(self) -> ssl.SSLContext | bool:
        """What httpx gets as `verify`: a context with the CA bundle added, True, or False (explicit only)."""
        if not self.tls_verify:
            return False
        if self.ca_bundle is None:
            return True
        # httpx's own default trust store (certifi); the bundle is added to it, not replacing it
        ctx = ssl.create_default_context(cafile=certifi.where())
        try:
            ctx.load_verify_locations(cafile=str(self.ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise InputError(f"cannot load CA bundle: {exc}", path=self.ca_bundle) from None
        return ctx

    @classmethod
    def load(cls, files: Iterable[str | Path] | None = None, *, project_root: Path | None = None,
             ca_bundle: str | Path | None = None, auth_file: str | Path | None = None,
             concurrency: int | None = None, allow_tls_no_verify: bool = False,
             **overrides: Any) -> "NetConfig":
        """Merge config files (default: pixi's locations) then explicit arguments (the CLI's flags)."""
        paths = [Path(p) for p in files] if files is not None else default_config_files(project_root)
        merged: dict[str, Any] = {"mirrors": {}}
        sources = []
        for path in paths:
            if not path.is_file():
                if files is not None:
                    raise InputError("config file not found", path=path)
                continue
            sources.append(path)
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise InputError(f"cannot parse pixi config: {exc}", path=path) from None
            _merge(merged, data, path)
        tls_no_verify = merged.get("tls_no_verify", False)
        if tls_no_verify and not allow_tls_no_verify:
            raise InputError("tls-no-verify = true is refused: TLS verification can only be disabled with "
                             "the explicit --tls-no-verify flag", path=merged["tls_no_verify_source"],
                             field="tls-no-verify")
        if allow_tls_no_verify:
            log.warning("TLS certificate verification is DISABLED (--tls-no-verify)")
        ca = Path(ca_bundle) if ca_bundle else merged.get("ca_bundle")
        if ca is None and os.environ.get("PIXIBUILD_CA_BUNDLE"):
            ca = Path(os.environ["PIXIBUILD_CA_BUNDLE"])
        if ca is not None and not Path(ca).is_file():
            raise InputError("CA bundle not found", path=ca)
        conc = concurrency or merged.get("concurrency")
        if conc is not None and (not isinstance(conc, int) or conc < 1):
            raise InputError(f"must be a positive integer, got {conc!r}", field="concurrency.downloads")
        return cls(mirrors=merged["mirrors"], concurrency=conc, ca_bundle=Path(ca) if ca else None,
                   tls_verify=not allow_tls_no_verify,
                   auth_file=Path(auth_file) if auth_file else merged.get("auth_file"),
                   sources=tuple(sources), pypi_index_url=merged.get("pypi_index_url"),
                   pypi_extra_index_urls=tuple(merged.get("pypi_extra_index_urls", ())),
                   proxies=merged.get("proxies", {}), non_proxy_hosts=tuple(merged.get("non_proxy_hosts", ())),
                   **overrides)


def _merge(merged: dict[str, Any], data: Mapping[str, Any], path: Path) -> None:
    mirrors = data.get("mirrors")
    if mirrors is not None:
        if not isinstance(mirrors, Mapping):
            raise InputError("[mirrors] must be a table of URL prefix → list of mirror URLs", path=path,
                             field="mirrors")
        for prefix, urls in mirrors.items():
            if isinstance(urls, str) or not isinstance(urls, Sequence) or not all(isinstance(u, str) for u in urls):
                raise InputError("must be a list of mirror URLs", path=path, field=f"mirrors.{prefix}")
            merged["mirrors"][str(prefix)] = tuple(urls)
    concurrency = data.get("concurrency")
    if isinstance(concurrency, Mapping) and "downloads" in concurrency:
        merged["concurrency"] = concurrency["downloads"]
    value = _get(data, "tls-no-verify", "tls_no_verify")
    if value is not None:
        if not isinstance(value, bool):
            raise InputError("must be true or false", path=path, field="tls-no-verify")
        merged["tls_no_verify"] = value
        merged["tls_no_verify_source"] = path
    ca = _get(data, "tls-ca-bundle", "tls_ca_bundle")
    if ca is not None:
        merged["ca_bundle"] = (path.parent / str(ca)).resolve()
    auth = _get(data, "authentication-override-file", "authentication_override_file")
    if auth is not None:
        merged["auth_file"] = Path(str(auth)).expanduser()
    pypi = data.get("pypi-config")
    if pypi is not None:
        if not isinstance(pypi, Mapping):
            raise InputError("[pypi-config] must be a table", path=path, field="pypi-config")
        index = _get(pypi, "index-url", "index_url")
        extra = _get(pypi, "extra-index-urls", "extra_index_urls")
        if index is not None:
            if not isinstance(index, str):
                raise InputError("must be a URL string", path=path, field="pypi-config.index-url")
            merged["pypi_index_url"] = index
        if extra is not None:
            if isinstance(extra, str) or not isinstance(extra, Sequence) or not all(isinstance(u, str) for u in extra):
                raise InputError("must be a list of URLs", path=path, field="pypi-config.extra-index-urls")
            merged["pypi_extra_index_urls"] = tuple(extra)
    proxy = data.get("proxy-config", data.get("proxy_config"))
    if proxy is not None:
        _merge_proxy(merged, proxy, path)


def _merge_proxy(merged: dict[str, Any], proxy: Any, path: Path) -> None:
    """`[proxy-config]`: `https`, `http` (proxy URLs) and `non-proxy-hosts` (a list of host names)."""
    if not isinstance(proxy, Mapping):
        raise InputError("[proxy-config] must be a table", path=path, field="proxy-config")
    proxies = dict(merged.get("proxies", {}))
    for scheme in ("https", "http"):
        url = proxy.get(scheme)
        if url is None:
            continue
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https", "socks5") or not urlsplit(url).hostname:
            raise InputError(f"must be a proxy URL such as http://proxy.example:3128, got {url!r}", path=path,
                             field=f"proxy-config.{scheme}")
        proxies[scheme] = url
    merged["proxies"] = proxies
    hosts = _get(proxy, "non-proxy-hosts", "non_proxy_hosts")
    if hosts is not None:
        if isinstance(hosts, str) or not isinstance(hosts, Sequence) or not all(isinstance(h, str) and h for h in hosts):
            raise InputError("must be a list of host names", path=path, field="proxy-config.non-proxy-hosts")
        merged["non_proxy_hosts"] = tuple(hosts)
