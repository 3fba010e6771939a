"""The embedded demo is real: rattler reads its locks and installs it, and its binary runs."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from conftest import skip_unless_ci
from pixibuild.demo.demo import compile_hello, write_demo

rattler = pytest.importorskip("rattler")


def test_demo_installs_with_rattler_and_runs(tmp_path: Path) -> None:
    projects = write_demo(tmp_path / "demo")
    assert set(projects) == {"webapp", "worker"}
    lock = rattler.LockFile.from_path(projects["webapp"] / "pixi.lock")
    assert sorted(name for name, _ in lock.environments()) == ["default", "prod"]
    records = lock.environment("prod").conda_repodata_records_for_platform(
        next(p for p in lock.environment("prod").platforms() if str(p) == "linux-64"))
    prefix = tmp_path / "env"
    asyncio.run(rattler.install(records, prefix, cache_dir=tmp_path / "cache", show_progress=False))
    if compile_hello() is None:
        skip_unless_ci("gcc with static libc (Debian: gcc, libc6-dev) not available: the demo uses a shell stand-in")
    out = subprocess.run([str(prefix / "bin/hello")], capture_output=True, text=True, check=True).stdout
    assert out == f"Hello from the pixibuild demo!\nprefix: {prefix}\n"


def test_demo_is_deterministic(tmp_path: Path) -> None:
    write_demo(tmp_path / "a")
    write_demo(tmp_path / "b")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / "channel").rglob("*") if p.is_file())
    assert files_a
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
