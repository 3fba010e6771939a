"""Read a `pixi.lock` (format versions 1–7) into typed records per environment and platform.

Why not rattler: the library must not depend on it (it is our test oracle). Fields a lock leaves
out are derived the way rattler_lock does (see `condafilename`), so both readers give the same
records; `tests/test_lockfile_rattler.py` checks that on every lock of the real-world corpus.

YAML is read as plain strings — by `simpleyaml` (pixi's block style, fast) or else PyYAML's
*base* loader (the C one when available): a version `1.10` never turns into the float 1.1; the
few integer and boolean fields are converted here, by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from itertools import repeat
from operator import attrgetter
from typing import Any, Iterable, TypeVar

from pixibuild.conda.filename import (build_number_from_build, channel_from_url, is_url, location_file_name,
                                      noarch_from, split_archive_name, subdir_from_url)
from pixibuild.conda.platforms import arch_and_platform
from pixibuild.inputs import DEFAULT_ENVIRONMENT, simpleyaml
from pixibuild.errors import InputError
from pixibuild.conda.records import CondaRecord, PypiRecord

SUPPORTED_VERSIONS = range(1, 8)

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_INT_FIELDS = ("size", "legacy_bz2_size")
# Fields of a conda package entry that are consumed into CondaRecord attributes (not `extra`).
_CONDA_CORE = frozenset({"name", "version", "build", "build_number", "subdir", "noarch", "depends",
                         "constrains", "sha256", "md5", "size", "timestamp", "license", "channel",
                         "file_name", "conda", "conda_source", "kind", "url"})
# conda-lock (v1–v3) bookkeeping, not package metadata.
_CONDA_LOCK_ONLY = frozenset({"manager", "platform", "category", "optional", "hash", "dependencies",
                              "source"})
_PYPI_ARCHIVES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar.xz")
_R = TypeVar("_R")
_BY_URL = attrgetter("url")
_BY_LOCATION = attrgetter("location")
_PYPI_CORE = frozenset({"name", "version", "pypi", "kind", "url", "path", "sha256", "md5", "hash",
                        "requires_dist", "requires_python", "editable", "dependencies"})


@dataclass(frozen=True)
class LockPlatform:
    """A platform of a v7 lock (name may be custom, e.g. `linux-64-cuda`, mapped to a conda subdir)."""

    name: str
    subdir: str
    virtual_packages: tuple[str, ...] = ()


@dataclass
class LockEnvironment:
    """One environment of a lock: its channels and, per platform, the pinned packages.

    Packages are ordered by location (URL or path), as rattler_lock hands them out."""

    name: str
    channels: list[str]
    platforms: list[str]
    lock_path: Path
    platform_subdirs: dict[str, str] = field(default_factory=dict)
    pypi_indexes: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    _conda: dict[str, list[CondaRecord]] = field(default_factory=dict, repr=False)
    _pypi: dict[str, list[PypiRecord]] = field(default_factory=dict, repr=False)

    def _check_platform(self, platform: str) -> None:
        if platform not in self._conda:
            known = ", ".join(self.platforms) or "none"
            raise InputError(f"environment {self.name!r} has no platform {platform!r} (lock has: {known})",
                             path=self.lock_path, field="platform")

    def conda_packages(self, platform: str) -> list[CondaRecord]:
        """The conda packages (binary and source) locked for `platform`, ordered by location."""
        self._check_platform(platform)
        return list(self._conda[platform])

    def pypi_packages(self, platform: str) -> list[PypiRecord]:
        """The PyPI distributions locked for `platform`, ordered by location."""
        self._check_platform(platform)
        return list(self._pypi[platform])

    def subdir(self, platform: str) -> str:
        """The conda subdir a (possibly custom-named) platform installs packages for."""
        self._check_platform(platform)
        return self.platform_subdirs.get(platform, platform)


@dataclass
class LockFile:
    """A parsed lock: format version, environments by name, and declared platforms (v7)."""

    path: Path
    version: int
    environments: dict[str, LockEnvironment]
    platforms: dict[str, LockPlatform] = field(default_factory=dict)

    def environment(self, name: str) -> LockEnvironment:
        """The environment called `name`; an InputError listing the existing ones otherwise."""
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments)) or "none"
            raise InputError(f"no environment {name!r} in lock (lock has: {known})",
                             path=self.path, field="environment") from None


# --------------------------------------------------------------------------------------------
# scalar helpers (all YAML scalars arrive as strings)


class _Ctx:
    """Where we are in the lock, so every error names the file and the field; and what the parse
    has learnt about package locations so far."""

    def __init__(self, path: Path):
        self.path = path
        self.locations = _Locations()

    def error(self, message: str, field: str | None = None) -> InputError:
        return InputError(message, path=self.path, field=field)


def _opt(value: Any) -> Any:
    return None if isinstance(value, str) and value in _NULLS else value


def _int(ctx: _Ctx, value: Any, what: str) -> int | None:
    value = _opt(value)
    if value is None:
        return None
    try:
        return int(value, 0) if isinstance(value, str) and value[:2].lower() in ("0x", "0o") else int(value)
    except (TypeError, ValueError):
        raise ctx.error(f"expected an integer, got {value!r}", what) from None


def _bool(ctx: _Ctx, value: Any, what: str) -> bool:
    value = _opt(value)
    if value is None or value in _FALSE:
        return False
    if value in _TRUE:
        return True
    raise ctx.error(f"expected true or false, got {value!r}", what)


def _str(ctx: _Ctx, value: Any, what: str) -> str | None:
    value = _opt(value)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ctx.error(f"expected a string, got {type(value).__name__}", what)
    return value


def _str_list(ctx: _Ctx, value: Any, what: str) -> tuple[str, ...]:
    value = _opt(value)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ctx.error("expected a list of strings", what)
    return tuple(value)


def _mapping(ctx: _Ctx, value: Any, what: str) -> dict:
    value = _opt(value)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.error(f"expected a mapping, got {type(value).__name__}", what)
    return value


def _timestamp_ms(ctx: _Ctx, value: Any, what: str) -> int | None:
    return _ms(_int(ctx, value, what))


def _ms(ts: int | None) -> int | None:
    """Milliseconds; locks may hold seconds (rattler: values up to year 9999 in seconds are seconds)."""
    if ts is None:
        return None
    return ts if ts > 253_402_300_799 else ts * 1000


# Per-package field readers for the hot loop: the common case (a plain string from the YAML) is
# decided inline, the label for an error (`package <location>.<field>`) is only formatted for the
# general helpers above, which also decide every unusual case exactly as before.


def _field_str(ctx: _Ctx, value: Any, location: str, key: str) -> str | None:
    if value.__class__ is str:
        return None if value in _NULLS else value
    if value is None:
        return None
    return _str(ctx, value, f"package {location}.{key}")


def _field_int(ctx: _Ctx, value: Any, location: str, key: str) -> int | None:
    if value is None:
        return None
    if value.__class__ is str and value.isdecimal():  # int() takes every Unicode decimal digit
        return int(value)
    return _int(ctx, value, f"package {location}.{key}")


def _field_str_list(ctx: _Ctx, value: Any, location: str, key: str) -> tuple[str, ...]:
    if value.__class__ is list and all(map(isinstance, value, repeat(str, len(value)))):
        return tuple(value)
    return _str_list(ctx, value, f"package {location}.{key}")


def _new_record(cls: type[_R], **fields: Any) -> _R:
    """`cls(**fields)` for a frozen dataclass given every field, without its generated `__init__`:
    that one sets each of the ~20 fields through `object.__setattr__`, several µs per record, a
    tenth of reading a large lock. Equal to the constructed record (tests/test_lockfile.py)."""
    record = object.__new__(cls)
    record.__dict__.update(fields)
    return record


class _Locations:
    """What a package location says (file name, name-version-build, subdir, channel, is it a URL),
    remembered per channel directory: the thousands of packages of a lock live in a handful of
    `<channel>/<subdir>/` directories and each derivation is a regex match."""

    def __init__(self) -> None:
        self._directories: dict[str, tuple[str | None, str | None]] = {}

    def facts(self, location: str) -> tuple[str, tuple[str, str, str] | None, str | None, str | None, bool]:
        """(file name, split archive name, subdir, channel, is a URL) of `location`."""
        directory, _, file_name = location.rpartition("/")
        # Only for `http(s)://host/<path>/<archive>` without query or fragment: there the subdir
        # (given a valid archive name) and the channel depend on the directory alone.
        if file_name and location.startswith(("https://", "http://")) and directory.count("/") >= 3 \
                and "?" not in location and "#" not in location:
            parts = split_archive_name(file_name)
            if parts is not None:
                known = self._directories.get(directory)
                if known is None:
                    known = self._directories[directory] = (subdir_from_url(location), channel_from_url(location))
                return file_name, parts, known[0], known[1], True
        file_name = location_file_name(location) or ""
        return (file_name, split_archive_name(file_name), subdir_from_url(location), channel_from_url(location),
                is_url(location))


def _noarch(ctx: _Ctx, value: Any, what: str) -> str | None:
    value = _opt(value)
    if value is None or value in _FALSE:
        return None
    if value in _TRUE or value == "generic":
        return "generic"
    if value == "python":
        return "python"
    raise ctx.error(f"unknown noarch type {value!r}", what)


def _convert_extra(ctx: _Ctx, key: str, value: Any, what: str) -> Any:
    if key in _INT_FIELDS:
        return _int(ctx, value, f"{what}.{key}")
    return _opt(value)


# --------------------------------------------------------------------------------------------
# conda records


def _conda_record(ctx: _Ctx, entry: dict, location: str, *, version_format: int, is_source: bool = False,
                  source_name: str | None = None) -> CondaRecord:
    """One conda package entry → CondaRecord, filling missing fields from the location the way
    rattler_lock does for that lock format version (noarch is only guessed from v6 on).

    Runs once per package of a multi-megabyte lock, so field labels for errors are only formatted
    when an error is raised (see `_field`)."""
    file_name, parts, d_subdir, d_channel, location_is_url = ctx.locations.facts(location)
    d_name, d_version, d_build = parts if parts else (None, None, None)
    get = entry.get

    name = _field_str(ctx, get("name"), location, "name") or source_name or d_name
    version = _field_str(ctx, get("version"), location, "version") or d_version
    if name is None:
        raise ctx.error("missing field `name`", f"package {location}")
    if version is None:
        if not is_source:
            raise ctx.error("missing field `version`", f"package {location}")
        version = ""  # a partial v7 source record: known only after building it
    build = _field_str(ctx, get("build"), location, "build") or d_build or ""
    build_number = _field_int(ctx, get("build_number"), location, "build_number")
    if build_number is None:
        build_number = build_number_from_build(build) or 0
    subdir = _field_str(ctx, get("subdir"), location, "subdir") or d_subdir
    if subdir is None and is_source:
        variants = get("variants")
        subdir = variants.get("target_platform") if isinstance(variants, dict) else None
        subdir = _opt(subdir) or ""
    if subdir is None:
        if version_format >= 6:
            raise ctx.error("missing field `subdir`", f"package {location}")
        subdir = ""  # v4/v5: rattler defaults it to empty
    noarch_value = get("noarch")
    if noarch_value is not None and _opt(noarch_value) is not None:
        noarch = _noarch(ctx, noarch_value, f"package {location}.noarch")
    elif version_format >= 6 or version_format <= 3:
        noarch = noarch_from(d_subdir or subdir, d_build or build)
    else:
        noarch = None

    if is_source or (parts is None and version_format >= 6):  # v6+: not an archive → a source package
        is_source = True
        file_name = ""
        channel = None
    else:
        file_name = _field_str(ctx, get("file_name"), location, "file_name") or file_name or \
            f"{name}-{version}-{build}.conda"
        if "channel" in entry:
            channel = _field_str(ctx, entry["channel"], location, "channel")
        else:
            channel = d_channel

    extra: dict[str, Any] = {}
    for key, value in entry.items():
        if key in _CONDA_CORE:
            continue
        if key in _INT_FIELDS:
            extra[key] = _field_int(ctx, value, location, key)
        else:
            extra[key] = None if value.__class__ is str and value in _NULLS else value
    # arch/platform: v6+ always derive them from the subdir; v4/v5 keep what the lock says;
    # v1-v3 derive from the URL's subdir (set up by `_v3_conda`).
    arch, platform = arch_and_platform(subdir)
    if version_format >= 6:
        extra["arch"], extra["platform"] = arch, platform
    elif version_format >= 4:
        extra["arch"] = extra.get("arch") or arch
        extra["platform"] = extra.get("platform") or platform
    for key in ("arch", "platform"):
        if extra.get(key) is None:
            extra.pop(key, None)

    return _new_record(
        CondaRecord,
        url=location,
        file_name=file_name,
        subdir=subdir,
        name=name,
        version=version,
        build=build,
        build_number=build_number,
        depends=_field_str_list(ctx, get("depends"), location, "depends"),
        constrains=_field_str_list(ctx, get("constrains"), location, "constrains"),
        sha256=_field_str(ctx, get("sha256"), location, "sha256"),
        md5=_field_str(ctx, get("md5"), location, "md5"),
        size=_field_int(ctx, get("size"), location, "size"),
        timestamp=_ms(_field_int(ctx, get("timestamp"), location, "timestamp")),
        noarch=noarch,
        license=_field_str(ctx, get("license"), location, "license"),
        channel=channel,
        is_path=not location_is_url,
        is_source=is_source,
        extra=extra,
    )


def _pypi_record(ctx: _Ctx, entry: dict, location: str, extras: Iterable[str] = ()) -> PypiRecord:
    what = f"pypi package {location}"
    name = _str(ctx, entry.get("name"), f"{what}.name")
    version = _str(ctx, entry.get("version"), f"{what}.version")
    if name is None:
        raise ctx.error("missing field `name`", what)
    if version is None:
        version = ""  # a source tree whose version is only known after building it (v7)
    hashes = _mapping(ctx, entry.get("hash"), f"{what}.hash")
    requires = entry.get("requires_dist", entry.get("dependencies"))
    if isinstance(requires, dict):  # conda-lock v1–v3: {name: specifier}
        requires = [f"{k}{'' if _opt(v) in (None, '*') else v}" for k, v in requires.items()]
    extra = {k: _opt(v) for k, v in entry.items() if k not in _PYPI_CORE}
    extras = tuple(sorted(extras))
    if extras:
        extra["extras"] = list(extras)
    sha256 = _str(ctx, entry.get("sha256", hashes.get("sha256")), f"{what}.sha256")
    md5 = _str(ctx, entry.get("md5", hashes.get("md5")), f"{what}.md5")
    is_path = not is_url(location)
    if is_path and not (location_file_name(location) or "").endswith(_PYPI_ARCHIVES):
        # A source directory: its lock hash covers the tree's metadata, not a file we could
        # verify, so (like rattler) it is not the distribution's hash.
        if sha256:
            extra["source_tree_sha256"] = sha256
        sha256 = md5 = None
    return PypiRecord(
        name=name,
        version=version,
        location=location,
        sha256=sha256,
        md5=md5,
        requires_dist=_str_list(ctx, requires, f"{what}.requires_dist"),
        requires_python=_str(ctx, entry.get("requires_python"), f"{what}.requires_python"),
        editable=_bool(ctx, entry.get("editable"), f"{what}.editable"),
        is_path=is_path,
        extra=extra,
    )


# --------------------------------------------------------------------------------------------
# format versions


def _channels(ctx: _Ctx, value: Any, what: str) -> list[str]:
    channels = []
    for item in value or []:
        if isinstance(item, dict):
            url = _str(ctx, item.get("url"), f"{what}.url")
        else:
            url = _str(ctx, item, what)
        if not url:
            raise ctx.error("channel without url", what)
        channels.append(url)
    return channels


def _parse_v3(ctx: _Ctx, doc: dict, version: int) -> tuple[dict[str, LockEnvironment], dict]:
    """conda-lock style (v1–v3): one environment, a flat `package:` list tagged by platform/manager."""
    metadata = _mapping(ctx, doc.get("metadata"), "metadata")
    packages = doc.get("package")
    if not isinstance(packages, list):
        raise ctx.error("missing or invalid `package` list", "package")
    conda: dict[str, list[CondaRecord]] = {}
    pypi: dict[str, list[PypiRecord]] = {}
    seen: dict[str, set[str]] = {}
    for index, entry in enumerate(packages):
        what = f"package[{index}]"
        if not isinstance(entry, dict):
            raise ctx.error("expected a mapping", what)
        platform = _str(ctx, entry.get("platform"), f"{what}.platform")
        manager = _str(ctx, entry.get("manager"), f"{what}.manager")
        url = _str(ctx, entry.get("url"), f"{what}.url")
        if not platform or not url:
            raise ctx.error("missing `platform` or `url`", what)
        conda.setdefault(platform, [])
        pypi.setdefault(platform, [])
        if url in seen.setdefault(platform, set()):
            continue
        seen[platform].add(url)
        if manager == "conda":
            conda[platform].append(_v3_conda(ctx, entry, url, platform, version))
        elif manager in ("pip", "pypi"):
            pypi[platform].append(_pypi_record(ctx, entry, url))
        else:
            raise ctx.error(f"unknown package manager {manager!r}", f"{what}.manager")
    for platform in conda:
        conda[platform].sort(key=lambda r: r.url)
        pypi[platform].sort(key=lambda r: r.location)
    platforms = sorted(conda)
    env = LockEnvironment(
        name=DEFAULT_ENVIRONMENT, channels=_channels(ctx, metadata.get("channels"), "metadata.channels"),
        platforms=platforms, lock_path=ctx.path, _conda=conda, _pypi=pypi)
    return {DEFAULT_ENVIRONMENT: env}, {}


def _map_dependency(name: str, spec: Any) -> str:
    """conda-lock's `{name: spec}` dependency → `name spec` as rattler prints the MatchSpec:
    an empty spec leaves the name alone, and a bare version followed by a build string is exact (`==`)."""
    parts = (_opt(spec) or "").split()
    if not parts:
        return name
    version, build = parts[0], parts[1:]
    if build and not any(c in version for c in "<>=!~*,|"):
        version = "==" + version
    return " ".join([name, version, *build])


def _v3_conda(ctx: _Ctx, entry: dict, url: str, platform: str, version: int) -> CondaRecord:
    what = f"package {url}"
    hashes = _mapping(ctx, entry.get("hash"), f"{what}.hash")
    deps = entry.get("dependencies")
    if isinstance(deps, dict):  # {name: "version [build]"}, written back as rattler's MatchSpec text
        deps = [_map_dependency(k, v) for k, v in deps.items()]
    fixed = dict(entry)
    fixed["depends"] = deps or []
    fixed["sha256"] = hashes.get("sha256")
    fixed["md5"] = hashes.get("md5")
    fixed["subdir"] = _str(ctx, entry.get("subdir"), f"{what}.subdir") or subdir_from_url(url) or platform
    for key in _CONDA_LOCK_ONLY:
        fixed.pop(key, None)
    # arch/platform follow the URL's subdir (a noarch package has no platform) unless given
    arch, platform_field = arch_and_platform(subdir_from_url(url) or fixed["subdir"])
    fixed["platform"] = platform_field
    if _opt(fixed.get("arch")) is None:
        fixed["arch"] = arch
    record = _conda_record(ctx, fixed, url, version_format=version)
    if split_archive_name(location_file_name(url) or "") is None:
        # rattler names such a v3 package `name-version-build.conda` and treats it as binary
        record = replace(record, file_name=f"{record.name}-{record.version}-{record.build}.conda")
    return record


def _parse_v4_plus(ctx: _Ctx, doc: dict, version: int) -> tuple[dict[str, LockEnvironment], dict]:
    """`environments:` + `packages:` (v4/v5 `kind:` tagged, v6 `conda:`/`pypi:`, v7 adds
    `conda_source:` ids and a top-level `platforms:` list with custom names)."""
    platforms: dict[str, LockPlatform] = {}
    if version >= 7 and doc.get("platforms") is not None:
        for index, item in enumerate(doc.get("platforms") or []):
            what = f"platforms[{index}]"
            item = _mapping(ctx, item, what)
            name = _str(ctx, item.get("name"), f"{what}.name")
            if not name:
                raise ctx.error("missing platform name", what)
            if name in platforms:
                raise ctx.error(f"duplicate platform name {name!r}", what)
            subdir = _str(ctx, item.get("subdir"), f"{what}.subdir") or name
            platforms[name] = LockPlatform(name, subdir, _str_list(
                ctx, item.get("virtual-packages"), f"{what}.virtual-packages"))
    elif "platforms" in doc and version < 7:
        raise ctx.error(f"`platforms` is not supported in lock version {version}", "platforms")

    environments_raw = doc.get("environments")
    if not isinstance(environments_raw, dict):
        raise ctx.error("missing or invalid `environments` mapping", "environments")
    packages_raw = doc.get("packages")
    if packages_raw is None:
        packages_raw = []
    if not isinstance(packages_raw, list):
        raise ctx.error("expected a list", "packages")

    # Index the package entries: (kind, id) → [entry, ...]; records are built lazily, once.
    index: dict[tuple[str, str], list[dict]] = {}
    for i, entry in enumerate(packages_raw):
        if not isinstance(entry, dict):
            raise ctx.error("expected a mapping", f"packages[{i}]")
        key = _package_key(ctx, entry, version, i)
        if key in index:
            index[key].append(entry)
        else:
            index[key] = [entry]

    conda_cache: dict[int, CondaRecord] = {}
    pypi_cache: dict[tuple[int, tuple[str, ...]], PypiRecord] = {}
    envs: dict[str, LockEnvironment] = {}
    for env_name in sorted(environments_raw):
        env_raw = _mapping(ctx, environments_raw[env_name], f"environments.{env_name}")
        what_env = f"environments.{env_name}"
        conda: dict[str, list[CondaRecord]] = {}
        pypi: dict[str, list[PypiRecord]] = {}
        pkgs_by_platform = _mapping(ctx, env_raw.get("packages"), f"{what_env}.packages")
        for platform, selectors in pkgs_by_platform.items():
            what = f"{what_env}.packages.{platform}"
            if platforms and platform not in platforms:
                raise ctx.error(f"platform {platform!r} is not declared in the top-level `platforms`", what)
            subdir = platforms[platform].subdir if platform in platforms else platform
            conda[platform] = []
            pypi[platform] = []
            for j, selector in enumerate(selectors or []):
                if not isinstance(selector, dict):
                    raise ctx.error("expected a mapping", f"{what}[{j}]")
                kind, ident = key = _selector_key(ctx, selector, what, j)
                candidates = index.get(key)
                if not candidates:
                    raise ctx.error(f"refers to a package that is not in `packages`: {ident}", f"{what}[{j}]")
                if kind == "pypi":
                    entry = candidates[0]
                    extras = _str_list(ctx, selector.get("extras"), f"{what}[{j}].extras")
                    key = (id(entry), tuple(sorted(extras)))
                    if key not in pypi_cache:
                        pypi_cache[key] = _pypi_record(ctx, entry, ident, extras)
                    pypi[platform].append(pypi_cache[key])
                else:
                    entry = _pick_conda(candidates, selector, subdir, kind)
                    if entry is None:
                        raise ctx.error(f"refers to a package that is not in `packages`: {ident}",
                                        f"{what}[{j}]")
                    if id(entry) not in conda_cache:
                        conda_cache[id(entry)] = _entry_record(ctx, entry, kind, ident, version)
                    conda[platform].append(conda_cache[id(entry)])
            # rattler hands packages out ordered by location; so do we (pixi writes them so too).
            conda[platform].sort(key=_BY_URL)
            pypi[platform].sort(key=_BY_LOCATION)
        indexes = {k: env_raw[k] for k in ("indexes", "find-links") if k in env_raw}
        envs[env_name] = LockEnvironment(
            name=env_name,
            channels=_channels(ctx, env_raw.get("channels"), f"{what_env}.channels"),
            platforms=list(conda),
            lock_path=ctx.path,
            platform_subdirs={p: (platforms[p].subdir if p in platforms else p) for p in conda},
            pypi_indexes=indexes,
            options=_mapping(ctx, env_raw.get("options"), f"{what_env}.options"),
            _conda=conda,
            _pypi=pypi,
        )
    return envs, platforms


def _package_key(ctx: _Ctx, entry: dict, version: int, i: int) -> tuple[str, str]:
    """(kind, id) of `packages[i]`: kind conda|conda_source|pypi, id the location (or v7 id)."""
    what = f"packages[{i}]"
    if version <= 5:
        kind = _str(ctx, entry.get("kind"), f"{what}.kind")
        if kind == "conda":
            url = _str(ctx, entry.get("url"), f"{what}.url")
            if not url:
                raise ctx.error("missing field `url`", what)
            return "conda", url
        if kind in ("pypi", "pip"):
            loc = _str(ctx, entry.get("url"), f"{what}.url") or _str(ctx, entry.get("path"), f"{what}.path")
            if not loc:
                raise ctx.error("missing field `url` or `path`", what)
            return "pypi", loc
        raise ctx.error(f"unknown package kind {kind!r}", f"{what}.kind")
    return _tagged_key(ctx, entry, what, "package entry", allow_source=version >= 7)


def _selector_key(ctx: _Ctx, selector: dict, what: str, j: int) -> tuple[str, str]:
    """(kind, id) of the `j`th package reference of an environment's platform list `what`."""
    return _tagged_key(ctx, selector, (what, j), "package reference", allow_source=True)


