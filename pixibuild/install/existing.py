"""What is already at an install target, and how a new install would change it.

`unpack -o DIR` replaces `DIR/<env>` whole (atomically): fine for a conda environment, which the user
expects to be replaced and is told how (packages added, removed, changed, and the files no package
installed, which go with it); not fine for a directory of their own that happens to have that name, which
is refused unless forced.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from pixibuild.conda.records import CondaRecord
from pixibuild.install.link import CLOBBERS_DIR

ABSENT, EMPTY, ENVIRONMENT, OTHER = "absent", "empty", "environment", "other"


def target_kind(path: Path) -> str:
    """absent, empty (directory), environment (a directory with conda-meta/), or other."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ABSENT if not os.path.islink(path) else OTHER  # a dangling symlink is someone's
    if not stat.S_ISDIR(st.st_mode):
        return OTHER
    if (path / "conda-meta").is_dir():
        return ENVIRONMENT
    with os.scandir(path) as entries:
        return OTHER if any(True for _ in entries) else EMPTY


def installed_packages(prefix: Path) -> dict[str, str]:
    """name → "version build" of the packages conda-meta lists (unreadable records are skipped:
    they only feed the summary)."""
    out: dict[str, str] = {}
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        try:
            data = json.loads(path.read_bytes())
            out[str(data["name"])] = f"{data['version']} {data['build']}"
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def unowned_files(prefix: Path) -> list[str]:
    """Files and symlinks under `prefix` that no package installed: not in any conda-meta record's
    `files`, nor in a wheel's `RECORD` (pypa installer writes one per wheel). A user's own files, which
    a replacement removes. The installer's bookkeeping (conda-meta/, __clobbers__/) and the bytecode Python
    caches as it runs are not counted."""
    owned: set[str] = set()
    for path in (prefix / "conda-meta").glob("*.json"):
        try:
            files = json.loads(path.read_bytes()).get("files") or []
        except (OSError, ValueError, AttributeError):
            continue
        owned.update(f for f in files if isinstance(f, str))
    for record in [*prefix.glob("lib/python*/site-packages/*.dist-info/RECORD"),
                   *prefix.glob("Lib/site-packages/*.dist-info/RECORD")]:
        base = record.parent.parent
        try:
            lines = record.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            name = line.rsplit(",", 2)[0] if line.count(",") >= 2 else line
            if name:
                owned.add(os.path.relpath(os.path.normpath(base / name), prefix).replace(os.sep, "/"))
    out = []
    for dirpath, dirnames, filenames in os.walk(prefix):
        rel_dir = os.path.relpath(dirpath, prefix)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in ("conda-meta", CLOBBERS_DIR)]
        names = filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in names:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            if rel not in owned and not (name.endswith(".pyc") and "__pycache__" in rel):  # Python's own cache
                out.append(rel)
    return sorted(out)


@dataclass
class Changes:
    """Packages added, removed and changed (old → new) between two installs."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0

    def lines(self, limit: int = 12) -> list[str]:
        """A short list: `+ name version build`, `- …`, `~ name old → new`; the rest counted."""
        items = [*self.added, *self.removed, *self.changed]
        shown = [f"  {item}" for item in items[:limit]]
        if len(items) > limit:
            shown.append(f"  … and {len(items) - limit} more")
        return shown

    def counts(self) -> str:
        return (f"{len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed, "
                f"{self.unchanged} unchanged")


def changes(before: dict[str, str], records: Iterable[CondaRecord]) -> Changes:
    after = {r.name: f"{r.version} {r.build}" for r in records}
    out = Changes()
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old is None:
            out.added.append(f"+ {name} {new}")
        elif new is None:
            out.removed.append(f"- {name} {old}")
        elif old != new:
            out.changed.append(f"~ {name} {old} → {new}")
        else:
            out.unchanged += 1
    return out
