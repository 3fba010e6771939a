"""Streaming readers for conda package archives (`.conda` and `.tar.bz2`) and their `info/` metadata.

Packages come from channels we do not control, so every member is checked before anything is
written: names must be relative, UTF-8, free of `..`; member types are limited to files, symlinks,
hard links and directories; sizes are bounded by what `info/paths.json` declares (a decompression
bomb cannot write more than the package admits to). Payload bodies are never held in memory: the
caller gets each member as a file object straight from the decompressor.
"""

from __future__ import annotations

import bz2
import contextlib
import io
import json
import posixpath
import queue
import re
import shlex
import struct
import tarfile
import threading
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Union

import zstandard

from pixibuild.conda.records import CondaRecord
from pixibuild.errors import InputError
from pixibuild.files.digest import hash_file
from pixibuild.files.verified import VerifiedBlob
from pixibuild.files.window import Slice

CORRUPT = (tarfile.TarError, OSError, EOFError, ValueError, zstandard.ZstdError, zipfile.BadZipFile, zlib.error,
           NotImplementedError)
"""What a damaged archive raises while it is read: all become InputError naming the package. (zipfile raises
NotImplementedError for flag bits and compression methods it does not support, e.g. a flipped flag bit 5.)"""

MAX_INFO_MEMBER = 64 << 20
"""Largest `info/` member we keep in memory (real ones are kilobytes; repodata-sized at worst)."""
MAX_INFO_TOTAL = 256 << 20
BOMB_SLACK = 32 << 20
ZIP_ENCRYPTED_FLAG = 0x1
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
"""A zip local file header (zipfile's structFileHeader): its last two fields are the name and extra lengths."""
PATH_TYPES = ("hardlink", "softlink", "directory")


@dataclass(frozen=True)
class PathEntry:
    """One `info/paths.json` entry (or its legacy `info/files` + `info/has_prefix` equivalent)."""

    path: str
    path_type: str = "hardlink"
    sha256: str | None = None
    size: int | None = None
    file_mode: str | None = None
    """"text" or "binary" when the file holds `prefix_placeholder`."""
    prefix_placeholder: str | None = None
    no_link: bool = False


@dataclass
class PackageInfo:
    """What `info/` says about a package: index.json, the path list, link.json (noarch python)."""

    index: dict[str, Any]
    paths: list[PathEntry]
    link: dict[str, Any] | None = None
    legacy: bool = False
    """True when the path list came from `info/files` (no paths.json, no sizes or hashes)."""
    files: dict[str, bytes] = field(default_factory=dict, repr=False)
    stray: list["Member"] = field(default_factory=list, repr=False)
    """Payload members found in a .conda's info tar (placed after the payload tar)."""

    @property
    def noarch(self) -> str | None:
        value = self.index.get("noarch")
        if value is True:
            return "generic"
        if isinstance(value, str) and value:
            return value
        noarch_json = (self.link or {}).get("noarch") or {}
        return noarch_json.get("type") if isinstance(noarch_json, dict) else None

    @property
    def entry_points(self) -> list[str]:
        noarch = (self.link or {}).get("noarch") or {}
        return list(noarch.get("entry_points") or []) if isinstance(noarch, dict) else []


def _fail(package: str, member: str | None, message: str) -> InputError:
    where = f"{package}: {member}: " if member else f"{package}: "
    return InputError(where + message)


def check_member_name(package: str, name: str) -> str:
    """The normalised relative path of an archive member; raise on anything that could escape."""
    if name.isascii() and _plain_name(name):
        return name  # already normal: no empty, `.` or `..` component, no backslash, NUL or drive
    if "\x00" in name:
        raise _fail(package, repr(name), "NUL byte in member name")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(package, repr(name), "member name is not valid UTF-8") from None
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or name.startswith("\\"):
        raise _fail(package, name, "absolute path in archive")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        raise _fail(package, name, "empty member name")
    if any(p == ".." for p in parts) or any("\\" in p for p in parts):
        raise _fail(package, name, "path escapes the prefix ('..' or backslash component)")
    return "/".join(parts)


def _plain_name(name: str) -> bool:
    """A relative path that `check_member_name` would return unchanged (checked in C, per member)."""
    return bool(name) and name[0] not in "/.\\" and name[-1] != "/" and "//" not in name and "/." not in name \
        and "\\" not in name and "\x00" not in name and name[1:2] != ":"


