"""A git source at its locked commit, checked out into the store once per commit (a fetch-like step:
the only place a git dependency touches the network).

The commit is fetched shallow (`--depth 1`, by its hash; servers answer that for any reachable
commit with protocol v2). When the server refuses and the lock names a `rev`, that rev is fetched
shallow instead and must resolve to the locked commit. The checkout (tracked files only, no `.git`)
is written under a temp name and renamed into `<store>/pypi/git/<commit>`, so a killed fetch leaves
nothing under the final name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pixibuild.errors import BuildError, InputError
from pixibuild.files.atomic import atomic_directory
from pixibuild.net.auth import redact_url
from pixibuild.net.config import NetConfig
from pixibuild.pypi.sources import GitSource
from pixibuild.store.roots import pypi_root

GIT_TIMEOUT = 900


def checkout_dir(store_root: str | Path | None, commit: str) -> Path:
    return pypi_root(store_root) / "git" / commit


def source_dir(store_root: str | Path | None, source: GitSource) -> Path:
    """The project directory inside the checkout (the `subdirectory` of the locked URL)."""
    return checkout_dir(store_root, source.commit) / source.subdirectory if source.subdirectory \
        else checkout_dir(store_root, source.commit)


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", LC_ALL="C")
    return env


def _run(args: list[str], cwd: Path, what: str, config: list[str]) -> subprocess.CompletedProcess:
    git = shutil.which("git")
    if git is None:
        raise InputError("git is not installed, and it is needed to fetch this source", field=what)
    try:
        return subprocess.run([git, *config, *args], cwd=cwd, capture_output=True, text=True, env=_git_env(),
                              timeout=GIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BuildError(f"git {args[0]} timed out after {GIT_TIMEOUT}s", field=what) from None


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in (proc.stderr or proc.stdout or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit code {proc.returncode}"


def checkout(source: GitSource, store_root: str | Path | None, *, net: NetConfig | None = None,
             what: str | None = None) -> Path:
    """The checkout of `source.commit` in the store (fetched now if absent); returns the project dir."""
    what = what or f"git {redact_url(source.url)}#{source.commit}"
    dest = checkout_dir(store_root, source.commit)
    if not dest.is_dir():
        _fetch_into(source, dest, net or NetConfig(), what)
    project = source_dir(store_root, source)
    if not (project / "pyproject.toml").is_file() and not (project / "setup.py").is_file():
        raise InputError(f"no pyproject.toml or setup.py in {source.subdirectory or 'the repository root'} at "
                         f"commit {source.commit}", field=what)
    return project


def _fetch_into(source: GitSource, dest: Path, net: NetConfig, what: str) -> None:
    config = ["-c", "advice.detachedHead=false", "-c", "init.defaultBranch=main"]
    if net.ca_bundle:
        config += ["-c", f"http.sslCAInfo={net.ca_bundle}"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest.parent) as tmp:
        repo = Path(tmp) / "repo.git"
        init = _run(["init", "-q", "--bare", str(repo)], Path(tmp), what, config)
        if init.returncode != 0:
            raise BuildError(f"git init failed: {_last_line(init)}", field=what)
        errors = []
        fetched = False
        for url in net.mirror_urls(source.url):
            proc = _run(["fetch", "-q", "--depth", "1", "--no-tags", url, source.commit], repo, what, config)
            if proc.returncode == 0:
                fetched = True
                break
            errors.append(f"{redact_url(url)}: {_last_line(proc)}")
            if source.rev:
                proc = _run(["fetch", "-q", "--depth", "1", "--no-tags", url, source.rev], repo, what, config)
                if proc.returncode == 0:
                    head = _run(["rev-parse", "FETCH_HEAD"], repo, what, config).stdout.strip()
                    if head != source.commit:
                        raise InputError(f"rev {source.rev!r} is at commit {head}, but the lock pins "
                                         f"{source.commit} (run `pixi lock` again)", field=what)
                    fetched = True
                    break
                errors.append(f"{redact_url(url)} rev {source.rev}: {_last_line(proc)}")
        if not fetched:
            raise BuildError(f"cannot fetch commit {source.commit}: " + "; ".join(errors), field=what)
        kind = _run(["cat-file", "-t", source.commit], repo, what, config).stdout.strip()
        if kind != "commit":
            raise InputError(f"{source.commit} is not a commit in the repository", field=what)
        with atomic_directory(dest, keep_existing=True) as staging:  # by commit: a racing fetch keeps the first
            proc = _run(["--work-tree", str(staging), "checkout", "-q", "-f", source.commit, "--", "."],
                        repo, what, config)
            if proc.returncode != 0:
                raise BuildError(f"git checkout of {source.commit} failed: {_last_line(proc)}", field=what)
