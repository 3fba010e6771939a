"""Where every cache lives, decided in one place: the package store root and what sits under it.

One directory holds everything a machine caches (so one flag, `--cache-dir`, or one variable,
`PIXIBUILD_CACHE_DIR`, moves all of it):

    <root>/blobs/sha256/…   verified packages and wheels (`Store`)
    <root>/index/           url → sha256 (diskcache)
    <root>/oci/             image layers by content key (`LayerCache`)
    <root>/lock-cache/      parsed locks by lock sha256
    <root>/pypi/            built wheels' keys → store blobs, git checkouts, PEP 517 build environments
"""

from __future__ import annotations

import os
from pathlib import Path


def store_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`explicit`, else `$PIXIBUILD_CACHE_DIR`, else `$XDG_CACHE_HOME/pixibuild`, else `~/.cache/pixibuild`."""
    if explicit:
        return Path(explicit)
    if os.environ.get("PIXIBUILD_CACHE_DIR"):
        return Path(os.environ["PIXIBUILD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pixibuild"


def layer_cache_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Image layers beside the packages they were built from."""
    return store_root(root) / "oci"


def lock_cache_root(root: str | os.PathLike[str] | None = None) -> Path | None:
    """Parsed locks: `$PIXIBUILD_LOCK_CACHE` (`0` turns it off), else under the store root."""
    value = os.environ.get("PIXIBUILD_LOCK_CACHE")
    if value == "0":
        return None
    if value:
        return Path(value)
    return store_root(root) / "lock-cache"


def pypi_root(root: str | os.PathLike[str] | None = None) -> Path:
    """What building PyPI sources keeps: `wheels/` (wheel key → built wheel, whose bytes are a store
    blob), `git/` (checkouts by commit), `envs/` (build environments)."""
    return store_root(root) / "pypi"