def _tagged_key(ctx: _Ctx, entry: dict, what: str | tuple[str, int], noun: str, *,
                allow_source: bool) -> tuple[str, str]:
    """The first of `conda:`, `conda_source:`, `pypi:` in `entry` (a v6+ package entry or a
    reference to one). `what` is the label for errors, or (list label, index) to format lazily."""
    for kind in ("conda", "conda_source", "pypi"):
        if kind not in entry:
            continue
        ident = entry[kind]
        if ident.__class__ is not str or ident in _NULLS:  # not a plain string, or empty
            label = what if isinstance(what, str) else f"{what[0]}[{what[1]}]"
            ident = _str(ctx, ident, f"{label}.{kind}")
            if not ident:
                raise ctx.error(f"empty `{kind}`", label)
        if kind == "conda_source" and not allow_source:
            break
        return kind, ident
    label = what if isinstance(what, str) else f"{what[0]}[{what[1]}]"
    raise ctx.error(f"{noun} has none of `conda`, `conda_source`, `pypi`", label)


def _pick_conda(candidates: list[dict], selector: dict, subdir: str, kind: str) -> dict | None:
    """Several entries may share a location (v6 source packages, one per variant/platform):
    pick the one the selector's name/version/build/subdir fields (or the platform) agree with."""
    if len(candidates) == 1 or kind == "conda_source":
        return candidates[0]
    has_fields = any(_opt(selector.get(k)) is not None for k in ("name", "version", "build", "subdir"))
    for entry in candidates if has_fields else ():
        location = entry.get("conda") or entry.get("url") or ""
        parts = split_archive_name(location_file_name(location) or "")
        derived = {"name": None, "version": parts[1] if parts else None,
                   "build": parts[2] if parts else None, "subdir": subdir_from_url(location)}
        ok = True
        for key in ("name", "version", "build", "subdir"):
            want = _opt(selector.get(key))
            if want is None:
                continue
            have = _opt(entry.get(key)) or derived[key]
            if key == "name" and have is None:
                continue
            if have != want:
                ok = False
                break
        if ok:
            return entry
    # No selector fields: binary packages match their platform's subdir or noarch.
    for entry in candidates:
        have = _opt(entry.get("subdir")) or subdir_from_url(entry.get("conda") or entry.get("url") or "")
        if have in (subdir, "noarch"):
            return entry
    return None


