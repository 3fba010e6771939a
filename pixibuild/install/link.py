"""Link one conda package into a prefix directory, streaming from its archive.

The *physical* directory written (`target_dir`, e.g. an OCI layer's staging dir) and the *logical*
prefix patched into files (`target_prefix`, e.g. `/app/.pixi/envs/prod`) are separate, so images can
be built for a path that does not exist on the build machine. Every path is checked against the
prefix before it is written: nothing lands outside `target_dir`, not even through a symlink an
earlier package installed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import posixpath
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, TypeVar

from pixibuild.errors import InputError
from pixibuild.conda.records import CondaRecord
from pixibuild.conda import archive as ar
from pixibuild.conda.archive import Member, PackageInfo, PathEntry
from pixibuild.install.noarch import PythonLayout, entry_point_script, parse_entry_point, relocate
from pixibuild.install.prefix import PrefixTooLong, copy_binary, copy_text

COPY_CHUNK = 1 << 20
_T = TypeVar("_T")
CLOBBERS_DIR = "__clobbers__"
"""Where a package's file goes when a later package installs the same path (rattler's layout)."""
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _current_umask() -> int:
    """The process umask, read without changing it (os.umask can only set it, and setting it
    for a moment would race with other threads creating files); 0o777 when it cannot be read."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o777


_TARBZ2_RELEVANT = {"info/index.json", "info/paths.json", "info/files", "info/has_prefix", "info/link.json",
                    "info/noarch.json"}


@dataclass
class LinkedPath:
    """One path as installed, for conda-meta's `paths_data` (rattler's PathsEntry)."""

    path: str
    path_type: str
    sha256: str | None = None
    sha256_in_prefix: str | None = None
    size: int | None = None
    file_mode: str | None = None
    prefix_placeholder: str | None = None
    no_link: bool = False
    original_path: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"_path": self.path, "path_type": self.path_type}
        if self.original_path is not None:
            out["original_path"] = self.original_path
        if self.no_link:
            out["no_link"] = True
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        if self.sha256_in_prefix is not None:
            out["sha256_in_prefix"] = self.sha256_in_prefix
        if self.size is not None:
            out["size_in_bytes"] = self.size
        if self.file_mode is not None:
            out["file_mode"] = self.file_mode
        if self.prefix_placeholder is not None:
            out["prefix_placeholder"] = self.prefix_placeholder
        return out


@dataclass
class LinkedPackage:
    """The result of linking one package: what conda-meta records."""

    record: CondaRecord
    paths: list[LinkedPath] = field(default_factory=list)
    clobbered: list[str] = field(default_factory=list)
    """Paths this package overwrote (an earlier package had installed them)."""


