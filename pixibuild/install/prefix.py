"""Prefix placeholder replacement, streamed: text mode (every occurrence, shebang rules) and binary
mode (C-string aware, NUL padded, same length).

Mirrors rattler's `prefix_replacement` so installed bytes match what pixi produces: a shebang that
the new prefix makes longer than the kernel accepts becomes `#!/usr/bin/env <exe>` (python gets the
`/bin/sh` exec trampoline), and binary strings keep their length by padding before the NUL.
"""

from __future__ import annotations

import re
from typing import IO, Callable

from pixibuild.files.digest import CHUNK

MAX_SHEBANG_LINUX = 127
MAX_SHEBANG_MACOS = 512

_SHEBANG = re.compile(r"^(#!(?:[ ]*)(/(?:\\ |[^ \n\r\t])*)(.*))$", re.S)
_PYTHON = re.compile(r"^python(?:\d+(?:\.\d+)?)?$")


class PrefixTooLong(ValueError):
    """The new prefix does not fit where a binary file stores the placeholder."""


def _is_unix(platform: str) -> bool:
    return not platform.startswith("win-")


def _valid_shebang_length(shebang: str, platform: str) -> bool:
    if platform.startswith("linux-"):
        return len(shebang.encode("utf-8", "surrogateescape")) <= MAX_SHEBANG_LINUX
    if platform.startswith("osx-"):
        return len(shebang.encode("utf-8", "surrogateescape")) <= MAX_SHEBANG_MACOS
    return True


def _shebang_to_env(shebang: str) -> str:
    match = _SHEBANG.match(shebang)
    if not match:
        return shebang
    path, rest = match.group(2), match.group(3)
    exe = path.rsplit("/", 1)[-1]
    if _PYTHON.match(exe):
        return f"#!/bin/sh\n'''exec' \"{path}\"{rest} \"$0\" \"$@\" #'''"
    return f"#!/usr/bin/env {exe}{rest}"


def replace_shebang(shebang: str, old: str, new: str, platform: str) -> str:
    """The first line of a text file after prefix replacement, made valid for the kernel."""
    if " " in new:
        if old not in shebang:
            return shebang
        return _shebang_to_env(shebang).replace(old, new)
    shebang = shebang.replace(old, new)
    if not shebang.startswith("#!") or _valid_shebang_length(shebang, platform):
        return shebang
    return _shebang_to_env(shebang)


Writer = Callable[[bytes], object]


def _read_first_line(src: IO[bytes]) -> tuple[bytes, bytes]:
    """(first line without its newline-or-rest, bytes already read after it)."""
    buf = b""
    while True:
        chunk = src.read(CHUNK)
        buf += chunk
        nl = buf.find(b"\n")
        if nl >= 0:
            return buf[:nl], buf[nl:]
        if not chunk:
            return buf, b""


def copy_text(src: IO[bytes], write: Writer, placeholder: str, new_prefix: str, platform: str) -> None:
    """Copy `src`, replacing every occurrence of `placeholder` (shebang line handled specially)."""
    old, new = placeholder.encode(), new_prefix.encode()
    head = src.read(2)
    carry = head
    if head == b"#!" and _is_unix(platform):
        line, rest = _read_first_line(src)
        first = (head + line).decode("utf-8", "surrogateescape")
        write(replace_shebang(first, placeholder, new_prefix, platform).encode("utf-8", "surrogateescape"))
        carry = rest
    _stream_replace(src, write, old, new, carry)


def _stream_replace(src: IO[bytes], write: Writer, old: bytes, new: bytes, carry: bytes) -> None:
    keep = len(old) - 1
    eof = False
    while True:
        if not eof:
            chunk = src.read(CHUNK)
            eof = not chunk
            buf = carry + chunk
        else:
            buf = carry
        pos = 0
        while (i := buf.find(old, pos)) >= 0:
            write(buf[pos:i])
            write(new)
            pos = i + len(old)
        if eof:
            write(buf[pos:])
            return
        tail = max(pos, len(buf) - keep)
        write(buf[pos:tail])
        carry = buf[tail:]


def copy_binary(src: IO[bytes], write: Writer, placeholder: str, new_prefix: str) -> None:
    """Copy `src`, replacing the placeholder inside each C string and NUL-padding to the same length."""
    old, new = placeholder.encode(), new_prefix.encode()
    shrink = len(old) - len(new)
    keep = len(old) - 1
    carry = b""
    eof = False
    while True:
        if not eof:
            chunk = src.read(CHUNK)
            eof = not chunk
            buf = carry + chunk
        else:
            buf = carry
        pos = 0
        pending = False
        while (i := buf.find(old, pos)) >= 0:
            nul = buf.find(b"\0", i + len(old))
            if nul < 0:
                if not eof:
                    pending = True  # the C string continues past this buffer: read more
                    write(buf[pos:i])
                    pos = i
                    break
                nul = len(buf)
            if shrink < 0:
                raise PrefixTooLong(f"new prefix ({len(new)} bytes) is longer than the placeholder "
                                    f"({len(old)} bytes) of a binary file")
            write(buf[pos:i])
            segment = buf[i:nul]
            count = segment.count(old)
            write(segment.replace(old, new))
            write(b"\0" * (count * shrink))
            pos = nul
        if eof and not pending:
            write(buf[pos:])
            return
        if pending:
            carry = buf[pos:]
            continue
        tail = max(pos, len(buf) - keep)
        write(buf[pos:tail])
        carry = buf[tail:]
