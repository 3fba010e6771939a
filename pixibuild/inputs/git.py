"""The git state of a project directory, for the image's `org.opencontainers.image.source` and
`.revision` annotations: only a clean checkout names a revision (a dirty tree is not that commit)."""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GitState:
    revision: str
    """The commit checked out (HEAD)."""
    source: str | None
    """The `origin` remote's URL without credentials, if there is one."""


def _git(root: Path, *args: str) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        out = subprocess.run([git, "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def strip_credentials(url: str) -> str:
    """`https://user:token@host/x` → `https://host/x`; scp-like `git@host:x` stays (no secret in it)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def git_state(manifest: Path) -> GitState | None:
    """HEAD and origin of the checkout holding the project of `manifest`, or None when the manifest
    is not tracked in a git checkout or the project directory has changes (tracked, or untracked
    and not ignored)."""
    project_dir = manifest.parent
    if _git(project_dir, "rev-parse", "--is-inside-work-tree") != "true":
        return None
    if not _git(project_dir, "ls-files", "--", manifest.name):
        return None  # an ignored or new project: no commit holds it
    status = _git(project_dir, "status", "--porcelain", "--", ".")
    revision = _git(project_dir, "rev-parse", "HEAD")
    if status is None or revision is None:
        return None
    if status:
        log.info("%s: uncommitted changes, so the image gets no revision/source annotations", project_dir)
        return None
    origin = _git(project_dir, "remote", "get-url", "origin")
    return GitState(revision=revision, source=strip_credentials(origin) if origin else None)
