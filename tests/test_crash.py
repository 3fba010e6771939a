"""Crash safety: SIGKILL `pack`, `image` and `unpack` after N ms for many N, then check that no
half-written output sits under its final name, that every store blob matches its name, and that a
rerun produces the same bytes as an uninterrupted run."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pixibuild.demo.condapkg import PackageSpec, PkgFile, locked_record, write_channel
from support.http_server import TestServer
from pixibuild.demo.lockwriter import write_lock

N_PACKAGES = 24
PACKAGE_BYTES = 300_000
DELAYS_MS = (150, 350, 600, 900, 1300, 1800)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    """A project whose ~7 MB of packages come from a local server that streams slowly."""
    root = tmp_path_factory.mktemp("crash")
    rng = random.Random(7)
    specs = [PackageSpec(f"blob{i:02d}", "1.0", "0", subdir="linux-64",
                         files=[PkgFile(f"share/blob{i:02d}/data.bin", rng.randbytes(PACKAGE_BYTES)),
                                PkgFile(f"bin/tool{i:02d}", b"#!/bin/sh\necho @PREFIX@\n", 0o755, prefix="text")])
             for i in range(N_PACKAGES)]
    write_channel([(s, ".conda") for s in specs], root / "channel")
    server = TestServer(root / "channel").start()
    server.add_fault("slow", "*.conda", rate=500_000)  # ~0.6 s per package: kills land mid-fetch
    records = [locked_record(s, root / "channel" / "linux-64" / f"{s.dist_name}.conda",
                             url=server.url_for(f"linux-64/{s.dist_name}.conda")) for s in specs]
    proj = root / "proj"
    proj.mkdir()
    (proj / "pixi.toml").write_text(f'[workspace]\nname = "crash"\nchannels = ["{server.url}"]\n'
                                    'platforms = ["linux-64"]\n[dependencies]\n'
                                    + "".join(f'{s.name} = "*"\n' for s in specs))
    write_lock(proj / "pixi.lock", {"default": {"linux-64": records}}, channels=[server.url])
    yield proj
    server.stop()


def _cli(*args: str, store: Path) -> list[str]:
    return [sys.executable, "-m", "pixibuild", "-q", *args]


def _env(store: Path) -> dict[str, str]:
    return dict(os.environ, PIXIBUILD_CACHE_DIR=str(store))


def _run(args: list[str], store: Path) -> None:
    proc = subprocess.run(args, env=_env(store), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def _kill_after(args: list[str], store: Path, delay_ms: int) -> int | None:
    """Start, SIGKILL after `delay_ms` (if still running); returns the exit code if it finished."""
    proc = subprocess.Popen(args, env=_env(store), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return proc.wait(timeout=delay_ms / 1000)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None


def _store_is_sound(store: Path) -> None:
    """Every visible blob's content matches its name (temp/partial files are dot-files)."""
    for blob in (store / "blobs" / "sha256").glob("*/*"):
        if blob.name.startswith("."):
            continue
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, f"corrupt blob {blob}"


