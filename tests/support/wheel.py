"""Minimal but valid wheels (METADATA, WHEEL, RECORD with hashes, optional console scripts) for
pack/unpack tests, written deterministically."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path
from typing import Mapping


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_wheel(out_dir: Path, name: str, version: str, files: Mapping[str, bytes],
                console_scripts: Mapping[str, str] | None = None) -> Path:
    """`<out_dir>/<name>-<version>-py3-none-any.whl` containing `files` (paths relative to
    site-packages)."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    members: dict[str, bytes] = dict(files)
    members[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    members[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: pixibuild-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    if console_scripts:
        lines = "".join(f"{k} = {v}\n" for k, v in sorted(console_scripts.items()))
        members[f"{info}/entry_points.txt"] = f"[console_scripts]\n{lines}".encode()
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in sorted(members.items()))
    members[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in sorted(members.items()):
            zi = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data)
    return path
