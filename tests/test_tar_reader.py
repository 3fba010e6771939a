"""The installer's own streaming tar reader (pixibuild.conda.archive) against Python's tarfile: on
every tar tarfile writes (ustar, GNU, PAX; long and non-ASCII names, links) both read the same
members with the same bodies, and on damaged tars ours reads exactly what tarfile reads or refuses
the archive with an InputError (never a different member, never another exception)."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixibuild.conda.archive import MAX_TAR_EXTENSIONS, _TarStream, iter_tar
from pixibuild.errors import InputError

_NAME_PART = st.text(alphabet=st.sampled_from("abz09._-é€ "), min_size=1, max_size=40)
_NAMES = st.one_of(st.lists(_NAME_PART, min_size=1, max_size=6).map("/".join),
                   st.builds(lambda part, n: "/".join([part] * n), _NAME_PART, st.integers(3, 25)))  # long
# Offsets inside a header block worth damaging: name, mode, uid, gid, size, mtime, checksum, type,
# linkname, magic, devmajor/minor, prefix.
_HEADER_SPOTS = (0, 1, 99, 100, 103, 108, 116, 124, 130, 136, 148, 150, 155, 156, 157, 257, 263, 329, 337, 345, 499)


@st.composite
def _members(draw) -> list[tuple[str, str, bytes | str, int]]:
    """(kind, name, data or link target, mode) with unique names."""
    out, names = [], set()
    for _ in range(draw(st.integers(0, 8))):
        name = draw(_NAMES)
        if name in names:
            continue
        names.add(name)
        kind = draw(st.sampled_from(["file", "file", "dir", "symlink", "hardlink"]))
        mode = draw(st.sampled_from([0o644, 0o755, 0o4755, 0o600, 0o7777]))
        if kind == "file":
            out.append((kind, name, draw(st.binary(max_size=1500)), mode))
        elif kind == "dir":
            out.append((kind, name, b"", mode))
        else:
            out.append((kind, name, draw(_NAMES), mode))
    return out


def _write(members, fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for kind, name, payload, mode in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}[kind]
            if kind != "dir":
                info.linkname = payload
            tar.addfile(info)
    return buf.getvalue()


def _tarfile_view(data: bytes) -> list[tuple]:
    """What tarfile's stream mode (the reader we replaced) yields: raw header fields and bodies."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        for info in tar:
            body = tar.extractfile(info).read() if info.isreg() else None
            out.append((info.name, info.type, info.mode, info.size, info.linkname, body))
    return out


def _our_view(data: bytes) -> list[tuple]:
    tar = _TarStream("pkg", io.BytesIO(data))
    out = []
    while (header := tar.next_header()) is not None:
        body = tar.read_body(-1) if header.type in (b"0", b"\0", b"7") else None
        out.append((header.name, header.type, header.mode, header.size, header.linkname, body))
    return out


@settings(max_examples=150, deadline=None)
@given(_members(), st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
def test_reads_what_tarfile_writes(members, fmt: int) -> None:
    try:
        data = _write(members, fmt)
    except ValueError:  # ustar cannot hold a long name
        return
    assert _our_view(data) == _tarfile_view(data)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(_members(), st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]), st.data())
def test_damaged_tars_read_like_tarfile_or_refused(members, fmt: int, data) -> None:
    raw = bytearray(_write(members, fmt))
    for _ in range(data.draw(st.integers(1, 4))):
        if data.draw(st.booleans()):  # somewhere in a header block
            at = min(len(raw) - 1, 512 * data.draw(st.integers(0, len(raw) // 512)) + data.draw(st.sampled_from(_HEADER_SPOTS)))
        else:
            at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "zero", "cut", "digit", "field"]))
        if action == "field":  # change a header byte and fix the checksum: header fields, not checksums
            block = at - at % 512
            raw[at] = ord(data.draw(st.sampled_from("0125x/\0\x80\xffa 9")))
            if len(raw) >= block + 512:
                raw[block + 148: block + 156] = b" " * 8
                raw[block + 148: block + 156] = b"%06o\0 " % (sum(raw[block: block + 512]) & 0o777777)
        elif action == "flip":
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "zero":
            raw[at] = 0
        elif action == "digit":
            raw[at] = ord(data.draw(st.sampled_from("0179 x")))
        else:
            del raw[at:]
            break
    damaged = bytes(raw)
    try:
        ours = _our_view(damaged)
    except InputError:
        return  # refusing a damaged archive is always allowed
    assert ours == _tarfile_view(damaged)


def test_member_names_are_checked_and_bodies_stream(tmp_path) -> None:
    data = _write([("file", "a/b.txt", b"x" * 3000, 0o644), ("symlink", "a/c", "b.txt", 0o777)], tarfile.PAX_FORMAT)
    members = list(iter_tar("pkg", io.BytesIO(data)))
    assert [(m.name, m.kind, m.linkname) for m in members] == [("a/b.txt", "file", ""), ("a/c", "symlink", "b.txt")]
    with pytest.raises(ValueError, match="moved on"):  # a body is only readable while it is current
        members[0].fileobj.read()
    escaping = _write([("file", "../x", b"", 0o644)], tarfile.PAX_FORMAT)
    with pytest.raises(InputError, match="escapes"):
        list(iter_tar("pkg", io.BytesIO(escaping)))


def test_sparse_and_endless_extension_headers_are_refused() -> None:
    info = tarfile.TarInfo("s")
    info.type = tarfile.GNUTYPE_SPARSE
    with pytest.raises(InputError, match="sparse"):
        list(iter_tar("pkg", io.BytesIO(info.tobuf(tarfile.GNU_FORMAT) + bytes(1024))))
    long = tarfile.TarInfo("n" * 200)
    one = long.tobuf(tarfile.GNU_FORMAT)
    chain = one[:1024] * (MAX_TAR_EXTENSIONS + 2) + one[1024:]  # long-name headers in a row
    with pytest.raises(InputError, match="extension headers"):
        list(iter_tar("pkg", io.BytesIO(chain)))
    with pytest.raises(InputError, match="not a readable tar stream"):
        list(iter_tar("pkg", io.BytesIO(b"not a tar at all")))


def _v7_directory() -> bytes:
    """An old V7-style directory: a regular-file type byte of NUL and a trailing slash."""
    info = tarfile.TarInfo("olddir/")
    info.type = tarfile.DIRTYPE
    block = bytearray(info.tobuf(tarfile.USTAR_FORMAT))
    block[156] = 0
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block) + bytes(1024)


def _big_numbers() -> bytes:
    """GNU base-256 number fields (ids too large for octal)."""
    info = tarfile.TarInfo("big")
    info.uid = info.gid = 1 << 40
    info.size = 3
    block = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    block[124:136] = b"\x80" + (3).to_bytes(11, "big")  # the size too, as GNU tar writes sizes > 8 GiB
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block) + b"abc".ljust(512, b"\0") + bytes(1024)


@pytest.mark.parametrize("data", [_v7_directory(), _big_numbers()], ids=["v7-directory", "base-256"])
def test_old_and_gnu_header_forms(data: bytes) -> None:
    assert _our_view(data) == _tarfile_view(data)
    assert _tarfile_view(data)  # the case is not empty
