"""Typed records for what a lock pins: the interface between the lock reader and every later node.

A record is immutable and carries every field the lock had, so index/archive nodes can reproduce
the lock's repodata (patches included) and content keys can hash it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion

from pixibuild.errors import InputError
from pixibuild.files.digest import json_digest


REPODATA_FIELDS = frozenset({"name", "version", "build", "build_number", "depends", "constrains", "subdir", "md5",
                             "sha256", "size", "timestamp", "noarch", "license"})
"""The PackageRecord fields a CondaRecord holds as attributes; the rest of an entry is `extra`."""
OMIT_WHEN_EMPTY = ("constrains", "extra_depends", "flags", "track_features")
"""Fields rattler's PackageRecord serializer drops when they are empty collections."""
NOT_PACKAGE_FIELDS = frozenset({"url", "fn", "channel", "conda", "kind", "location", "file_name", "input", "sources",
                                "package_build_source", "source", "variants"})
"""Lock fields that say where a package came from, not what it is."""


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

    @classmethod
    def from_repodata(cls, data: Mapping[str, Any], *, url: str, file_name: str, subdir: str | None = None,
                      channel: str | None = None, where: str = "repodata", **overrides: Any) -> "CondaRecord":
        """A record from a repodata.json entry or a package's info/index.json: the fields rattler's
        PackageRecord has, validated (an InputError naming `where`); every other key goes to `extra`.
        `overrides` (e.g. hashes computed from the file) win over the entry's own values."""
        data = {**data, **overrides}
        for key in ("name", "version"):
            value = data.get(key)
            if not isinstance(value, (str, int, float)) or isinstance(value, bool) or value == "":
                raise InputError(f"{where}: missing or bad {key!r}")
        for key in ("depends", "constrains"):
            value = data.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InputError(f"{where}: {key!r} must be a list of strings")
        try:
            build_number = int(data.get("build_number") or 0)
        except (TypeError, ValueError):
            raise InputError(f"{where}: 'build_number' must be an integer") from None
        noarch = data.get("noarch")
        return cls(
            url=url, file_name=file_name, subdir=str(data.get("subdir") or subdir or "noarch"),
            name=str(data["name"]), version=str(data["version"]), build=str(data.get("build") or ""),
            build_number=build_number, depends=tuple(data.get("depends") or ()),
            constrains=tuple(data.get("constrains") or ()), sha256=data.get("sha256"), md5=data.get("md5"),
            size=data.get("size"), timestamp=data.get("timestamp"),
            noarch="generic" if noarch is True else (noarch or None), license=data.get("license"),
            channel=channel, extra={k: v for k, v in data.items() if k not in REPODATA_FIELDS and v is not None},
        )

    def to_repodata(self) -> dict[str, Any]:
        """rattler's PackageRecord JSON (repodata.json, conda-meta): alphabetical keys, None omitted,
        empty constrains/extra_depends/flags/track_features omitted, track_features as one string;
        where the package came from (url, channel, file name) is not part of it."""
        fields: dict[str, Any] = {k: v for k, v in self.extra.items() if k not in NOT_PACKAGE_FIELDS}
        fields.update(
            build=self.build, build_number=self.build_number, constrains=list(self.constrains),
            depends=list(self.depends), license=self.license, md5=self.md5, name=self.name, noarch=self.noarch,
            sha256=self.sha256, size=self.size, subdir=self.subdir, timestamp=self.timestamp, version=self.version,
        )
        for key in OMIT_WHEN_EMPTY:
            if not fields.get(key):
                fields.pop(key, None)
        if isinstance(fields.get("track_features"), (list, tuple)):
            fields["track_features"] = " ".join(fields["track_features"])
        return {k: fields[k] for k in sorted(fields) if fields[k] is not None}

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

    @classmethod
    def from_wheel_file(cls, file_name: str, *, location: str | None = None, sha256: str | None = None,
                        where: str = "wheel") -> "PypiRecord":
        """A record for a wheel known only by its file name (an injected wheel, a pack's `pypi/`):
        name and version as PEP 427 and `packaging` read them; a bad name is an InputError."""
        try:
            name, version, _build, _tags = parse_wheel_filename(file_name)
        except (InvalidWheelFilename, InvalidVersion) as exc:
            raise InputError(f"{where}: not a valid wheel file name ({exc})") from None
        return cls(name=str(name), version=str(version), location=location or file_name, sha256=sha256)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def record_digest(record: CondaRecord | PypiRecord) -> str:
    """sha256 of every field of a record, canonically serialised: the content key of anything
    built from it (a repodata patch changes it; re-ordering a lock does not).

    The same JSON as `dataclasses.asdict` gives (records hold no nested dataclasses; tuples and lists
    serialise alike), without its deep copy: that copy was half the time of resolving a large lock."""
    cls = type(record)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    fields = {name: getattr(record, name) for name in names}
    fields["__type__"] = cls.__name__
    return json_digest(fields)
