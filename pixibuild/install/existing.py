"""What is already at an install target, and how a new install would change it.

`unpack -o DIR` replaces `DIR/<env>` whole (atomically): fine for a conda environment, which the user
expects to be replaced and is told how (packages added, removed, changed); not fine for a directory of
their own that happens to have that name, which is refused unless forced.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from pixibuild.conda.records import CondaRecord

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
