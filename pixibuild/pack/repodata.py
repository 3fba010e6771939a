"""`channel/<subdir>/repodata.json` exactly as pixi-pack writes it, from the lock's records.

Records come from the lock, not from the archives' index.json, so repodata patches recorded in the
lock win (pixi-pack does the same). Layout: `info.subdir`, empty `packages`, every archive (also
`.tar.bz2`) under `packages.conda`, `repodata_version` 2, keys sorted, 2-space indent, no newline.
"""

from __future__ import annotations

import json
from typing import Iterable

from pixibuild.conda.records import CondaRecord
from pixibuild.errors import InputError


def repodata_json(subdir: str, records: Iterable[CondaRecord]) -> bytes:
    """The bytes of `channel/<subdir>/repodata.json` for the records of that subdir."""
    packages = {}
    for record in sorted(records, key=lambda r: r.file_name):
        if record.file_name in packages:
            raise InputError(f"two packages named {record.file_name} in subdir {subdir}", field="packages")
        packages[record.file_name] = record.to_repodata()
    document = {
        "info": {"subdir": subdir},
        "packages": {},
        "packages.conda": packages,
        "repodata_version": 2,
    }
    return json.dumps(document, indent=2, ensure_ascii=False).encode()
