"""What a conda package's location says about it: name/version/build from the archive file name,
subdir and channel from the URL, noarch/arch/platform from the subdir — derived exactly the way
rattler_lock fills fields a lock leaves out, so both readers agree on every record."""

from __future__ import annotations

import re

from pixibuild.conda.platforms import SUBDIRS

ARCHIVE_EXTENSIONS = (".conda", ".tar.bz2")

PARSEABLE_SUBDIRS = frozenset(SUBDIRS)


def split_archive_name(file_name: str) -> tuple[str, str, str] | None:
    """(name, version, build) of `name-version-build.conda|.tar.bz2`, or None if it is not one."""
    for ext in ARCHIVE_EXTENSIONS:
        if file_name.endswith(ext):
            stem = file_name[: -len(ext)]
            parts = stem.rsplit("-", 2)
            if len(parts) != 3 or not all(parts):
                return None
            return parts[0], parts[1], parts[2]
    return None


_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+)://([^/?#]*)([^?#]*)")


def is_url(location: str) -> bool:
    """True for `scheme://...` locations (rattler's UrlOrPath::Url); paths incl. `C:\\x` are not."""
    return _URL.match(location) is not None


def _url_parts(location: str) -> tuple[str, str, str] | None:
    """(scheme, host, path) of a URL, without query or fragment; None for a path."""
    match = _URL.match(location)
    return match.groups() if match else None  # type: ignore[return-value]


def location_file_name(location: str) -> str | None:
    """Last path component of a URL or path (no query/fragment), or None for a bare directory."""
    parts = _url_parts(location)
    path = parts[2] if parts else location.replace("\\", "/")
    name = path.rsplit("/", 1)[-1]
    return name or None


def subdir_from_url(location: str) -> str | None:
    """`.../<subdir>/<archive>` → subdir, for http(s)/file URLs whose subdir is a known platform."""
    parts = _url_parts(location)
    if parts is None or parts[0] not in ("http", "https", "file"):
        return None
    head, _, archive = parts[2].rpartition("/")
    subdir = head.rpartition("/")[2]
    if not head or split_archive_name(archive) is None:
        return None
    return subdir if subdir in PARSEABLE_SUBDIRS else None


def channel_from_url(location: str) -> str | None:
    """The channel URL: everything before `<subdir>/<file>`, with a trailing slash (rattler's ChannelUrl)."""
    parts = _url_parts(location)
    if parts is None:
        return None
    scheme, host, path = parts
    segments = path.split("/")
    base = "/".join(segments[:-2]) if len(segments) > 2 else ""
    return f"{scheme}://{host}{base}/"


def build_number_from_build(build: str) -> int | None:
    """The trailing digits of a build string (`py313h_1` → 1), rattler's fallback build number."""
    digits = ""
    for char in reversed(build):
        if not ("0" <= char <= "9"):
            break
        digits = char + digits
    return int(digits) if digits else None


def noarch_from(subdir: str, build: str) -> str | None:
    """Noarch type guessed from a `noarch` subdir: "python" when the build mentions py, else generic."""
    if subdir != "noarch":
        return None
    return "python" if "py" in build else "generic"
