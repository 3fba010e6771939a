"""What an isolated build environment is made from, as plain data (part of wheel keys).

The plan cache calls `isolated_env_identity` on every run, for every cached project that builds
PyPI sources, to tell whether its wheel keys still hold: this module stays light (no build frontend,
no installer; reaching it through rules/wheel.py imported those: 0.15 s of a warm monorepo `doit list`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pixibuild.net.config import NetConfig
from pixibuild.pypi.index import index_config


def builder_python() -> list:
    """Identity of the interpreter an isolated environment is made from (part of its key)."""
    return [sys.implementation.name, list(sys.version_info[:3]), os.path.realpath(sys._base_executable)]


def isolated_env_identity(lock_indexes: tuple[str, ...], project_root: str) -> list:
    """What an isolated build environment would be made from: the index (pixi config) and interpreter."""
    net = NetConfig.load(project_root=Path(project_root))
    return [list(index_config(lock_indexes, net).identity), builder_python()]
