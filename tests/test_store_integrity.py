"""Issue 13 item 1: the store never shares an inode with a file it does not own, and every consumer
(pack archive, image layer, unpack) checks each blob's sha256 while it reads it: a blob damaged
after its verify node ran fails that node naming the package with expected and actual hash, is
evicted, and the next run fetches it again. Never exit 0 with wrong bytes."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fetchkit import make_channel, records_for, spec
from pixibuild.demo.demo import write_demo
from pixibuild.errors import BuildError
from pixibuild.graph import steps
from pixibuild.net.config import NetConfig
from pixibuild.store.blobs import BlobRef, Store
from pixibuild.store.fetch import Fetcher
from support.http_server import TestServer
from support.doitrun import run_doit, write_dodo

HELLO = "hello-1.0.0-h5d6e7f8_1.tar.bz2"
OTHER = "tzdata-demo-2024b-h0_0.tar.bz2"


def _pack(project: Path, out: Path, store: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PIXIBUILD_CACHE_DIR=str(store))
    return subprocess.run([sys.executable, "-m", "pixibuild", "pack", str(project), "-e", "prod", "-p", "linux-64",
                           "-o", str(out), *extra], capture_output=True, text=True, env=env)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _blob(store: Path, sha: str) -> Path:
    return store / "blobs" / "sha256" / sha[:2] / sha


def _damage(path: Path) -> str:
    """Flip one byte in the middle, in place (same inode, same size); returns the new sha256."""
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    return _sha256(path)


@pytest.fixture
def demo(tmp_path: Path) -> dict[str, Path]:
    return write_demo(tmp_path / "ws")


def test_overwriting_a_file_channel_package_cannot_change_a_warm_pack(demo, tmp_path: Path) -> None:
    """The issue's scenario: file:// channel, warm store, `cp other.tar.bz2 channel/linux-64/hello-….tar.bz2`."""
    webapp, store = demo["webapp"], tmp_path / "store"
    channel_file = webapp.parent / "channel" / "linux-64" / HELLO
    good = _sha256(channel_file)
    first = _pack(webapp, tmp_path / "a.tar", store)
    assert first.returncode == 0, first.stderr
    assert os.stat(_blob(store, good)).st_nlink == 1
    shutil.copyfile(webapp.parent / "channel" / "noarch" / OTHER, channel_file)  # what `cp` does: same inode
    warm = _pack(webapp, tmp_path / "b.tar", store)
    assert warm.returncode == 0, warm.stderr
    assert (tmp_path / "b.tar").read_bytes() == (tmp_path / "a.tar").read_bytes()
    assert _sha256(_blob(store, good)) == good
    cold = _pack(webapp, tmp_path / "c.tar", tmp_path / "cold-store")
    assert cold.returncode == 1
    assert f"hello-1.0.0-h5d6e7f8_1: sha256 mismatch for {channel_file}: expected {good}" in cold.stderr
    assert not (tmp_path / "c.tar").exists()


@pytest.mark.parametrize("output", ["tar", "directory"])
def test_a_blob_damaged_in_place_fails_the_pack_is_evicted_and_refetched(demo, tmp_path: Path, output: str) -> None:
    webapp, store = demo["webapp"], tmp_path / "store"
    extra = ("--directory-only",) if output == "directory" else ()
    good = _sha256(webapp.parent / "channel" / "linux-64" / HELLO)
    assert _pack(webapp, tmp_path / "a", store, *extra).returncode == 0
    blob = _blob(store, good)
    bad = _damage(blob)
    damaged = _pack(webapp, tmp_path / "b", store, *extra)
    assert damaged.returncode == 1, damaged.stderr
    assert f"package {HELLO}: the package store's copy is damaged: sha256 expected {good}, got {bad}" in damaged.stderr
    assert "Traceback" not in damaged.stderr
    assert not (tmp_path / "b").exists() and not blob.exists()
    again = _pack(webapp, tmp_path / "b", store, *extra)
    assert again.returncode == 0, again.stderr
    assert _sha256(blob) == good
    if output == "tar":
        assert (tmp_path / "b").read_bytes() == (tmp_path / "a").read_bytes()
    else:
        assert _sha256(tmp_path / "b" / "channel" / "linux-64" / HELLO) == good


