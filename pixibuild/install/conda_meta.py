"""`conda-meta/<name>-<version>-<build>.json` and `conda-meta/history`, as rattler writes them.

The record is the lock's (repodata patches included) plus what linking produced: `files`,
`paths_data` (with `sha256_in_prefix` for patched files). Written last for each package, so a
record on disk means the package is complete.
"""

from __future__ import annotations

from pixibuild.net.auth import storage_key

import json
from json.encoder import encode_basestring as _encode_str  # the C one: what json.dumps uses for ensure_ascii=False
from pathlib import Path
from typing import Any

from pixibuild.files.atomic import atomic_output, atomic_write_bytes
from pixibuild.conda.records import CondaRecord
from pixibuild.install.link import LinkedPackage

HISTORY_PIXI_UNPACK = b"// not relevant for pixi but for `conda run -p`"
"""What pixi-unpack writes to conda-meta/history (conda run needs the file to exist)."""

_OMIT_IF_EMPTY_IN_PREFIX = ("features", "purls")


def package_record_json(record: CondaRecord) -> dict[str, Any]:
    """The package's PackageRecord JSON as conda-meta holds it (empty features/purls left out)."""
    doc = record.to_repodata()
    for key in _OMIT_IF_EMPTY_IN_PREFIX:
        if key in doc and not doc[key]:
            del doc[key]
    return doc


def prefix_record_json(linked: LinkedPackage, *, requested_spec: str | None = None) -> dict[str, Any]:
    """The full conda-meta JSON object of one linked package."""
    record = linked.record
    doc = package_record_json(record)
    doc["fn"] = record.file_name
    # credentials written into a lock's URLs (user:password@, /t/<token>/) never reach a prefix
    doc["url"] = storage_key(record.url) if record.url else record.url
    doc["channel"] = storage_key(record.channel) if record.channel else record.channel
    doc["requested_specs"] = [requested_spec] if requested_spec else []
    paths = sorted(linked.paths, key=lambda p: p.path)
    doc["files"] = [p.path for p in paths if p.path_type != "directory"]
    doc["paths_data"] = {"paths_version": 1, "paths": [p.to_json() for p in paths]}
    doc["link"] = {"type": 1}
    return doc


def write_prefix_record(target_dir: Path, linked: LinkedPackage, *, fsync: bool = True) -> Path:
    """Write the record (temp + rename). Callers that swap in a whole staged directory skip fsync."""
    path = target_dir / "conda-meta" / f"{linked.record.dist_name}.json"
    data = dumps_indented(prefix_record_json(linked)).encode()
    with atomic_output(path, mode=0o644, fsync=fsync) as out:
        out.write(data)
    return path


class _NotPlainJson(Exception):
    """A value `dumps_indented` leaves to the json module (a non-string key)."""


def dumps_indented(doc: Any) -> str:
    """`json.dumps(doc, indent=2, ensure_ascii=False)`, byte for byte, in half the time: with an
    indent the json module has no C encoder, and a record lists every installed file (thousands of
    small objects per large package)."""
    try:
        return _indented(doc, "\n")
    except _NotPlainJson:
        return json.dumps(doc, indent=2, ensure_ascii=False)


def _indented(value: Any, indent: str) -> str:
    kind = value.__class__
    if kind is str:
        return _encode_str(value)
    if kind is dict or (kind is not list and kind is not tuple and isinstance(value, dict)):
        if not value:
            return "{}"
        inner = indent + "  "
        items = []
        for key, item in value.items():
            if key.__class__ is not str:
                raise _NotPlainJson()
            item_kind = item.__class__
            if item_kind is str:
                items.append(f"{_encode_str(key)}: {_encode_str(item)}")
            elif item_kind is int:
                items.append(f"{_encode_str(key)}: {int.__repr__(item)}")
            else:
                items.append(f"{_encode_str(key)}: {_indented(item, inner)}")
        return "{" + inner + ("," + inner).join(items) + indent + "}"
    if kind is list or kind is tuple or isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        inner = indent + "  "
        return "[" + inner + ("," + inner).join([_indented(item, inner) for item in value]) + indent + "]"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return int.__repr__(value)
    return json.dumps(value, ensure_ascii=False)  # floats, subclasses: exactly as json writes them


def write_history(target_dir: Path, text: bytes = b"") -> None:
    atomic_write_bytes(target_dir / "conda-meta" / "history", text)
