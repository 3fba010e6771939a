"""What the remote cache tests share: "machines" (an empty store and build dir each, on this host) that run
`pixibuild build` on one workspace against a remote cache, and read what the run did (its summary JSON,
the tasks doit executed, its stderr)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pixibuild.store.blobs import Store


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    summary: dict
    executed: list[str]

    def kind(self, kind: str) -> list[str]:
        return sorted(n for n in self.executed if n.startswith(kind + ":"))

    def warnings(self, text: str) -> list[str]:
        return [line for line in self.stderr.splitlines() if text in line]


class Machine:
    """A CI runner: its own store and build dir (HOME too), sharing the workspace and the registry."""

    def __init__(self, root: Path, workspace: Path):
        self.root = root
        self.workspace = workspace
        self.store = root / "store"
        self.build_dir = root / "build"
        (root / "home").mkdir(parents=True, exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, PIXIBUILD_CACHE_DIR=str(self.store), PIXIBUILD_BUILD_DIR=str(self.build_dir),
                   HOME=str(self.root / "home"), XDG_CACHE_HOME=str(self.root / "home" / ".cache"),
                   PIXIBUILD_SUMMARY_JSON=str(self.root / "summary.json"))
        for name in ("PIXIBUILD_REMOTE_CACHE", "PIXIBUILD_REMOTE_CACHE_MODE", "PIXIBUILD_SHARD"):
            env.pop(name, None)
        env.update(extra)
        return env

    def start(self, *args: str, **env: str) -> subprocess.Popen:
        (self.root / "summary.json").unlink(missing_ok=True)
        return subprocess.Popen([sys.executable, "-m", "pixibuild", "build", "-C", str(self.workspace), "-n", "2", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env(**env))

    def finish(self, proc: subprocess.Popen, timeout: float = 600) -> Run:
        out, err = proc.communicate(timeout=timeout)
        path = self.root / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        executed = [line[3:].strip() for line in out.splitlines() if line.startswith(".  ")]
        return Run(proc.returncode, out, err, summary, executed)

    def build(self, *args: str, **env: str) -> Run:
        return self.finish(self.start(*args, **env))

    def outputs(self) -> dict[str, bytes]:
        """Every archive the machine built, by path relative to its build dir."""
        return {p.relative_to(self.build_dir).as_posix(): p.read_bytes() for p in sorted(self.build_dir.rglob("*.tar"))}

    def store_is_sound(self) -> None:
        """Every blob matches its name, no temp or partial file is left, every layer entry has its blob."""
        store = Store(self.store)
        assert store.verify(remove=False) == []
        leftovers = [p for p in self.store.rglob("*") if p.name.endswith((".tmp", ".part")) and p.is_file()]
        assert leftovers == []
        for entry in (self.store / "oci" / "layers").glob("*.json") if (self.store / "oci" / "layers").is_dir() else []:
            digest = json.loads(entry.read_text())["digest"].split(":", 1)[1]
            assert (self.store / "oci" / "blobs" / "sha256" / digest).is_file(), entry

    def package_blobs(self) -> set[str]:
        return {name for name, _ in Store(self.store).iter_blobs()}
