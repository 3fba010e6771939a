"""`channel/<subdir>/repodata.json` exactly as pixi-pack writes it, from the lock's records.

Records come from the lock, not from the archives' index.json, so repodata patches recorded in the
lock win (pixi-pack does the same). Layout: `info.subdir`, empty `packages`, every archive (also
`.tar.bz2`) under `packages.conda`, `repodata_version` 2, keys sorted, 2-space indent, no newline.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from pixibuild.conda.records import CondaRecord

# Fields rattler's PackageRecord serializer drops when they are empty collections.
_OMIT_WHEN_EMPTY = ("constrains", "extra_depends", "flags", "track_features")
# Lock fields that are not PackageRecord fields (where a package came from, not what it is).
_NOT_RECORD_FIELDS = frozenset({"url", "fn", "channel", "conda", "kind", "location", "file_name",
                                "input", "sources", "package_build_source", "source", "variants"})


def repodata_record(record: CondaRecord) -> dict[str, Any]:
    """The PackageRecord JSON object for one locked package (alphabetical keys, None omitted)."""
    fields: dict[str, Any] = {k: v for k, v in record.extra.items() if k not in _NOT_RECORD_FIELDS}
    fields.update(
        build=record.build,
        build_number=record.build_number,
        constrains=list(record.constrains),
        depends=list(record.depends),
        license=record.license,
        md5=record.md5,
        name=record.name,
        noarch=record.noarch,
        sha256=record.sha256,
        size=record.size,
        subdir=record.subdir,
        timestamp=record.timestamp,
        version=record.version,
    )
    for key in _OMIT_WHEN_EMPTY:
        if not fields.get(key):
            fields.pop(key, None)
    if isinstance(fields.get("track_features"), list):
        fields["track_features"] = " ".join(fields["track_features"])
    return {k: fields[k] for k in sorted(fields) if fields[k] is not None}


def repodata_json(subdir: str, records: Iterable[CondaRecord]) -> bytes:
    """The bytes of `channel/<subdir>/repodata.json` for the records of that subdir."""
    packages = {}
    for record in sorted(records, key=lambda r: r.file_name):
        if record.file_name in packages:
            raise ValueError(f"two packages named {record.file_name} in subdir {subdir}")
        packages[record.file_name] = repodata_record(record)
    document = {
        "info": {"subdir": subdir},
        "packages": {},
        "packages.conda": packages,
        "repodata_version": 2,
    }
    return json.dumps(document, indent=2, ensure_ascii=False).encode()