def check_link_target(package: str, member: str, target: str) -> None:
    """A symlink at `member` pointing at `target` must resolve (lexically) inside the prefix."""
    if not target or "\x00" in target:
        raise _fail(package, member, "empty or NUL symlink target")
    if target.startswith("/"):
        raise _fail(package, member, f"symlink points outside the prefix (absolute target {target!r})")
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(member), target))
    if joined == ".." or joined.startswith("../") or joined.startswith("/"):
        raise _fail(package, member, f"symlink points outside the prefix ({target!r})")


# --------------------------------------------------------------------------- info/ parsing

def parse_paths_json(package: str, data: bytes) -> list[PathEntry]:
    """`info/paths.json` → entries, validated (types, unique normalised paths, sane sizes)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(package, "info/paths.json", f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("paths"), list):
        raise _fail(package, "info/paths.json", "expected an object with a 'paths' list")
    entries: list[PathEntry] = []
    seen: set[str] = set()
    for raw in doc["paths"]:
        if not isinstance(raw, dict) or not isinstance(raw.get("_path"), str):
            raise _fail(package, "info/paths.json", f"entry without a '_path' string: {raw!r:.200}")
        path = check_member_name(package, raw["_path"])
        if path in seen:
            raise _fail(package, path, "listed twice in info/paths.json")
        seen.add(path)
        path_type = raw.get("path_type", "hardlink")
        if path_type not in PATH_TYPES:
            raise _fail(package, path, f"unknown path_type {path_type!r} in info/paths.json")
        size = raw.get("size_in_bytes")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise _fail(package, path, f"bad size_in_bytes {size!r} in info/paths.json")
        sha = raw.get("sha256")
        if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
            raise _fail(package, path, f"bad sha256 {sha!r} in info/paths.json")
        placeholder = raw.get("prefix_placeholder")
        mode = raw.get("file_mode")
        if placeholder is not None:
            if not isinstance(placeholder, str) or not placeholder:
                raise _fail(package, path, "bad prefix_placeholder in info/paths.json")
            mode = mode or "text"
            if mode not in ("text", "binary"):
                raise _fail(package, path, f"bad file_mode {mode!r} in info/paths.json")
        else:
            mode = None
        entries.append(PathEntry(path, path_type, sha, size, mode, placeholder, bool(raw.get("no_link", False))))
    return entries


def parse_legacy_files(package: str, files: bytes, has_prefix: bytes | None) -> list[PathEntry]:
    """Old packages: `info/files` lists paths; `info/has_prefix` lines are `placeholder mode path` or `path`."""
    prefixed: dict[str, tuple[str, str]] = {}
    for line in (has_prefix or b"").decode("utf-8", "surrogateescape").splitlines():
        line = line.strip()
        if not line:
            continue
        parts = _split_has_prefix(line)
        if len(parts) == 1:
            placeholder, mode, path = "/opt/anaconda1anaconda2anaconda3", "text", parts[0]
        elif len(parts) == 3:
            placeholder, mode, path = parts
        else:
            raise _fail(package, "info/has_prefix", f"cannot parse line {line!r}")
        if mode not in ("text", "binary"):
            raise _fail(package, "info/has_prefix", f"bad file mode {mode!r}")
        prefixed[check_member_name(package, path)] = (placeholder, mode)
    entries, seen = [], set()
    for line in files.decode("utf-8", "surrogateescape").splitlines():
        if not line.strip():
            continue
        path = check_member_name(package, line.strip())
        if path in seen:
            raise _fail(package, path, "listed twice in info/files")
        seen.add(path)
        placeholder, mode = prefixed.get(path, (None, None))
        entries.append(PathEntry(path, "hardlink", None, None, mode, placeholder))
    return entries


def _split_has_prefix(line: str) -> list[str]:
    """has_prefix fields may be double-quoted (paths with spaces)."""
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def parse_info(package: str, files: dict[str, bytes]) -> PackageInfo:
    """Build PackageInfo from the raw `info/` members."""
    if "info/index.json" not in files:
        raise _fail(package, "info/index.json", "missing")
    try:
        index = json.loads(files["info/index.json"])
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(package, "info/index.json", f"not valid JSON ({exc})") from None
    if not isinstance(index, dict):
        raise _fail(package, "info/index.json", "expected a JSON object")
    link = None
    for name in ("info/link.json", "info/noarch.json"):
        if name in files:
            try:
                link = json.loads(files[name])
            except (ValueError, UnicodeDecodeError) as exc:
                raise _fail(package, name, f"not valid JSON ({exc})") from None
            if name == "info/noarch.json" and isinstance(link, dict) and "noarch" not in link:
                link = {"noarch": link}
            if not isinstance(link, dict):
                raise _fail(package, name, "expected a JSON object")
            break
    if "info/paths.json" in files:
        return PackageInfo(index, parse_paths_json(package, files["info/paths.json"]), link, False, files)
    if "info/files" in files:
        paths = parse_legacy_files(package, files["info/files"], files.get("info/has_prefix"))
        return PackageInfo(index, paths, link, True, files)
    raise _fail(package, "info/paths.json", "missing (and no legacy info/files)")


# --------------------------------------------------------------------------- tar members

@dataclass
class Member:
    """One payload member as the archive holds it, checked and normalised."""

    name: str
    kind: str
    """"file", "symlink", "hardlink" (tar hard link to an earlier member) or "dir"."""
    mode: int
    size: int = 0
    linkname: str = ""
    fileobj: IO[bytes] | None = None


class _BadHeader(Exception):
    """A header block that is not a tar header (bad checksum, bad number field)."""


_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_READ_AHEAD = 128 << 10
MAX_TAR_EXTENSION = 1 << 20
"""Largest PAX / GNU long-name header we keep in memory (real ones are a few hundred bytes)."""
MAX_TAR_EXTENSIONS = 8
"""Extension headers in a row before a member (real archives: at most a long name and a PAX header)."""
_REGULAR = (b"0", b"\0", b"7")  # file, old-style file, contiguous file
_DEVICES = {b"3": "character device", b"4": "block device", b"6": "fifo"}
# tar types whose size field does not count data blocks (tarfile skips data of files and unknown types)
_NO_DATA = (b"1", b"2", b"5", b"3", b"4", b"6")


class _Header:
    __slots__ = ("name", "type", "mode", "size", "linkname")

    def __init__(self, name: str, type_: bytes, mode: int, size: int, linkname: str):
        self.name, self.type, self.mode, self.size, self.linkname = name, type_, mode, size, linkname


def _number(field: bytes) -> int:
    """A numeric header field: octal text, or base-256 (GNU) when the first byte says so."""
    digits = field.split(b"\0", 1)[0]
    if digits.isdigit():  # the usual zero-padded octal (an 8 or 9 is refused below, as by tarfile)
        try:
            return int(digits, 8)
        except ValueError:
            raise _BadHeader("invalid number field") from None
    if field[0] in (0o200, 0o377):
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[0] == 0o377 else value
    try:
        return int(field.split(b"\0", 1)[0].decode("ascii").strip() or "0", 8)
    except ValueError:  # includes UnicodeDecodeError
        raise _BadHeader("invalid number field") from None


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _parse_header(block: bytes) -> _Header:
    """One ustar / GNU / v7 header block, as tarfile reads it (checksum signed or unsigned)."""
    checksum = _number(block[148:156])
    unsigned = sum(block) - sum(block[148:156]) + 256
    if checksum != unsigned:
        high = sum(1 for b in block[:148] if b > 127) + sum(1 for b in block[156:] if b > 127)
        if checksum != unsigned - 256 * high:
            raise _BadHeader("bad checksum")
    type_ = block[156:157]
    name = _text(block[0:100])
    if type_ == b"\0" and name.endswith("/"):
        type_ = b"5"  # old V7 tar: a directory is a file named with a trailing slash
    if type_ == b"5":
        name = name.rstrip("/")
    if block[345]:  # the ustar prefix of a long name
        prefix = _text(block[345:500])
        if prefix and type_ not in (b"L", b"K", b"S"):
            name = prefix + "/" + name
    linkname = _text(block[157:257]) if block[157] else ""
    common = _COMMON_NUMBERS.fullmatch(block, 100, 148)
    if common is not None and block[329:345] in _NO_DEVICE:  # the usual layout: one regex, two ints
        return _Header(name, type_, int(common.group(1), 8), int(common.group(2), 8), linkname)
    for start, end in _UNUSED_NUMBERS:  # unused, but tarfile refuses a header where they are not numbers
        _number(block[start:end])
    return _Header(name, type_, _number(block[100:108]), _number(block[124:136]), linkname)


# mode, uid, gid (7 octal digits and a NUL each), size, mtime (11 and a NUL): how tarfile, conda
# and most tools write them. Device numbers: all NUL, or zeros.
_COMMON_NUMBERS = re.compile(rb"([0-7]{7})\0[0-7]{7}\0[0-7]{7}\0([0-7]{11})\0[0-7]{11}\0")
_NO_DEVICE = (bytes(16), b"0000000\x000000000\x00")
_UNUSED_NUMBERS = ((108, 116), (116, 124), (136, 148), (329, 337), (337, 345))  # uid gid mtime devmajor devminor


_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")


def _parse_pax(package: str, data: bytes) -> dict[str, str]:
    """`<length> <key>=<value>\n` records (POSIX.1-2001 extended header), read as tarfile does."""
    records: dict[str, str] = {}
    pos = 0
    while match := _PAX_RECORD.match(data, pos):
        length = int(match.group(1))
        if length == 0:
            raise _fail(package, None, "corrupt archive (invalid PAX header)")
        value = data[match.end(2) + 1: match.start(1) + length - 1]
        records[match.group(2).decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    if any(key.startswith("GNU.sparse.") for key in records):
        raise _fail(package, records.get("path"), "refusing sparse file member")
    return records


class _TarStream:
    """A tar stream read sequentially with a read-ahead buffer: header blocks are sliced from the
    buffer instead of one decompressor call each (tarfile's stream mode costs ~50 µs a member)."""

    def __init__(self, package: str, raw: IO[bytes]):
        self.package = package
        self._raw = raw
        self._buf = b""
        self._pos = 0
        self.left = 0
        """Unread bytes of the current member's body (plus its padding in `_pad`)."""
        self._pad = 0
        self.offset = 0
        """Bytes of the tar consumed so far."""
        self.index = 0
        """How many members were handed out (a body is only readable while it is the current one)."""

    def read(self, n: int) -> bytes:
        """Up to `n` bytes: fewer only at the end of the stream."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos >= n:
            self._pos = pos + n
            self.offset += n
            return buf[pos:pos + n]
        parts = [buf[pos:]]
        have = len(buf) - pos
        self._buf, self._pos = b"", 0
        while have < n:
            chunk = self._raw.read(max(n - have, _READ_AHEAD))
            if not chunk:
                break
            if have + len(chunk) > n:  # keep what is beyond `n` for the next reads
                cut = n - have
                self._buf = chunk
                self._pos = cut
                chunk = chunk[:cut]
            parts.append(chunk)
            have += len(chunk)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.offset += len(data)
        return data

    def read_body(self, n: int) -> bytes:
        """Up to `n` bytes of the current member's body (all of it for n < 0)."""
        if n < 0 or n > self.left:
            n = self.left
        if n == 0:
            return b""
        data = self.read(n)
        if len(data) != n:
            raise _fail(self.package, None, "corrupt archive (unexpected end of data)")
        self.left -= n
        return data

    def _skip_body(self) -> None:
        remaining = self.left + self._pad
        self.left = self._pad = 0
        while remaining:
            data = self.read(min(remaining, 1 << 20))
            if not data:
                raise _fail(self.package, None, "corrupt archive (unexpected end of data)")
            remaining -= len(data)

    def next_header(self) -> _Header | None:
        """The next member's header (extensions applied), or None at the end of the archive."""
        self._skip_body()
        first = self.offset == 0
        try:
            header = self._header(extensions=0)
        except _BadHeader as exc:
            if first:
                raise _fail(self.package, None, f"not a readable tar stream ({exc})") from None
            return None  # as tarfile: an unreadable block after the first member ends the archive
        if header is None:
            return None
        self.index += 1
        if header.size < 0:
            raise _fail(self.package, header.name, "corrupt archive (negative size)")
        if header.type not in _NO_DATA:
            self.left = header.size
            self._pad = -header.size % _BLOCK
        return header

    def _header(self, extensions: int) -> _Header | None:
        """The next header; `extensions`: how many extension headers (PAX, GNU long name) precede it."""
        subsequent = extensions > 0
        if extensions > MAX_TAR_EXTENSIONS:
            raise _fail(self.package, None, f"corrupt archive (more than {MAX_TAR_EXTENSIONS} extension headers in a row)")
        block = self.read(_BLOCK)
        if len(block) != _BLOCK or block == _ZERO_BLOCK:
            if subsequent:
                raise _fail(self.package, None, "corrupt archive (missing header after an extension header)")
            if len(block) != _BLOCK and self.offset == len(block):
                raise _BadHeader("empty file" if not block else "truncated header")
            return None  # a zero block (or the stream's end) ends the archive
        try:
            header = _parse_header(block)
        except _BadHeader as exc:
            if subsequent:
                raise _fail(self.package, None, f"corrupt archive ({exc})") from None
            raise
        if header.type in (b"L", b"K", b"x", b"X", b"g"):
            if not 0 <= header.size <= MAX_TAR_EXTENSION:
                raise _fail(self.package, None, f"corrupt archive (tar extension header of {header.size} bytes)")
            data = self.read(header.size + (-header.size % _BLOCK))  # with its padding, as tarfile
            if header.type == b"g":
                records = _parse_pax(self.package, data)
                if {"path", "linkpath", "size"} & set(records):
                    raise _fail(self.package, None, "refusing a global PAX header that sets path, linkpath or size")
                return self._header(extensions + 1)  # nothing else in a global header matters here
            following = self._header(extensions + 1)
            assert following is not None
            if header.type in (b"L", b"K"):  # GNU long name / long link target
                if header.type == b"L":
                    following.name = _text(data)
                    if following.type == b"5":
                        following.name = following.name.removesuffix("/")
                else:
                    following.linkname = _text(data)
                return following
            records = _parse_pax(self.package, data)
            if "path" in records:
                following.name = records["path"].rstrip("/")
            if "linkpath" in records:
                following.linkname = records["linkpath"]
            if "size" in records:
                try:
                    following.size = int(records["size"])
                except ValueError:
                    following.size = 0
            return following
        if header.type == b"S":
            raise _fail(self.package, header.name, "refusing sparse file member")
        return header


def _classify(package: str, header: _Header) -> Member:
    name = check_member_name(package, header.name)
    kind = header.type
    if kind in _REGULAR:
        return Member(name, "file", header.mode & 0o7777, header.size)
    if kind == b"2":
        check_link_target(package, name, header.linkname)
        return Member(name, "symlink", 0o777, 0, header.linkname)
    if kind == b"1":
        target = check_member_name(package, header.linkname)
        return Member(name, "hardlink", header.mode & 0o7777, 0, target)
    if kind == b"5":
        return Member(name, "dir", header.mode & 0o7777)
    raise _fail(package, name, f"refusing {_DEVICES.get(kind, f'tar type {kind!r}')} member")


class _Body:
    """A regular member's content, readable until the next member is requested."""

    __slots__ = ("_tar", "_index")

    def __init__(self, tar: _TarStream, index: int):
        self._tar, self._index = tar, index

    def read(self, n: int = -1) -> bytes:
        if self._tar.index != self._index:
            raise ValueError("tar member read after the archive moved on")
        return self._tar.read_body(-1 if n is None else n)


def iter_tar(package: str, stream: IO[bytes]) -> Iterator[Member]:
    """Stream a tar: yield each checked member; a file's body (`fileobj`) is readable until the next
    member is requested. Reads what Python's tarfile reads (ustar, GNU long names, PAX), refuses
    sparse files and devices, and ends where tarfile ends (a zero block, or an unreadable header
    after the first member)."""
    tar = _TarStream(package, stream)
    seen: set[str] = set()
    while True:
        try:
            header = tar.next_header()
        except InputError:
            raise
        except CORRUPT as exc:
            raise _fail(package, None, f"corrupt archive ({exc})") from None
        if header is None:
            return
        member = _classify(package, header)
        if member.kind != "dir":
            if member.name in seen:
                raise _fail(package, member.name, "duplicate member in archive")
            seen.add(member.name)
        if member.kind == "file":
            member.fileobj = _Body(tar, tar.index)  # type: ignore[assignment]
        yield member


def read_bounded(package: str, member: Member, limit: int = MAX_INFO_MEMBER) -> bytes:
    """A small member's bytes (info files), refusing anything implausibly large."""
    if member.kind != "file" or member.fileobj is None:
        raise _fail(package, member.name, "expected a regular file")
    if member.size > limit:
        raise _fail(package, member.name, f"{member.size} bytes is too large for metadata")
    try:
        return member.fileobj.read()
    except InputError:
        raise
    except CORRUPT as exc:
        raise _fail(package, member.name, f"corrupt archive ({exc})") from None


# --------------------------------------------------------------------------- archives

Source = Union[Path, Callable[[], IO[bytes]]]
"""An archive: a file path, or a callable opening a fresh seekable stream (e.g. a member of a pack tar)."""


def open_source(source: Source) -> IO[bytes]:
    try:
        return open(source, "rb") if isinstance(source, Path) else source()
    except OSError as exc:
        name = source.name if isinstance(source, Path) else "archive"
        raise InputError(f"{name}: cannot open ({exc.strerror or exc})") from None


class CondaArchive:
    """A `.conda` (zip of `info-*.tar.zst` and `pkg-*.tar.zst`), read member by member."""

    def __init__(self, source: Source, package: str):
        self.package = package
        self._verified = isinstance(source, VerifiedBlob)
        """The archive's own sha256 is checked as it is read (a package from the store): zip CRCs add nothing."""
        self._file = open_source(source)
        try:
            self._zip = zipfile.ZipFile(self._file)
        except CORRUPT as exc:
            self._file.close()
            raise _fail(package, None, f"not a valid .conda zip ({exc})") from None
        names: dict[str, zipfile.ZipInfo] = {}
        for zi in self._zip.infolist():
            if zi.filename in names:
                raise _fail(package, zi.filename, "duplicate zip entry")
            if zi.flag_bits & ZIP_ENCRYPTED_FLAG:
                raise _fail(package, zi.filename, "encrypted zip entry")
            if zi.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise _fail(package, zi.filename, f"unsupported zip compression {zi.compress_type}")
            if "/" in zi.filename or "\\" in zi.filename or zi.filename.startswith(".."):
                raise _fail(package, zi.filename, "unexpected path in .conda zip")
            names[zi.filename] = zi
        self._info = self._one(names, "info-")
        self._pkg = self._one(names, "pkg-")

    def _one(self, names: dict[str, zipfile.ZipInfo], prefix: str) -> zipfile.ZipInfo:
        found = [zi for n, zi in names.items() if n.startswith(prefix) and n.endswith(".tar.zst")]
        if len(found) != 1:
            raise _fail(self.package, f"{prefix}*.tar.zst", f"expected exactly one, found {len(found)}")
        return found[0]

    @contextlib.contextmanager
    def _stream(self, zi: zipfile.ZipInfo, limit: int | None) -> Iterator[IO[bytes]]:
        try:
            raw: IO[bytes] = self._stored(zi) if self._verified and zi.compress_type == zipfile.ZIP_STORED \
                else self._zip.open(zi)
        except CORRUPT as exc:
            raise _fail(self.package, zi.filename, f"corrupt zip entry ({exc})") from None
        with raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
            stream: IO[bytes] = _Bounded(reader, limit, self.package, zi.filename) if limit else reader
            with reader:
                yield stream

    def _stored(self, zi: zipfile.ZipInfo) -> IO[bytes]:
        """A stored member's bytes read in place, without zipfile's CRC-32 (a pass over every byte,
        ~7 % of building a large image layer): used when the whole archive's sha256 is checked as
        it is read (`VerifiedBlob`), which covers those bytes and fails the node before its output
        is kept. The local header is checked as zipfile checks it."""
        self._file.seek(zi.header_offset)
        header = self._file.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile("bad local file header")
        name_length, extra_length = _LOCAL_HEADER.unpack(header)[-2:]
        if self._file.read(name_length) != zi.orig_filename.encode("cp437" if not zi.flag_bits & 0x800 else "utf-8"):
            raise zipfile.BadZipFile(f"local file header names another file than {zi.orig_filename!r}")
        start = zi.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        if zi.compress_size != zi.file_size or start + zi.compress_size > self._zip.start_dir:
            raise zipfile.BadZipFile("stored member overruns the archive")
        return Slice(self._file, start, zi.compress_size, owns=False)  # type: ignore[return-value]

    def read_info(self) -> PackageInfo:
        """info/ metadata. Payload members misplaced in the info tar (conda-package-handling put
        symlinks to directories there) are kept in `.stray` for the linker."""
        files: dict[str, bytes] = {}
        stray: list[Member] = []
        with self._stream(self._info, MAX_INFO_TOTAL) as stream:
            for member in iter_tar(self.package, stream):
                if member.name.startswith("info/"):
                    if member.kind == "file":
                        files[member.name] = read_bounded(self.package, member)
                elif member.kind == "file":
                    member.fileobj = io.BytesIO(read_bounded(self.package, member))
                    stray.append(member)
                elif member.kind in ("symlink", "dir"):
                    stray.append(member)
        info = parse_info(self.package, files)
        info.stray = stray
        return info

    @contextlib.contextmanager
    def payload(self, limit: int | None) -> Iterator[Iterator[Member]]:
        """Payload members; `limit` bounds the decompressed tar size (declared sizes + headers)."""
        with self._stream(self._pkg, limit) as stream:
            yield iter_tar(self.package, stream)

    def payload_stream(self, limit: int | None) -> contextlib.AbstractContextManager[IO[bytes]]:
        """The payload tar, decompressed and bounded by `limit`, as a byte stream."""
        return self._stream(self._pkg, limit)

    def close(self) -> None:
        self._zip.close()
        self._file.close()


class _Bounded(io.RawIOBase):
    """A read-only stream that fails once more than `limit` bytes were read (decompression bombs)."""

    def __init__(self, inner: IO[bytes], limit: int, package: str, member: str):
        self._inner, self._left, self._package, self._member = inner, limit, package, member

    def readable(self) -> bool:
        return True

    def set_remaining(self, remaining: int) -> None:
        """Allow exactly `remaining` further bytes (once the declared sizes are known)."""
        self._left = remaining

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()

    def readinto(self, buf: Any) -> int:
        data = self._inner.read(min(len(buf), self._left + 1))
        if len(data) > self._left:
            raise _fail(self._package, self._member, "decompressed data exceeds the sizes the package declares")
        self._left -= len(data)
        buf[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._left + 1
        data = self._inner.read(min(size, self._left + 1))
        if len(data) > self._left:
            raise _fail(self._package, self._member, "decompressed data exceeds the sizes the package declares")
        self._left -= len(data)
        return data


class _OwningBZ2(bz2.BZ2File):
    """BZ2File that closes the underlying stream it was given."""

    def __init__(self, raw: IO[bytes]):
        super().__init__(raw, "rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def open_tar_bz2(source: Source, package: str, limit: int | None = None) -> IO[bytes]:
    """A decompressing stream over a `.tar.bz2`, optionally bounded. A source that is already a
    plain tar (a spooled, decompressed copy) is read as is."""
    try:
        handle = open_source(source)
        if handle.seekable():
            magic = handle.read(3)
            handle.seek(0)
            if magic != b"BZh":
                return _Bounded(handle, limit, package, package) if limit else handle
        raw: IO[bytes] = _OwningBZ2(handle)
    except OSError as exc:
        raise _fail(package, None, f"cannot open ({exc})") from None
    return _Bounded(raw, limit, package, package) if limit else raw


@contextlib.contextmanager
def payload_stream(source: Source, file_name: str, package: str, info: PackageInfo) -> Iterator[IO[bytes]]:
    """The decompressed tar holding a package's payload, bounded by what `info` declares: a
    `.conda`'s pkg-*.tar.zst, or a whole `.tar.bz2` (or its decompressed spool), info/ included."""
    if file_name.endswith(".conda"):
        archive = CondaArchive(source, package)
        try:
            with archive.payload_stream(tar_size_bound(info.paths)) as stream:
                yield stream
        finally:
            archive.close()
        return
    bound = tar_size_bound(info.paths) + sum(len(v) + 2048 for v in info.files.values())
    with open_tar_bz2(source, package, bound) as stream:
        yield stream


class ReadAhead:
    """A byte stream read by another thread, up to `depth` chunks ahead of its reader.

    Why: decompression (zstd, bz2) releases the GIL, so a worker decompressing the next packages
    runs on another core while the installing thread writes files; the installing thread only
    takes finished chunks. Errors (a corrupt or oversized stream) reach the reader at the point
    where it would have read the bad data. Memory: at most `depth` + 1 chunks."""

    def __init__(self, open_stream: Callable[[], contextlib.AbstractContextManager[IO[bytes]]], *,
                 chunk: int = 1 << 20, depth: int = 4):
        self._open = open_stream
        self._chunk_size = chunk
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self._closed = threading.Event()
        self._current = b""
        self._pos = 0
        self._eof = False

    def fill(self) -> None:
        """Read the whole stream into the queue (runs in a worker thread; returns early on close)."""
        try:
            if self._closed.is_set():
                return
            with self._open() as stream:
                while not self._closed.is_set():
                    data = stream.read(self._chunk_size)
                    self._put(data)
                    if not data:
                        return
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, raised there
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (fewer at a chunk's end); b"" at the end of the stream."""
        if self._pos >= len(self._current):
            if self._eof:
                return b""
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            if not item:
                self._eof = True
                return b""
            self._current, self._pos = item, 0
        pos = self._pos
        end = len(self._current) if n is None or n < 0 else min(len(self._current), pos + n)
        self._pos = end
        if pos == 0 and end == len(self._current):
            return self._current
        return self._current[pos:end]

    def close(self) -> None:
        """Stop the worker (it may be blocked on a full queue) and drop what it read."""
        self._closed.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return


def tar_size_bound(paths: list[PathEntry], n_members: int | None = None) -> int:
    """An upper bound for a payload tar's size given declared sizes (headers, PAX, padding)."""
    total = 0
    for entry in paths:
        total += 4096 + ((entry.size or 0) + 511) // 512 * 512
    # Slack for members real packages carry but do not list (info/recipe, .DS_Store, licenses):
    # a bomb is still stopped a bounded distance past what the package declares.
    return total + total // 10 + BOMB_SLACK + 4096 * (n_members or 0)


def package_label(path: Path) -> str:
    return path.name


class PayloadFirst(Exception):
    """A `.tar.bz2` whose payload precedes info/: read it via a decompressed spool (one bz2 pass)."""


def spool_tar_bz2(source: Source, package: str, spool: Path) -> Path:
    """Decompress a `.tar.bz2` once into `spool` (a plain tar), so info and payload can both be read
    without decompressing twice. Before info/ is known nothing declares sizes, so the spool is capped
    relative to the compressed size (bz2 bombs compress ~1000:1 and more; real packages ~5:1)."""
    with open_source(source) as handle:
        compressed = handle.seek(0, 2)
    limit = min(MAX_SPOOL, SPOOL_BASE + SPOOL_RATIO * compressed)
    with open_tar_bz2(source, package, limit) as stream, open(spool, "wb") as out:
        while True:
            try:
                chunk = stream.read(1 << 20)
            except InputError:
                raise
            except CORRUPT as exc:  # a truncated or damaged bz2 stream (not the spool's own write errors)
                raise _fail(package, None, f"corrupt archive ({exc})") from None
            if not chunk:
                return spool
            out.write(chunk)


MAX_SPOOL = 64 << 30
SPOOL_BASE = 64 << 20
SPOOL_RATIO = 50


def read_info(path: Path, source: Source | None = None, label: str | None = None, *, early: bool = False) -> PackageInfo:
    """Only the `info/` metadata of an archive (reads the whole stream for `.tar.bz2`)."""
    label = label or package_label(path)
    source = source if source is not None else path
    if path.name.endswith(".conda"):
        archive = CondaArchive(source, label)
        try:
            return archive.read_info()
        finally:
            archive.close()
    if path.name.endswith(".tar.bz2"):
        files: dict[str, bytes] = {}
        seen_payload = False
        with open_tar_bz2(source, label) as stream:
            for member in iter_tar(label, stream):
                if member.name.startswith("info/"):
                    if member.kind == "file":
                        files[member.name] = read_bounded(label, member)
                elif early and files and not seen_payload:
                    break  # conda's order: all of info/ first, so the rest is payload
                elif early and not files:
                    raise PayloadFirst()
                else:
                    seen_payload = True
        return parse_info(label, files)
    raise InputError(f"{path}: not a conda package (expected .conda or .tar.bz2)")


def record_from_archive(path: Path, url: str | None = None) -> CondaRecord:
    """The CondaRecord of a package file, from its index.json (as rattler's `from_package_archive`)."""
    try:
        info = read_info(path, early=True)  # conda's info-first .tar.bz2: stop after info/
    except PayloadFirst:
        info = read_info(path)
    h = hash_file(path)
    return CondaRecord.from_repodata(info.index, url=url or path.resolve().as_uri(), file_name=path.name,
                                     where=f"{path.name}: info/index.json", sha256=h.sha256.hexdigest(),
                                     md5=h.md5.hexdigest(), size=h.size)