def _tree(root: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = b"->" + os.readlink(path).encode()
        elif path.is_file():
            out[rel] = path.read_bytes() + (b"+x" if os.access(path, os.X_OK) else b"")
    return out


@pytest.mark.slow
def test_pack_survives_sigkill_anywhere(project: Path, tmp_path: Path) -> None:
    reference = tmp_path / "ref.tar"
    _run(_cli("pack", str(project), "-p", "linux-64", "-o", str(reference), store=tmp_path / "ref"), tmp_path / "ref")
    killed = 0
    for delay in DELAYS_MS:
        store, out = tmp_path / f"s{delay}", tmp_path / f"out{delay}.tar"
        code = _kill_after(_cli("pack", str(project), "-p", "linux-64", "-o", str(out), store=store), store, delay)
        killed += code is None
        assert not out.exists() or out.read_bytes() == reference.read_bytes(), f"half-written output at {delay} ms"
        _store_is_sound(store)
        _run(_cli("pack", str(project), "-p", "linux-64", "-o", str(out), store=store), store)
        assert out.read_bytes() == reference.read_bytes()
        _store_is_sound(store)
    assert killed >= len(DELAYS_MS) // 2, "the workload finished before most kills: the test proves nothing"


@pytest.mark.slow
def test_image_and_unpack_survive_sigkill(project: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    pack = tmp_path / "env.tar"
    _run(_cli("pack", str(project), "-p", "linux-64", "-o", str(pack), store=store), store)
    ref_image = tmp_path / "ref-image.tar"
    image_args = ["image", str(project), "-p", "linux-64", "--base", "scratch", "--cache-dir"]
    _run(_cli(*image_args, str(tmp_path / "layers-ref"), "-o", str(ref_image), store=store), store)
    ref_unpack = tmp_path / "ref-unpack"
    _run(_cli("unpack", str(pack), "-o", str(ref_unpack), store=store), store)
    killed = 0
    for delay in (100, 300, 500, 800, 1100):
        out = tmp_path / f"image{delay}.tar"
        layers = tmp_path / f"layers{delay}"
        code = _kill_after(_cli(*image_args, str(layers), "-o", str(out), store=store), store, delay)
        killed += code is None
        assert not out.exists() or out.read_bytes() == ref_image.read_bytes()
        _run(_cli(*image_args, str(layers), "-o", str(out), store=store), store)
        assert out.read_bytes() == ref_image.read_bytes()
        # unpack at the same path as the reference (files embed the prefix): move the reference aside
        target = tmp_path / "unpack-here"
        code = _kill_after(_cli("unpack", str(pack), "-o", str(target), store=store), store, delay)
        killed += code is None
        env = target / "env"
        assert not env.exists() or (env / "conda-meta").is_dir(), "half-installed env under the final name"
        _run(_cli("unpack", str(pack), "-o", str(target), store=store), store)
        assert _tree(env).keys() == {k for k in _tree(ref_unpack / "env")}
        for path in target.iterdir():
            assert not path.name.startswith(".env."), f"leftover staging dir {path}"  # cleaned by the rerun
    assert killed >= 3, "the workloads finished before most kills: the test proves nothing"


INTERRUPTED_DODO = """
import os, signal
from pixibuild.graph import plan
from pixibuild.rules import workspace_tasks

_load = plan.load_workspace


def _load_then_ctrl_c(*args, **kwargs):
    workspace = _load(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C while the workspace is being planned
    return workspace


plan.load_workspace = _load_then_ctrl_c
globals().update(workspace_tasks(__file__))
"""


def test_ctrl_c_while_planning_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """doit lets Ctrl-C escape with a traceback: during planning (importing the dodo file) a real SIGINT
    must end in one line and exit 130, and leave nothing built."""
    from pixibuild.demo.demo import write_demo

    root = tmp_path / "ws"
    write_demo(root)
    (root / "dodo.py").write_text(INTERRUPTED_DODO)
    env = dict(os.environ, PIXIBUILD_CACHE_DIR=str(tmp_path / "store"), PIXIBUILD_BUILD_DIR=str(tmp_path / "build"))
    res = subprocess.run([sys.executable, "-m", "doit", "-f", str(root / "dodo.py"), "-d", str(root)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 130, res.stderr
    assert "Traceback" not in res.stderr and "pixibuild: interrupted" in res.stderr, res.stderr
    assert not list((tmp_path / "build").rglob("*.tar"))


def test_ctrl_c_while_tasks_run_is_one_line_and_the_rerun_finishes(tmp_path: Path) -> None:
    """A real SIGINT once the first task has run: one line, exit 130, no traceback; the rerun finishes the
    build, and the run after it has nothing left to do."""
    from pixibuild.demo.demo import write_demo
    from support.doitrun import run_doit, write_dodo

    root = tmp_path / "ws"
    write_demo(root)
    write_dodo(root)
    env = dict(os.environ, PIXIBUILD_CACHE_DIR=str(tmp_path / "store"), PIXIBUILD_BUILD_DIR=str(tmp_path / "build"))
    proc = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(root / "dodo.py"), "-d", str(root), "-n", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # `.  lock:…`: tasks are running
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert first.startswith(".  "), first + out + err
    if proc.returncode == 0:
        pytest.skip("the build finished before the signal arrived")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "pixibuild: interrupted" in err, err
    rerun = run_doit(root, "-n", "2", env=env)
    assert rerun.returncode == 0, rerun.output
    again = run_doit(root, env=env)
    assert again.returncode == 0 and again.executed == [], again.output