def _entry_record(ctx: _Ctx, entry: dict, kind: str, ident: str, version: int) -> CondaRecord:
    if kind == "conda_source":
        name, _, location = ident.partition(" @ ")
        name = name.split("[", 1)[0]
        return _conda_record(ctx, entry, location or ident, version_format=version, is_source=True,
                             source_name=name)
    return _conda_record(ctx, entry, ident, version_format=version)


# --------------------------------------------------------------------------------------------


def parse_lock(text: str, path: str | Path = "pixi.lock") -> LockFile:
    """Parse lock text; `path` is only used in error messages and as `LockFile.path`."""
    path = Path(path)
    ctx = _Ctx(path)
    try:
        doc = simpleyaml.load(text)  # pixi's plain block YAML, fast
    except simpleyaml.Unsupported:
        doc = _load_yaml(ctx, text)
    return _from_document(ctx, doc, path)


def _load_yaml(ctx: _Ctx, text: str) -> Any:
    # PyYAML is only for locks the fast reader declines (15 ms to import: not on every plan's path)
    import yaml

    try:  # libyaml: several times faster on multi-megabyte locks
        from yaml import CBaseLoader as loader
    except ImportError:  # pragma: no cover - pure-Python fallback
        from yaml import BaseLoader as loader  # type: ignore[assignment]
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - base loader builds no objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ctx.error(f"invalid YAML{where}: {problem}", "yaml") from None


def _from_document(ctx: _Ctx, doc: Any, path: Path) -> LockFile:
    if not isinstance(doc, dict):
        raise ctx.error("not a lock file (expected a YAML mapping at the top level)", "version")
    raw_version = doc.get("version")
    if raw_version is None:
        raise ctx.error("missing `version` field", "version")
    try:
        version = int(raw_version)
    except (TypeError, ValueError):
        raise ctx.error(f"`version` is not an integer: {raw_version!r}", "version") from None
    if version not in SUPPORTED_VERSIONS:
        raise ctx.error(f"unsupported lock file version {version} (pixibuild reads versions "
                        f"{SUPPORTED_VERSIONS.start}-{SUPPORTED_VERSIONS.stop - 1})", "version")
    if version <= 3:
        environments, platforms = _parse_v3(ctx, doc, version)
    else:
        environments, platforms = _parse_v4_plus(ctx, doc, version)
    return LockFile(path=path, version=version, environments=environments, platforms=platforms)


def read_lock(path: str | Path) -> LockFile:
    """Read and parse a `pixi.lock`; every problem is an InputError naming the file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("lock file not found (run `pixi lock` first)", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read lock file: {exc}", path=path) from None
    return parse_lock(text, path)

