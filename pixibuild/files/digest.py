"""The two digests everything is keyed by: sha256 (+ md5, size) of a byte stream, computed while it
streams, and sha256 of canonical JSON (sorted keys, compact, UTF-8), so equal values give equal keys
on every machine."""

from __future__ import annotations

import hashlib
import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1 << 20


class Hasher:
    """sha256 + md5 + byte count over a stream, updated as bytes pass (never a second read)."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5()
        self.size = 0

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        self.md5.update(data)
        self.size += len(data)

    def update_from_file(self, f: BinaryIO) -> None:
        while chunk := f.read(CHUNK):
            self.update(chunk)


def sha256_file(path: str | Path) -> tuple[str, int]:
    """sha256 hex and size of a file, streamed (for content keys and digests where md5 is not wanted)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def hash_file(path: str | Path) -> Hasher:
    """Hash a file by streaming it (never whole in memory)."""
    h = Hasher()
    with open(path, "rb") as f:
        h.update_from_file(f)
    return h


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
"""The canonical form (json.dumps with options builds a new encoder each time; planning a monorepo
makes ~50,000 content keys). Encoding keeps no state in it, so threads may share it."""

_C_ENCODE = c_make_encoder(None, str, encode_basestring, None, ":", ",", True, False, True) if c_make_encoder else None
"""The same encoder's C core, made once: `JSONEncoder.encode` makes a new one on every call (~2 µs, a
third of a content key's cost). No circular-reference markers: keys are made of plain data."""


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8; values JSON cannot hold are written as their str().
    These are the bytes whose sha256 is an OCI blob digest or a content key."""
    if _C_ENCODE is not None:
        return "".join(_C_ENCODE(value, 0)).encode()
    return _CANONICAL.encode(value).encode()


def json_digest(value: Any) -> str:
    """sha256 hex of `canonical_json(value)`."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of some bytes: an OCI descriptor's digest."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"
