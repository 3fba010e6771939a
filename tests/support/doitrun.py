"""Run doit on a workspace in a subprocess and report which tasks ran: what the incremental tests
and bench/graph.py count. (A subprocess, so the library never imports doit.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

TWO_LINE_DODO = "from pixibuild.rules import workspace_tasks\nglobals().update(workspace_tasks(__file__))\n"
"""A user's whole dodo.py for a monorepo (README documents it)."""


@dataclass
class DoitRun:
    returncode: int
    executed: list[str]
    up_to_date: list[str]
    seconds: float
    output: str


def write_dodo(root: Path) -> Path:
    path = root / "dodo.py"
    path.write_text(TWO_LINE_DODO)
    return path


def run_doit(root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 900) -> DoitRun:
    """`python -m doit -f root/dodo.py ARGS`; executed = lines doit prints as `.  name`."""
    full_env = dict(os.environ, **(env or {}))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "doit", "-f", str(root / "dodo.py"), "-d", str(root), *args],
                          capture_output=True, text=True, env=full_env, timeout=timeout)
    seconds = time.perf_counter() - start
    executed, up_to_date = [], []
    for line in proc.stdout.splitlines():
        if line.startswith(".  "):
            executed.append(line[3:].strip())
        elif line.startswith("-- "):
            up_to_date.append(line[3:].strip())
    return DoitRun(proc.returncode, executed, up_to_date, seconds, proc.stdout + proc.stderr)
