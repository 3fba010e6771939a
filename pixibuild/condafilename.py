"""What a conda package's location says about it: name/version/build from the archive file name,
subdir and channel from the URL, noarch/arch/platform from the subdir — derived exactly the way
rattler_lock fills fields a lock leaves out, so both readers agree on every record."""

from __future__ import annotations

from urllib.parse import urlsplit

from .platforms import KNOWN_SUBDIRS

ARCHIVE_EXTENSIONS = (".conda", ".tar.bz2")

# rattler_conda_types Platform::arch() for every known subdir (noarch has none).
_ARCH = {
    "linux-32": "x86", "linux-64": "x86_64", "linux-aarch64": "aarch64", "linux-armv6l": "armv6l",
    "linux-armv7l": "armv7l", "linux-ppc64": "ppc64", "linux-ppc64le": "ppc64le",
    "linux-s390x": "s390x", "linux-riscv32": "riscv32", "linux-riscv64": "riscv64",
    "linux-loongarch64": "loongarch64",
    "osx-64": "x86_64", "osx-arm64": "arm64",
    "win-32": "x86", "win-64": "x86_64", "win-arm64": "arm64",
    "emscripten-wasm32": "wasm32", "wasi-wasm32": "wasm32", "zos-z": "z",
}
PARSEABLE_SUBDIRS = frozenset(KNOWN_SUBDIRS) | frozenset(_ARCH)


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


def is_url(location: str) -> bool:
    """True for `scheme://...` locations (rattler's UrlOrPath::Url); paths incl. `C:\\x` are not."""
    head, sep, _ = location.partition("://")
    if not sep or len(head) < 2:
        return False
    return head[0].isalpha() and all(c.isalnum() or c in "+-." for c in head)


def location_file_name(location: str) -> str | None:
    """Last path component of a URL or path (no query/fragment), or None for a bare directory."""
    if is_url(location):
        path = urlsplit(location).path
    else:
        path = location.replace("\\", "/")
    name = path.rsplit("/", 1)[-1]
    return name or None


def subdir_from_url(location: str) -> str | None:
    """`.../<subdir>/<archive>` → subdir, for http(s)/file URLs whose subdir is a known platform."""
    if not is_url(location):
        return None
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https", "file"):
        return None
    segments = parts.path.split("/")
    if len(segments) < 2 or split_archive_name(segments[-1]) is None:
        return None
    subdir = segments[-2]
    return subdir if subdir in PARSEABLE_SUBDIRS else None


def channel_from_url(location: str) -> str | None:
    """The channel URL: everything before `<subdir>/<file>`, with a trailing slash (rattler's ChannelUrl)."""
    if not is_url(location):
        return None
    parts = urlsplit(location)
    segments = parts.path.split("/")
    base = "/".join(segments[:-2]) if len(segments) > 2 else ""
    netloc = parts.netloc
    return f"{parts.scheme}://{netloc}{base}/"


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


def arch_and_platform(subdir: str) -> tuple[str | None, str | None]:
    """(arch, platform) repodata fields for a subdir, e.g. linux-64 → ("x86_64", "linux")."""
    arch = _ARCH.get(subdir)
    if arch is None:
        return None, None
    return arch, subdir.split("-", 1)[0]