def test_the_pack_layer_and_unpack_nodes_check_what_they_read(tmp_path: Path) -> None:
    """doit: each consumer node of a blob damaged after `verify` fails naming it, evicts it; the rerun
    fetches it again and succeeds."""
    root = tmp_path / "ws"
    write_demo(root)
    write_dodo(root)
    store, build = root / "store", root / "build"
    env = {"PIXIBUILD_CACHE_DIR": str(store), "PIXIBUILD_BUILD_DIR": str(build)}
    targets = ["pack:webapp:prod:linux-64", "unpack:webapp:prod:linux-64", "image:webapp:prod:linux-64"]
    cold = run_doit(root, *targets, env=env)
    assert cold.returncode == 0, cold.output
    good = _sha256(root / "channel" / "linux-64" / HELLO)
    blob = _blob(store, good)
    out = build / "webapp" / "prod" / "linux-64"
    tar_before = (out / "environment.tar").read_bytes()

    def damage_and_run(target: str, make_it_rerun: Path) -> None:
        bad = _damage(blob)
        shutil.rmtree(make_it_rerun) if make_it_rerun.is_dir() else make_it_rerun.unlink()
        failed = run_doit(root, target, env=env)
        assert failed.returncode != 0, failed.output
        assert f"package {HELLO}: the package store's copy is damaged: sha256 expected {good}, got {bad}" \
            in failed.output, failed.output
        assert not blob.exists()
        rerun = run_doit(root, target, env=env)
        assert rerun.returncode == 0, rerun.output
        assert any(name.startswith("fetch:") for name in rerun.executed), rerun.executed
        assert _sha256(blob) == good

    damage_and_run("pack:webapp:prod:linux-64", out / "environment.tar")
    assert (out / "environment.tar").read_bytes() == tar_before
    damage_and_run("unpack:webapp:prod:linux-64", out / "env")
    assert (out / "env" / "conda-meta").is_dir()
    # every layer node runs again (layers are the image's build inputs: needed only when the image is rebuilt)
    (out / "image.tar").unlink()
    damage_and_run("image:webapp:prod:linux-64", store / "oci")
    assert (out / "image.tar").is_file()


def test_nodes_after_verify_never_download_a_missing_blob(tmp_path) -> None:
    """The one blob hand-off (issue 12): archive and unpack nodes get BlobRefs and only look in the store.
    A blob missing there (its fetch node did not run, or it was removed) fails the node with one line
    naming the package, while the channel that has the package sees no request and no output appears."""
    root = tmp_path / "channel"
    files = make_channel(root, [spec("kept", "noarch", 20_000, 1), spec("gone", "noarch", 20_000, 2)])
    store_root = tmp_path / "store"
    with TestServer(root) as server:
        records = records_for(files, server.url, root)
        with Fetcher(Store(store_root), NetConfig()) as fetcher:
            fetcher.fetch_all(records)
        gone = next(r for r in records if r.name == "gone")
        Store(store_root).remove(gone.sha256)
        before = server.count()
        planned = [(r, BlobRef.of(r)) for r in records]
        steps.index([r for r, _ in planned], str(tmp_path / "index"))
        with pytest.raises(BuildError, match=r"gone-1\.0-0\.conda: not in the package store"):
            steps.archive("linux-64", planned, [], str(store_root), str(tmp_path / "index"), str(tmp_path / "env.tar"))
        with pytest.raises(BuildError, match=r"gone-1\.0-0\.conda: not in the package store"):
            steps.unpack("linux-64", planned, [], str(store_root), str(tmp_path / "out"))
        # a lock without sha256: the URL index finds the blob, or the node fails the same way
        no_sha = [(dataclasses.replace(r, sha256=None), BlobRef.of(dataclasses.replace(r, sha256=None))) for r in records]
        with pytest.raises(BuildError, match=r"gone-1\.0-0\.conda: not in the package store"):
            steps.archive("linux-64", no_sha, [], str(store_root), str(tmp_path / "index"), str(tmp_path / "env2.tar"))
        assert server.count() == before
    assert not (tmp_path / "env.tar").exists() and not (tmp_path / "env2.tar").exists()
    assert not (tmp_path / "out" / "env").exists()