class PrefixDir:
    """A physical prefix directory whose every write is checked to stay inside it."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.root = Path(os.path.realpath(root))
        self._root_str = str(self.root)
        self._dirs: set[str] = {""}
        self.umask = _current_umask()
        """Permission bits new files lose (all of them when unknown): a file whose mode keeps clear
        of them is created with its final mode, without a separate chmod."""

    def path(self, rel: str) -> Path:
        return self.root / rel

    def full(self, rel: str) -> str:
        """The physical path of `rel` (normalised, relative) as a string: the per-file hot path
        avoids pathlib and os.path."""
        return f"{self._root_str}/{rel}"

    def is_known_dir(self, rel: str) -> bool:
        """`rel` was made or checked by `ensure_dir` (and not removed since)."""
        return rel in self._dirs

    def _inside(self, real: str) -> bool:
        return real == self._root_str or real.startswith(self._root_str + os.sep)

    def ensure_dir(self, package: str, rel: str) -> None:
        """Create directory `rel` (and parents); a symlinked parent must resolve inside the prefix."""
        if rel in self._dirs:
            return
        self.ensure_dir(package, posixpath.dirname(rel))
        full = os.path.join(self._root_str, rel)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            try:
                os.mkdir(full)
            except FileExistsError:  # another thread made it: check it like any existing entry
                return self.ensure_dir(package, rel)
            self._dirs.add(rel)
            return
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(full)
            if not self._inside(real):
                raise InputError(f"{package}: {rel}: symlinked directory leads outside the prefix ({real})")
            if not os.path.isdir(real):
                raise InputError(f"{package}: {rel}: is a symlink to a non-directory, cannot hold files")
        elif not stat.S_ISDIR(st.st_mode):
            raise InputError(f"{package}: {rel}: is a file, cannot hold files of this package")
        self._dirs.add(rel)

    def forget_dirs(self, rel: str) -> None:
        """`rel` (and everything below) was removed: stop trusting the directory cache for it."""
        inside = rel + "/"
        self._dirs = {d for d in self._dirs if d != rel and not d.startswith(inside)}

    def prepare(self, package: str, rel: str) -> tuple[str, bool]:
        """Ready `rel` for a new file or symlink: parents made, an existing file removed.

        Returns (full path, whether something was there: a clobber).
        """
        self.ensure_dir(package, posixpath.dirname(rel))
        full = os.path.join(self._root_str, rel)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return full, False
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{package}: {rel}: a directory is already installed at this path")
        os.unlink(full)
        self._dirs.discard(rel)
        return full, True


class _HashingReader:
    """Wraps a member stream: hashes and counts what is read."""

    def __init__(self, inner: IO[bytes], label: str, name: str):
        self._inner = inner
        self._where = f"{label}: {name}"
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._inner.read(n)
        except InputError:
            raise
        except ar.CORRUPT as exc:
            raise InputError(f"{self._where}: corrupt archive ({exc})") from None
        self.sha.update(data)
        self.size += len(data)
        return data


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written != len(data):  # a short write (regular files: rare); write the rest
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view):]


def _copy_hashing(src: IO[bytes], fd: int, label: str, name: str, expected: int | None) -> tuple[str, int]:
    """Copy `src` into `fd`; (sha256, size) of what was read. The per-file hot path: no file
    object around the descriptor, one read call per chunk, and none to find the end of a member
    whose size the archive declared (`expected`: its body then ends there)."""
    sha = hashlib.sha256()
    size = 0
    read = src.read
    while True:
        try:
            data = read(COPY_CHUNK if expected is None else min(COPY_CHUNK, expected - size))
        except InputError:
            raise
        except ar.CORRUPT as exc:
            raise InputError(f"{label}: {name}: corrupt archive ({exc})") from None
        if not data:
            return sha.hexdigest(), size
        sha.update(data)
        size += len(data)
        _write_all(fd, data)
        if size == expected:
            return sha.hexdigest(), size


class _LateInfo(Exception):
    """A `.tar.bz2` put placement-relevant `info/` members after payload: fall back to two passes."""


class PackageLinker:
    """Places the payload of one package archive into a PrefixDir."""

    def __init__(self, record: CondaRecord, archive_path: ar.Source, prefix: PrefixDir, *, target_prefix: str,
                 platform: str, python: PythonLayout | None, owners: dict[str, tuple[str, "LinkedPath"]] | None = None,
                 info: PackageInfo | None = None, payload: ar.ReadAhead | None = None):
        if payload is not None and info is None:
            raise ValueError("a read-ahead payload needs the package's info")
        self.record = record
        self.source = archive_path
        # The format comes from the record's file name (the source may be a stream or a spooled copy).
        self.archive_path = (Path(record.file_name) if callable(archive_path) or
                             record.file_name.endswith((".conda", ".tar.bz2")) else archive_path)
        self.label = f"{record.file_name}"
        self.prefix = prefix
        self.target_prefix = target_prefix
        self.platform = platform
        self.python = python
        self.owners = owners if owners is not None else {}
        self.info: PackageInfo | None = None
        self._preloaded = info
        self._feed = payload
        self._entries: dict[str, PathEntry] = {}
        self._dest: dict[str, str] = {}
        self._done: dict[str, LinkedPath] = {}
        self._written: list[str] = []
        self.clobbered: list[str] = []

    # ---------------------------------------------------------------- setup from info/
    def _use_info(self, info: PackageInfo) -> None:
        index = info.index
        for key in ("name", "version", "build"):
            want = getattr(self.record, key)
            got = index.get(key)
            if got is not None and str(got) != str(want):
                raise InputError(f"{self.label}: info/index.json: {key} is {got!r} but the record says {want!r}")
        self.info = info
        noarch_python = info.noarch == "python" or self.record.noarch == "python"
        if noarch_python and self.python is None:
            raise InputError(f"{self.label}: noarch: python package but the environment has no python package")
        for entry in info.paths:
            rel = relocate(entry.path, self.python) if noarch_python and self.python else entry.path
            self._entries[entry.path] = entry
            self._dest[entry.path] = rel

    # ---------------------------------------------------------------- placing members
    def _place(self, member: Member) -> None:
        entry = self._entries.get(member.name)
        if entry is None:
            # Not listed: not linked (as conda and rattler do: only listed paths are installed).
            # The name was still checked, and nothing of it is written.
            return
        if member.name in self._done:
            raise InputError(f"{self.label}: {member.name}: duplicate member in archive")
        rel = self._dest[member.name]
        if entry.path_type == "directory":
            if member.kind != "dir":
                raise InputError(f"{self.label}: {member.name}: paths.json says directory, archive has a {member.kind}")
            self.prefix.ensure_dir(self.label, rel)
            self._done[member.name] = LinkedPath(rel, "directory")
            return
        if member.kind == "dir":
            raise InputError(f"{self.label}: {member.name}: paths.json says {entry.path_type}, archive has a directory")
        if member.kind == "symlink":
            if entry.file_mode is not None:
                raise InputError(f"{self.label}: {member.name}: a symlink cannot have a prefix placeholder")
            self._create(rel, functools.partial(os.symlink, member.linkname))
            self._done[member.name] = self._own(LinkedPath(rel, "softlink", entry.sha256, None, entry.size,
                                                           no_link=entry.no_link))
            return
        if member.kind == "hardlink":
            source = self._dest.get(member.linkname)
            if source is None or member.linkname not in self._done:
                raise InputError(f"{self.label}: {member.name}: hard link to {member.linkname!r}, "
                                 "which is not an earlier file of the package")
            with open(self.prefix.full(source), "rb") as src:
                self._write_file(member.name, entry, rel, src, member.mode or 0o644, None)
            return
        if entry.size is not None and member.size != entry.size:
            raise InputError(f"{self.label}: {member.name}: {member.size} bytes in the archive but "
                             f"info/paths.json says {entry.size}")
        assert member.fileobj is not None
        self._write_file(member.name, entry, rel, member.fileobj, member.mode, member.size)

    def _create(self, rel: str, make: Callable[[str], _T]) -> _T:
        """`make(full path)` for a new file or symlink at `rel`: parents made, whatever is in the
        way cleared (`_claim`, `prepare`). When the parent is a directory already checked and this
        package has nothing at `rel`, creation is simply tried: it is exclusive (O_EXCL, symlink),
        so it fails if anything is there, and only then is the path examined and cleared."""
        if rel in self.owners or not self.prefix.is_known_dir(rel.rpartition("/")[0]):
            self._claim(rel)
            full, _ = self.prefix.prepare(self.label, rel)
        else:
            full = self.prefix.full(rel)
        try:
            made = make(full)
        except (FileExistsError, FileNotFoundError, NotADirectoryError):  # something in the way
            self._claim(rel)
            full, _ = self.prefix.prepare(self.label, rel)
            made = make(full)
        self._written.append(rel)
        return made

    def _claim(self, rel: str) -> None:
        """Make room for `rel` when earlier packages installed conflicting paths (rattler semantics:
        the later package wins, the earlier files move to `__clobbers__/<pkg>/<path>`).

        Conflicts are the same path, a file where `rel` needs a parent directory, or files under a
        directory where `rel` is to be a file.
        """
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            ancestor = "/".join(parts[:depth])
            if ancestor in self.owners:
                full = self.prefix.path(ancestor)
                if not full.is_symlink() and not full.is_dir():
                    self._move_aside(ancestor)
        if rel in self.owners:
            if self.owners[rel][1].path_type == "softlink":
                # files put through that symlink (a directory's) lose too: move them while it still leads there
                inside = rel + "/"
                for path in sorted(p for p in self.owners if p.startswith(inside)):
                    self._move_aside(path)
            self._move_aside(rel)
        full = self.prefix.path(rel)
        if full.is_dir() and not full.is_symlink():
            inside = rel + "/"
            for path in sorted(p for p in self.owners if p.startswith(inside)):
                self._move_aside(path)
            for dirpath, _, _ in sorted(os.walk(full, topdown=False), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    raise InputError(f"{self.label}: {rel}: a non-empty directory is installed at this path") from None
            self.prefix.forget_dirs(rel)

    def _move_aside(self, path: str) -> None:
        name, linked = self.owners.pop(path)
        aside = f"{CLOBBERS_DIR}/{name}/{path}"
        self.prefix.ensure_dir(self.label, posixpath.dirname(aside))
        os.replace(self.prefix.path(path), self.prefix.path(aside))
        self.prefix.forget_dirs(path)  # it may have been a symlink files were put through
        linked.original_path, linked.path = path, aside
        self.clobbered.append(path)

    def _own(self, linked: LinkedPath) -> LinkedPath:
        self.owners[linked.path] = (self.record.name, linked)
        return linked

    def _write_file(self, name: str, entry: PathEntry, rel: str, src: IO[bytes], mode: int,
                    size: int | None) -> None:
        perm = mode & 0o777
        fd = self._create(rel, functools.partial(os.open, flags=_CREATE, mode=perm))
        try:
            if entry.file_mode is None:
                source_sha, source_size = _copy_hashing(src, fd, self.label, name, size)
                out_sha, out_bytes = None, source_size
            else:
                reader = _HashingReader(src, self.label, name)
                out = hashlib.sha256()
                out_size = [0]

                def write(data: bytes) -> None:
                    if data:
                        _write_all(fd, data)
                        out.update(data)
                        out_size[0] += len(data)
                try:
                    if entry.file_mode == "binary":
                        copy_binary(reader, write, entry.prefix_placeholder or "", self.target_prefix)
                    else:
                        copy_text(reader, write, entry.prefix_placeholder or "", self.target_prefix, self.platform)
                except PrefixTooLong as exc:
                    raise InputError(f"{self.label}: {name}: {exc}: {self.target_prefix!r} does not fit") from None
                source_sha, source_size = reader.sha.hexdigest(), reader.size
                out_sha, out_bytes = out.hexdigest(), out_size[0]
            if perm & self.prefix.umask:  # the umask took bits away at creation: set the exact mode
                os.fchmod(fd, perm)  # on the open descriptor: no second path lookup
        finally:
            os.close(fd)
        if size is not None and source_size != size:
            raise InputError(f"{self.label}: {name}: archive member is truncated")
        if entry.sha256 is not None and entry.sha256 != source_sha:
            raise InputError(f"{self.label}: {name}: content does not match the sha256 in info/paths.json")
        in_prefix = out_sha if out_sha is not None else source_sha
        if entry.sha256 is None:
            # No hash in the metadata (legacy info/files): like rattler, record only what is in the prefix.
            linked = LinkedPath(rel, "hardlink", None, in_prefix, out_bytes, entry.file_mode,
                                entry.prefix_placeholder, entry.no_link)
        else:
            linked = LinkedPath(rel, "hardlink", entry.sha256, in_prefix if in_prefix != source_sha else None,
                                out_bytes if entry.file_mode is not None else
                                (entry.size if entry.size is not None else source_size),
                                entry.file_mode, entry.prefix_placeholder, entry.no_link)
        self._done[name] = self._own(linked)

    # ---------------------------------------------------------------- finishing
    def _finish(self) -> LinkedPackage:
        assert self.info is not None
        for entry in self.info.paths:
            if entry.path in self._done:
                continue
            if entry.path_type == "directory":
                rel = self._dest[entry.path]
                self.prefix.ensure_dir(self.label, rel)
                self._done[entry.path] = LinkedPath(rel, "directory")
                continue
            raise InputError(f"{self.label}: {entry.path}: listed in info/paths.json but missing from the archive")
        linked = LinkedPackage(self.record, [self._done[e.path] for e in self.info.paths], self.clobbered)
        if self.info.noarch == "python" or self.record.noarch == "python":
            assert self.python is not None
            for text in self.info.entry_points:
                ep = parse_entry_point(self.label, text)
                rel = f"{self.python.bin_dir}/{ep.command}"
                data = entry_point_script(ep, self.python, self.target_prefix)
                self._claim(rel)
                full, _ = self.prefix.prepare(self.label, rel)
                with open(full, "wb") as out:
                    out.write(data)
                os.chmod(full, 0o775)
                self._written.append(rel)
                linked.paths.append(self._own(LinkedPath(rel, "unix_python_entry_point",
                                                         hashlib.sha256(data).hexdigest(), None, len(data))))
        linked.clobbered = self.clobbered
        return linked

    def _rollback(self) -> None:
        for rel in reversed(self._written):
            try:
                os.unlink(self.prefix.path(rel))
            except FileNotFoundError:
                pass
        self._written.clear()
        self._done.clear()
        self.clobbered.clear()

    # ---------------------------------------------------------------- formats
    def link(self) -> LinkedPackage:
        name = self.archive_path.name
        if name.endswith(".conda"):
            return self._link_conda()
        if name.endswith(".tar.bz2") and self._preloaded is not None:
            return self._link_tar_bz2_known_info()
        if name.endswith(".tar.bz2"):
            try:
                return self._link_tar_bz2_one_pass()
            except _LateInfo:
                self._rollback()
                self._entries.clear()
                self._dest.clear()
                return self._link_tar_bz2_two_pass()
        raise InputError(f"{self.archive_path}: not a conda package (expected .conda or .tar.bz2)")

    def _payload(self) -> contextlib.AbstractContextManager[IO[bytes]]:
        """The payload tar stream: read ahead by another thread (`payload=`), or opened here."""
        assert self.info is not None
        if self._feed is not None:
            return contextlib.closing(self._feed)  # type: ignore[return-value]
        return ar.payload_stream(self.source, self.archive_path.name, self.label, self.info)

    def _link_conda(self) -> LinkedPackage:
        if self._preloaded is not None:
            self._use_info(self._preloaded)
        else:
            archive = ar.CondaArchive(self.source, self.label)
            try:
                self._use_info(archive.read_info())
            finally:
                archive.close()
        assert self.info is not None
        with self._payload() as stream:
            for member in ar.iter_tar(self.label, stream):
                self._place(member)
        for member in self.info.stray:
            if member.name not in self._done:
                self._place(member)
        return self._finish()

    def _link_tar_bz2_one_pass(self) -> LinkedPackage:
        info_files: dict[str, bytes] = {}
        stream = ar.open_tar_bz2(self.source, self.label, ar.MAX_INFO_TOTAL)
        with stream:
            for member in ar.iter_tar(self.label, stream):
                if member.name.startswith("info/"):
                    if self.info is None:
                        if member.kind == "file":
                            info_files[member.name] = ar.read_bounded(self.label, member)
                    elif member.name in _TARBZ2_RELEVANT:
                        raise _LateInfo()
                    continue
                if self.info is None:
                    if "info/index.json" not in info_files:
                        raise _LateInfo()
                    self._use_info(ar.parse_info(self.label, info_files))
                    assert self.info is not None
                    stream.set_remaining(ar.tar_size_bound(self.info.paths))  # type: ignore[attr-defined]
                self._place(member)
        if self.info is None:
            self._use_info(ar.parse_info(self.label, info_files))
        return self._finish()

    def _link_tar_bz2_known_info(self) -> LinkedPackage:
        assert self._preloaded is not None
        self._use_info(self._preloaded)
        return self._tar_bz2_payload()

    def _link_tar_bz2_two_pass(self) -> LinkedPackage:
        self._use_info(ar.read_info(self.archive_path, self.source, self.label))
        return self._tar_bz2_payload()

    def _tar_bz2_payload(self) -> LinkedPackage:
        with self._payload() as stream:
            for member in ar.iter_tar(self.label, stream):
                if member.name.startswith("info/"):
                    continue
                self._place(member)
        return self._finish()


def link_package(record: CondaRecord, archive_path: ar.Source, prefix: PrefixDir, *, target_prefix: str, platform: str,
                 python: PythonLayout | None, owners: dict[str, tuple[str, LinkedPath]] | None = None,
                 info: PackageInfo | None = None, payload: ar.ReadAhead | None = None) -> LinkedPackage:
    """Link one archive into `prefix`; returns what conda-meta needs. Raises InputError on bad packages.

    `owners` (what earlier packages installed: they lose a path this package also installs),
    `info` (already read) and `payload` (the payload tar of `ar.payload_stream`, read ahead by a
    worker; closed here) come from the environment installer.
    """
    try:
        linker = PackageLinker(record, archive_path, prefix, target_prefix=target_prefix, platform=platform,
                               python=python, owners=owners, info=info, payload=payload)
        return linker.link()
    finally:
        if payload is not None:
            payload.close()


Progress = Callable[[CondaRecord], None]
