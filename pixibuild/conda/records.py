"""Typed records for what a lock pins: the interface between the lock reader and every later node.

A record is immutable and carries every field the lock had, so index/archive nodes can reproduce
the lock's repodata (patches included) and content keys can hash it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from pixibuild.files.digest import json_digest


@dataclass(frozen=True)
class CondaRecord:
    """One conda package as pinned by a lock (or injected), in rattler's PackageRecord terms.

    `url` is the location exactly as the lock gives it: an http(s) or file:// URL, or a path
    relative to the lock's directory (then `is_path` is true). `extra` holds every other field the
    lock carries (license_family, track_features, purls, features, arch, platform, ...), verbatim.
    """

    url: str
    file_name: str
    subdir: str
    name: str
    version: str
    build: str
    build_number: int
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    timestamp: int | None = None
    """Milliseconds since the epoch, as repodata stores it."""
    noarch: str | None = None
    """"python", "generic" or None."""
    license: str | None = None
    channel: str | None = None
    is_path: bool = False
    is_source: bool = False
    """A `conda_source:`/source package: built from a recipe, not downloadable as-is."""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=True, hash=False)

    @property
    def dist_name(self) -> str:
        """`name-version-build`, the conda-meta and cache naming convention."""
        return f"{self.name}-{self.version}-{self.build}"

    @property
    def archive_type(self) -> str:
        """".conda" or ".tar.bz2", from the file name."""
        return ".conda" if self.file_name.endswith(".conda") else ".tar.bz2"


@dataclass(frozen=True)
class PypiRecord:
    """One PyPI distribution pinned by a lock: a wheel/sdist URL, or a local path (maybe editable)."""

    name: str
    version: str
    location: str
    """URL or path (relative to the lock's directory) exactly as in the lock."""
    sha256: str | None = None
    md5: str | None = None
    requires_dist: tuple[str, ...] = ()
    requires_python: str | None = None
    editable: bool = False
    is_path: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict, compare=True, hash=False)

    @property
    def file_name(self) -> str:
        """Last path component of the location (a wheel file name for wheels)."""
        return self.location.rstrip("/").rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0]

    @property
    def is_wheel(self) -> bool:
        return self.file_name.endswith(".whl")


def record_digest(record: CondaRecord | PypiRecord) -> str:
    """sha256 of every field of a record, canonically serialised: the content key of anything
    built from it (a repodata patch changes it; re-ordering a lock does not)."""
    fields = dataclasses.asdict(record)
    fields["__type__"] = type(record).__name__
    return json_digest(fields)
