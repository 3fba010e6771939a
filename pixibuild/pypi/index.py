"""Which PyPI index an isolated build environment installs its build requirements from, and the pip
process environment that says so.

The index is the one the lock was resolved against (its `indexes:`), else pixi's config
`[pypi-config] index-url`/`extra-index-urls`, else https://pypi.org/simple; pixi's `[mirrors]`
rewrite it; credentials come from the same auth file / netrc as channel downloads and reach pip only
through its environment (never a command line, a log or an error). pip's own configuration files
and `PIP_*` variables are ignored: pixi's settings decide, as they do for `pixi install`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import quote, urlsplit, urlunsplit

import certifi

from pixibuild.net.auth import AuthStore, redact_url
from pixibuild.net.config import NetConfig

DEFAULT_INDEX = "https://pypi.org/simple"


@dataclass(frozen=True)
class IndexConfig:
    """Index URLs in priority order (the first is pip's index-url), credential-free."""

    urls: tuple[str, ...]

    @property
    def identity(self) -> list[str]:
        """What a build environment's key holds (no credentials)."""
        return [redact_url(u) for u in self.urls]

    def describe(self) -> str:
        return ", ".join(redact_url(u) for u in self.urls)


def index_config(lock_indexes: Sequence[str], net: NetConfig | None) -> IndexConfig:
    """The lock's indexes, else `[pypi-config]`, else PyPI; each rewritten by pixi's mirrors."""
    net = net or NetConfig()
    urls = list(lock_indexes)
    if not urls and net.pypi_index_url:
        urls = [net.pypi_index_url, *net.pypi_extra_index_urls]
    elif not urls:
        urls = [DEFAULT_INDEX, *net.pypi_extra_index_urls]
    out: list[str] = []
    for url in urls:
        for mirrored in net.mirror_urls(url.rstrip("/")):
            if mirrored not in out:
                out.append(mirrored)
    return IndexConfig(tuple(out))


def _with_credentials(url: str, auth: AuthStore) -> str:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return url
    credential = auth.lookup(parts.hostname)
    if credential is None:
        return url
    if credential.kind == "basic":
        user, password = credential.username, credential.password
    elif credential.kind == "bearer":  # pip speaks basic auth only: a token as the password works for most indexes
        user, password = "__token__", credential.token
    else:
        return url
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    return urlunsplit(parts._replace(netloc=netloc))


def combined_ca_bundle(net: NetConfig, directory: Path) -> Path | None:
    """pip's --cert replaces its trust store: give it certifi's plus the configured extra CAs."""
    if net.ca_bundle is None:
        return None
    path = directory / "ca-bundle.pem"
    path.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + Path(net.ca_bundle).read_bytes())
    return path


def pip_environment(index: IndexConfig, net: NetConfig | None, *, cache_dir: Path, work_dir: Path,
                    auth: AuthStore | None = None) -> dict[str, str]:
    """The environment of a `pip install` into a build environment."""
    net = net or NetConfig()
    auth = auth if auth is not None else AuthStore.load(net.auth_file)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "PYTHON")) and k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    urls = [_with_credentials(u, auth) for u in index.urls]
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               PIP_INDEX_URL=urls[0], PIP_CACHE_DIR=str(cache_dir), PIP_RETRIES=str(net.retries),
               PIP_TIMEOUT=str(int(net.read_timeout)))
    if urls[1:]:
        env["PIP_EXTRA_INDEX_URL"] = " ".join(urls[1:])
    bundle = combined_ca_bundle(net, work_dir)
    if bundle is not None:
        env["PIP_CERT"] = str(bundle)
    return env
