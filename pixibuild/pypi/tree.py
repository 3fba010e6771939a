"""A source tree's identity: which files make it, and one digest over their paths, kinds and bytes.

Which files: in a git work tree, what git would commit — tracked files as they are now (uncommitted
edits included) plus untracked files that no .gitignore excludes; elsewhere every file minus those
the tree's .gitignore files exclude (read with `pathspec`, git's own rules). Always left out: VCS
and pixi metadata (`.git`, `.pixi`), `__pycache__`, and the directories the caller names (the
build dir and package store, when they sit inside the tree — else every build would change the key).

The wheel is built from a copy of exactly these files, re-hashed while copying: a file edited
between planning and building is caught (the wheel would not match its key), and a backend that
writes into its source directory (setuptools' `build/`, `*.egg-info`) never touches the user's tree.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from pixibuild.errors import BuildError, InputError
from pixibuild.files.digest import CHUNK, json_digest, sha256_file

if TYPE_CHECKING:  # imported by the walk that reads .gitignore files (~13 ms): git checkouts never need it
    import pathspec

ALWAYS_EXCLUDED = frozenset({".git", ".hg", ".svn", ".pixi", "__pycache__"})
REQUIREMENT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
"""The files that decide a project's build requirements (its [build-system] and setup_requires)."""


@dataclass(frozen=True)
class TreeFile:
    rel: str
    """POSIX path relative to the tree root."""
    is_link: bool
    executable: bool
    sha256: str
    """Of the bytes (or of the link target, for a symlink)."""


@dataclass(frozen=True)
class TreeSnapshot:
    root: Path
    files: tuple[TreeFile, ...]
    method: str
    """"git" or "walk": how the file list was made."""

    @property
    def digest(self) -> str:
        return json_digest([[f.rel, f.is_link, f.executable, f.sha256] for f in self.files])


def _excluded(rel: str, excluded_dirs: Sequence[str]) -> bool:
    parts = rel.split("/")
    if any(p in ALWAYS_EXCLUDED for p in parts[:-1]) or parts[-1] in ALWAYS_EXCLUDED or rel.endswith(".pyc"):
        return True
    return any(rel == d or rel.startswith(d + "/") for d in excluded_dirs)


def _git_files(root: Path) -> list[str] | None:
    """Files git would commit under `root` (relative to it), or None when `root` is not in a work tree
    (or git is missing or refuses the repository)."""
    try:
        proc = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
                               "--exclude-standard", "--", "."], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return sorted({p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p})


def _walk_files(root: Path) -> list[str]:
    """Every file under `root` minus what its .gitignore files exclude (deeper files decide first)."""
    import pathspec

    out: list[str] = []
    specs: list[tuple[str, pathspec.GitIgnoreSpec]] = []  # (dir prefix, spec), shallow first

    def ignored(rel: str, is_dir: bool) -> bool:
        for prefix, spec in reversed(specs):
            if prefix and not rel.startswith(prefix):
                continue
            result = spec.check_file(rel[len(prefix):] + ("/" if is_dir else ""))
            if result.include is not None:
                return result.include
        return False

    def walk(directory: Path, prefix: str) -> None:
        gitignore = directory / ".gitignore"
        pushed = False
        if gitignore.is_file():
            try:
                lines = gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError as exc:
                raise InputError(f"cannot read: {exc.strerror}", path=gitignore) from None
            specs.append((prefix, pathspec.GitIgnoreSpec.from_lines(lines)))
            pushed = True
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise InputError(f"cannot list source directory: {exc.strerror}", path=directory) from None
        for entry in entries:
            rel = prefix + entry.name
            if entry.name in ALWAYS_EXCLUDED:
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if ignored(rel, is_dir):
                continue
            if is_dir:
                walk(Path(entry.path), rel + "/")
            else:
                out.append(rel)
        if pushed:
            specs.pop()

    walk(root, "")
    return out


def _tree_files(root: str | Path, exclude: Iterable[str | Path]) -> tuple[Path, str, list[str]]:
    """(resolved root, "git" or "walk", the tree's files relative to root: module docstring)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise InputError("source directory not found", path=root)
    excluded_dirs = []
    for path in exclude:
        try:
            excluded_dirs.append(Path(path).resolve().relative_to(root).as_posix())
        except ValueError:
            continue  # not inside the tree
    listed = _git_files(root)
    method = "git" if listed is not None else "walk"
    if listed is None:
        listed = _walk_files(root)
    return root, method, [rel for rel in listed if not _excluded(rel, excluded_dirs)]


def tree_identity(root: str | Path, exclude: Iterable[str | Path] = ()) -> list:
    """What tells an edited tree from an untouched one without reading its files: the same file list
    as `snapshot`, each with its size, mtime, ctime, inode and mode. The plan cache re-reads it to
    decide whether a project's wheel keys (which hash the files) must be derived again."""
    root, method, listed = _tree_files(root, exclude)
    out: list = [str(root), method]
    for rel in listed:
        try:
            st = (root / rel).lstat()
        except FileNotFoundError:
            continue
        out.append([rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode])
    return out


def snapshot(root: str | Path, *, exclude: Iterable[str | Path] = ()) -> TreeSnapshot:
    """The files of the source tree at `root` and their hashes (see the module docstring)."""
    root, method, listed = _tree_files(root, exclude)
    files = []
    for rel in listed:
        path = root / rel
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue  # tracked but deleted in the work tree: not part of what is built
        if stat.S_ISLNK(st.st_mode):
            files.append(TreeFile(rel, True, False, hashlib.sha256(os.readlink(path).encode()).hexdigest()))
        elif stat.S_ISREG(st.st_mode):
            try:
                digest = sha256_file(path)[0]
            except OSError as exc:
                raise InputError(f"cannot read source file: {exc.strerror}", path=path) from None
            files.append(TreeFile(rel, False, bool(st.st_mode & 0o111), digest))
        # directories (git submodules) and special files are not part of a Python source tree
    return TreeSnapshot(root, tuple(files), method)


def copy_snapshot(snap: TreeSnapshot, dest: Path) -> None:
    """Copy the snapshot's files into `dest`, checking each one still has the bytes it was hashed
    with; BuildError naming the first that changed (the build would not match its key)."""
    for f in snap.files:
        source, target = snap.root / f.rel, dest / f.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if f.is_link:
                link = os.readlink(source)
                actual = hashlib.sha256(link.encode()).hexdigest()
                os.symlink(link, target)
            else:
                h = hashlib.sha256()
                with open(source, "rb") as fin, open(target, "wb") as fout:
                    while chunk := fin.read(CHUNK):
                        h.update(chunk)
                        fout.write(chunk)
                actual = h.hexdigest()
                os.chmod(target, 0o755 if f.executable else 0o644)
        except FileNotFoundError:
            actual = "missing"
        if actual != f.sha256:
            raise BuildError(f"{source} changed while the build was planned; run the build again")


def requirement_files_digest(root: Path) -> str:
    """Hash of the files that decide the build requirements (a code edit leaves it unchanged)."""
    parts = []
    for name in REQUIREMENT_FILES:
        path = root / name
        parts.append([name, sha256_file(path)[0] if path.is_file() else None])
    return json_digest(parts)


def copy_tree(source: Path, dest: Path) -> None:
    """Copy a directory the store owns (a git checkout, an unpacked sdist) for one build."""
    shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
