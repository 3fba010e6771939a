"""Which locked PyPI entries are sources to build, and where their source comes from.

A lock pins a PyPI distribution either as a wheel (shipped as it is) or as something that needs a
PEP 517 build first: a local directory (`pypi: ./` or `./libs/common`, editable or not), an sdist
(an index URL or a local `.tar.gz`/`.zip`), or a git URL pinned to a commit
(`git+https://host/repo?rev=v1&subdirectory=pkg#<sha>`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from pixibuild.conda.records import PypiRecord
from pixibuild.errors import InputError

SDIST_SUFFIXES = (".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar.xz")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class TreeSource:
    """A source directory on this machine (the project itself, a sub-package)."""

    path: Path


@dataclass(frozen=True)
class SdistSource:
    """A source archive: fetched and verified like a wheel (its record), then unpacked and built."""

    record: PypiRecord


@dataclass(frozen=True)
class GitSource:
    """A git repository at a locked commit; `subdirectory` is where the project sits in it."""

    url: str
    """The repository URL as git takes it (no `git+`, query or fragment)."""
    commit: str
    rev: str | None = None
    subdirectory: str = ""


Source = TreeSource | SdistSource | GitSource


def _where(record: PypiRecord) -> str:
    return f"pypi package {record.name} ({record.location})"


def parse_git_url(location: str, *, where: str = "git URL") -> GitSource:
    """`git+<url>[?rev=…][&subdirectory=…]#<40-hex commit>` (pixi's lock form), or `git+<url>@<rev>#…`."""
    parts = urlsplit(location[len("git+"):] if location.startswith("git+") else location)
    commit = parts.fragment.strip().lower()
    query = parse_qs(parts.query)
    path, rev = parts.path, (query.get("rev") or query.get("tag") or query.get("branch") or [None])[0]
    if "@" in path.rsplit("/", 1)[-1]:  # pip's `repo.git@rev` spelling (older locks pin `@<commit>` so)
        path, _, at_rev = path.rpartition("@")
        rev = rev or at_rev
        if not commit and _COMMIT_RE.match(at_rev.lower()):
            commit = at_rev.lower()
    if not _COMMIT_RE.match(commit):
        raise InputError(f"a git source must be pinned to a full commit hash after '#', got {parts.fragment!r}",
                         field=where)
    subdirectory = unquote((query.get("subdirectory") or [""])[0]).strip("/")
    if ".." in Path(subdirectory).parts or subdirectory.startswith("/"):
        raise InputError(f"subdirectory {subdirectory!r} must stay inside the repository", field=where)
    url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    return GitSource(url=url, commit=commit, rev=rev, subdirectory=subdirectory)


def source_of(record: PypiRecord, lock_dir: Path) -> Source | None:
    """Where `record`'s source comes from, or None for a wheel (nothing to build)."""
    location = record.location
    if record.is_wheel and not record.editable:
        return None
    if location.startswith("git+"):
        return parse_git_url(location, where=_where(record))
    scheme = urlsplit(location).scheme
    if scheme == "file":
        # decoded once (url2pathname on top of unquote decoded `%2520` to a space); urllib.request,
        # which holds url2pathname, also costs 15 ms to import in every planning process
        path = Path(unquote(urlsplit(location).path))
    elif record.is_path:
        path = Path(location)
        path = path if path.is_absolute() else lock_dir / path
    elif scheme in ("http", "https"):
        if record.file_name.endswith(SDIST_SUFFIXES):
            return SdistSource(record)
        raise InputError("is neither a wheel nor a source archive (.tar.gz/.zip) nor a git URL", field=_where(record))
    else:
        raise InputError(f"unsupported URL scheme {scheme!r}", field=_where(record))
    if path.name.endswith(SDIST_SUFFIXES) and not path.is_dir():
        return SdistSource(record)
    if record.is_wheel:  # an editable wheel: there is nothing to build, ship it as it is
        return None
    if not path.is_dir():
        raise InputError(f"source directory {path} does not exist", field=_where(record))
    return TreeSource(path.resolve())


def needs_build(record: PypiRecord, lock_dir: Path) -> bool:
    return source_of(record, lock_dir) is not None
