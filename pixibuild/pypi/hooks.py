"""How PEP 517 hooks run: `build.ProjectBuilder` (the PyPA frontend library) calls them through
`pyproject_hooks` in the build environment's python; this runner gives that subprocess a clean,
reproducible environment and keeps its output in a log whose tail a failure quotes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Mapping

from packaging.utils import canonicalize_name

DEFAULT_EPOCH = 315532800
"""1980-01-01T00:00:00Z (the earliest zip timestamp): SOURCE_DATE_EPOCH when none is set, so wheels are
reproducible by default."""
HOOK_TIMEOUT = 3600


def source_date_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return max(int(value), DEFAULT_EPOCH) if value.isdigit() else DEFAULT_EPOCH


def backend_environment(*, bin_dir: str | None, epoch: int, name: str, version: str) -> dict[str, str]:
    """The backend's environment: this one minus python/pip/conda settings that would leak the host's
    packages in, plus SOURCE_DATE_EPOCH, a fixed hash seed and time zone (reproducible output), and
    the locked version for setuptools-scm/hatch-vcs (a checkout without .git history would otherwise
    get a different one)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "PIP_", "CONDA", "SETUPTOOLS_SCM")) and k not in ("VIRTUAL_ENV",)}
    env.update(SOURCE_DATE_EPOCH=str(epoch), PYTHONHASHSEED="0", TZ="UTC", LC_ALL="C.UTF-8",
               PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1")
    if bin_dir:
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    if version:
        upper = canonicalize_name(name).replace("-", "_").upper()
        env[f"SETUPTOOLS_SCM_PRETEND_VERSION_FOR_{upper}"] = version
    return env


class LoggedRunner:
    """A `pyproject_hooks` subprocess runner writing the hook's output to `log`."""

    def __init__(self, log: Path, environment: Mapping[str, str]):
        self.log = log
        self.environment = dict(environment)

    def __call__(self, cmd, cwd=None, extra_environ=None) -> None:
        env = dict(self.environment)
        env.update(extra_environ or {})
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"$ {' '.join(str(c) for c in cmd)}  ({time.strftime('%H:%M:%S')})\n".encode())
            out.flush()
            subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                           check=True, timeout=HOOK_TIMEOUT)


def log_tail(log: Path, lines: int = 6) -> str:
    """The last meaningful lines of a log, joined on one line (for a one-line error): traceback
    carets and our own command lines left out."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines()
            if line.strip() and not line.startswith(("$ ", "# ")) and line.strip().strip("^~ ")]
    return " | ".join(kept[-lines:])
