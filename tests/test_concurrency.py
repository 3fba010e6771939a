"""Concurrency: several pack/image/doit runs at once on one cold store all succeed, produce the
same bytes as a lone run, and leave the store and doit's database sound."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pixibuild.demo.demo import write_demo
from support.doitrun import run_doit, write_dodo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("conc")
    return root, write_demo(root)


def _start(args: list[str], store: Path) -> subprocess.Popen:
    env = dict(os.environ, PIXIBUILD_CACHE_DIR=str(store))
    return subprocess.Popen([sys.executable, "-m", "pixibuild", "-q", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_all(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()


def _store_sound(store: Path) -> None:
    for blob in (store / "blobs" / "sha256").glob("*/*"):
        if not blob.name.startswith("."):
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name


JOBS = [("webapp", "prod", "linux-64"), ("webapp", "default", "linux-aarch64"),
        ("worker", "default", "linux-64"), ("webapp", "prod", "linux-64")]


@pytest.mark.parametrize("n", [2, 4])
def test_concurrent_packs_on_one_cold_store(demo, tmp_path: Path, n: int) -> None:
    _, projects = demo
    reference = {}
    for project, env, platform in JOBS[:n]:
        out = tmp_path / f"ref-{project}-{env}-{platform}.tar"
        _wait_all([_start(["pack", str(projects[project]), "-e", env, "-p", platform, "-o", str(out)],
                          tmp_path / "ref-store")])
        reference[(project, env, platform)] = out.read_bytes()
    store = tmp_path / "shared-store"
    outs = [tmp_path / f"out{i}.tar" for i in range(n)]
    # job 0 and job 3 are the same target: with n=4 two processes write the same packages at once
    procs = [_start(["pack", str(projects[p]), "-e", e, "-p", pl, "-o", str(o)], store)
             for (p, e, pl), o in zip(JOBS[:n], outs)]
    _wait_all(procs)
    for job, out in zip(JOBS[:n], outs):
        assert out.read_bytes() == reference[job]
    _store_sound(store)


def test_concurrent_images_on_one_store(demo, tmp_path: Path) -> None:
    _, projects = demo
    args = ["image", str(projects["webapp"]), "-e", "prod", "-p", "linux-64", "--cache-dir", str(tmp_path / "layers")]
    _wait_all([_start([*args, "-o", str(tmp_path / "ref.tar")], tmp_path / "ref-store")])
    procs = [_start([*args[:-1], str(tmp_path / f"layers{i % 2}"), "-o", str(tmp_path / f"img{i}.tar")],
                    tmp_path / "store") for i in range(4)]
    _wait_all(procs)
    ref = (tmp_path / "ref.tar").read_bytes()
    for i in range(4):
        assert (tmp_path / f"img{i}.tar").read_bytes() == ref
    _store_sound(tmp_path / "store")


def test_two_doit_runs_at_once_share_store_and_database(demo, tmp_path: Path) -> None:
    root, _ = demo
    write_dodo(root)
    env = {"PIXIBUILD_CACHE_DIR": str(tmp_path / "store"), "PIXIBUILD_BUILD_DIR": str(tmp_path / "build")}
    full_env = dict(os.environ, **env)
    cmd = [sys.executable, "-m", "doit", "-f", str(root / "dodo.py"), "-d", str(root), "-n", "2"]
    procs = [subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, (out + err).decode()[-3000:]
    with sqlite3.connect(tmp_path / "build" / ".doit.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    again = run_doit(root, env=env)
    assert again.returncode == 0 and again.executed == [], again.output
    _store_sound(tmp_path / "store")


def test_a_second_writer_of_a_kept_dir_leaves_the_first_in_place_for_its_readers(tmp_path: Path) -> None:
    """Layer caches shared by concurrent images: a kept-files dir is content-addressed, so a racing
    writer must not swap it out while another process walks it (that walk then saw a missing file)."""
    from pixibuild.files.atomic import atomic_directory

    kept = tmp_path / "layer.keep"
    with atomic_directory(kept, keep_existing=True) as tmp:
        (tmp / "conda-meta").mkdir()
        (tmp / "conda-meta" / "hello.json").write_text("{}")
    inode = kept.stat().st_ino
    walking = os.scandir(kept / "conda-meta")  # a reader mid-walk
    with atomic_directory(kept, keep_existing=True) as tmp:
        (tmp / "conda-meta").mkdir()
        (tmp / "conda-meta" / "hello.json").write_text("{}")
    assert kept.stat().st_ino == inode
    assert [e.name for e in walking] == ["hello.json"]
    assert (kept / "conda-meta" / "hello.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["layer.keep"]  # the second tree was dropped
