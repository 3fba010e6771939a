"""`--inject`: add local packages and wheels to a pack, then prove the set is still installable.

Conda records are read from each archive's own `info/index.json` (hashes computed from the file),
wheels from their file names; both go through the store like downloads, so they are verified and
streamed into the tar the same way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from pixibuild.conda.version import MatchSpec, VersionError
from pixibuild.errors import InputError
from pixibuild.conda.archive import record_from_archive
from pixibuild.conda.records import CondaRecord, PypiRecord
from pixibuild.files.digest import hash_file
from pixibuild.store.blobs import Store

log = logging.getLogger(__name__)


def inject_files(paths: Sequence[Path], store: Store, platform: str
                 ) -> tuple[list[tuple[CondaRecord, Path]], list[tuple[PypiRecord, Path]]]:
    """Records + store blobs for `--inject` files; a package for another platform is an error."""
    conda: list[tuple[CondaRecord, Path]] = []
    wheels: list[tuple[PypiRecord, Path]] = []
    for path in paths:
        if not path.is_file():
            raise InputError("injected file not found", path=path, field="--inject")
        name = path.name
        if name.endswith((".conda", ".tar.bz2")):
            record = record_from_archive(path)
            if record.subdir not in (platform, "noarch"):
                raise InputError(f"package is for {record.subdir}, not {platform}", path=path, field="--inject")
            blob = store.ingest_file(path, sha256=record.sha256, label=name)
            conda.append((record, blob))
        elif name.endswith(".whl"):
            sha256 = hash_file(path).sha256.hexdigest()
            record = PypiRecord.from_wheel_file(name, sha256=sha256, where=f"--inject {path}")
            wheels.append((record, store.ingest_file(path, sha256=sha256, label=name)))
        else:
            raise InputError("can only inject .conda, .tar.bz2 or .whl files", path=path, field="--inject")
    return conda, wheels


def check_dependencies(records: Sequence[CondaRecord]) -> None:
    """Every non-virtual dependency must be met by a record in the set, and every constraint on a
    present package must hold — else the pack would not install (pixi-pack checks the same)."""
    by_name: dict[str, list[CondaRecord]] = {}
    for record in records:
        by_name.setdefault(record.name.lower(), []).append(record)
    for record in records:
        for kind, specs in (("dependency", record.depends), ("constraint", record.constrains)):
            for text in specs:
                spec = _parse(text, record)
                if spec is None or spec.name.startswith("__"):
                    continue
                candidates = by_name.get(spec.name, [])
                if kind == "constraint" and not candidates:
                    continue
                if not any(spec.matches(c.name, c.version, c.build) for c in candidates):
                    found = ", ".join(f"{c.name} {c.version} {c.build}" for c in candidates) or "nothing"
                    raise InputError(f"package {record.dist_name}: {kind} '{text}' is not satisfied "
                                     f"(the pack has {found})", field="--inject")


def _parse(text: str, record: CondaRecord) -> MatchSpec | None:
    text = text.split("::", 1)[-1]
    try:
        return MatchSpec.parse(text)
    except VersionError:
        name = text.split()[0].split("[")[0] if text.split() else ""
        if not name:
            return None
        log.warning("package %s: cannot parse '%s'; checking the name only", record.dist_name, text)
        return MatchSpec(name.lower())


def replace_injected(pairs: list, extra: list) -> list:
    """Injected packages replace locked ones of the same name (pixi-pack keeps both; a channel
    with two builds of one name would let the solver pick either, so we keep the injected one)."""
    names = {r.name for r, _ in extra}
    return [p for p in pairs if p[0].name not in names] + list(extra)
