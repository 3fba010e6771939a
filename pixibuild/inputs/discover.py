"""Which directories of a workspace are projects, and what their tasks are called: found by walking
the tree and reading names only, never a lock (planning a monorepo from its plan cache starts here
and must stay cheap to import: no TOML or YAML reader)."""

from __future__ import annotations

import os
from pathlib import Path

MANIFEST_NAMES = ("pixi.toml", "pyproject.toml")
"""Manifest file names, in pixi's order of preference (inputs/manifest.py reads them)."""

_SKIP_DIRS = {".git", ".pixi", ".venv", "node_modules", "build", "__pycache__", "cache", "channel"}


def discover_projects(root: Path) -> list[Path]:
    """Every directory under `root` with a pixi manifest and a pixi.lock (a monorepo's projects)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        if "pixi.lock" not in filenames:
            continue
        if "pixi.toml" in filenames or "pyproject.toml" in filenames:
            found.append(Path(dirpath))
    return sorted(found)


def label_projects(names: dict[Path, str | None], root: Path) -> dict[str, Path]:
    """Task-name label per project directory: its manifest name, or its path relative to `root` when
    two projects share a name (or its manifest cannot be read: name None). Labels never contain ':'
    (doit's separator)."""
    counts: dict[str | None, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    out: dict[str, Path] = {}
    for directory, name in sorted(names.items()):
        label = name
        if name is None or counts[name] > 1:
            try:
                label = directory.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                label = directory.as_posix()
        label = (label or "").replace(":", "_") or "root"
        out[label] = directory
    return out
